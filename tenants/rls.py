"""PostgreSQL row-level security for tenant tables: the second wall behind the ORM scoping.

The policies read the transaction-local settings that `scoping.py` sets at the start of every
transaction (`app.school_id`, `app.all_schools`). With neither set, a tenant table shows no rows.
FORCE makes the policies apply to the tables' owner too; only a superuser (or a BYPASSRLS role)
bypasses them, so the portal must connect as an ordinary role in production: it refuses to start
otherwise (`check_database_role`).

Tables whose rows may belong to no school and are written where no school is chosen yet (the audit
trail: sign-ins, district actions; the job rows: commands, the reconciler) take the shared policy:
inside a school's scope only that school's rows and the district's (no school) are seen or written,
so the wall stands wherever a school's pages and jobs run; with no scope set at all (sign-in, public
pages, commands) they are readable as the ORM's own checks allow, since those contexts must write
district entries and read no school's pages.

Tables with school data left outside row-level security, and why:
- `person_certificates`: a certificate belongs to the person, who keeps it when moving school; its
  `school_id` only says where it was registered. It holds the public certificate and a sealed key
  reference, read by the person's own pages and by every school the person signs at.
- `stored_files`: content-addressed bytes without a school column (the same bytes may serve two
  schools); a file is reached only through its SHA-256 digest, which only rows behind row-level
  security hold.
"""

from __future__ import annotations

from typing import Any

POLICY = (
    "current_setting('app.all_schools', true) = 'on' "
    "OR school_id = nullif(current_setting('app.school_id', true), '')::integer"
)


SHARED_POLICY = f"school_id IS NULL OR nullif(current_setting('app.school_id', true), '') IS NULL OR {POLICY}"

NOT_PROTECTED = {
    "person_certificates": "belongs to the person across schools; school_id is where it was registered",
    "stored_files": "content-addressed bytes without a school; reached only by digests held by protected rows",
}


def enable_statements(table: str, *, shared: bool = False) -> list[str]:
    """The SQL that puts a tenant table behind row-level security (for migrations); `shared` for tables
    whose rows without a school belong to the district."""
    policy = SHARED_POLICY if shared else POLICY
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {table} USING ({policy}) WITH CHECK ({policy})",
    ]


def check_database_role(connection: Any) -> str | None:
    """Why this PostgreSQL connection's role would walk through row-level security, or None if it would not."""
    row = connection.exec_driver_sql(
        "select rolname, rolsuper, rolbypassrls from pg_roles where rolname = current_user").first()
    if row is None:
        return None
    name, superuser, bypass = row
    if superuser:
        return f"the database role {name!r} is a superuser: PostgreSQL exempts it from row-level security"
    if bypass:
        return f"the database role {name!r} has BYPASSRLS: PostgreSQL exempts it from row-level security"
    return None


def disable_statements(table: str) -> list[str]:
    return [
        f"DROP POLICY IF EXISTS tenant_isolation ON {table}",
        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
    ]
