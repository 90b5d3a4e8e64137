"""Exchange with the city system (liên thông): uploads of issued records, records returned after
admissions, transfers inside the district, and the ministry bundle. The contract is docs/city-contract.md."""
