"""A school's own pages: its home and its staff (accounts, roles, imports)."""
