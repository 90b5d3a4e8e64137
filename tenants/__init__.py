"""Multi-tenancy: the district and its schools, accounts and per-school roles, and tenant scoping.

Nothing here imports a feature package of the portal; features build on this.
"""
