"""The migrations build exactly the schema the models describe, on SQLite and on PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from portal.extensions import db


def test_migrated_schema_matches_the_models(ctx):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == [], "a model changed without a migration: run `flask db migrate`"


def test_migrations_are_at_head(ctx):
    from alembic.script import ScriptDirectory
    from flask import current_app

    config = current_app.extensions["migrate"].migrate.get_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    with db.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head


def test_every_tenant_table_is_behind_row_level_security(ctx):
    """A tenant-owned table added later without RLS in its migration fails here (PostgreSQL only)."""
    import pytest
    import sqlalchemy as sa

    from tenants.scoping import TenantScoped

    if db.engine.dialect.name != "postgresql":
        pytest.skip("row-level security exists only on PostgreSQL")
    tenant_tables = {m.local_table.name for m in db.Model.registry.mappers if issubclass(m.class_, TenantScoped)}
    with db.engine.connect() as connection:
        rows = connection.execute(sa.text(
            "select relname, relrowsecurity, relforcerowsecurity from pg_class where relname = any(:names)"),
            {"names": sorted(tenant_tables)}).all()
    protected = {name for name, enabled, forced in rows if enabled and forced}
    assert tenant_tables and tenant_tables == protected, sorted(tenant_tables - protected)
