"""PostgreSQL row-level security for tenant tables: the second wall behind the ORM scoping.

The policies read the transaction-local settings that `scoping.py` sets at the start of every
transaction (`app.school_id`, `app.all_schools`). With neither set, a tenant table shows no rows.
FORCE makes the policies apply to the tables' owner too; only a superuser bypasses them, so the
portal must connect as an ordinary role in production (see the README).
"""

from __future__ import annotations

POLICY = (
    "current_setting('app.all_schools', true) = 'on' "
    "OR school_id = nullif(current_setting('app.school_id', true), '')::integer"
)


def enable_statements(table: str) -> list[str]:
    """The SQL that puts a tenant table behind row-level security (for migrations)."""
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {table} USING ({POLICY}) WITH CHECK ({POLICY})",
    ]


def disable_statements(table: str) -> list[str]:
    return [
        f"DROP POLICY IF EXISTS tenant_isolation ON {table}",
        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
    ]
