"""Public verification of issued records (by code or by file) and the families' access to their child's records."""
