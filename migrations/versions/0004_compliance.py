"""compliance

Revision ID: 0004
Revises: 0003

"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

from tenants import rls  # noqa: F401

TENANT_TABLES: tuple[str, ...] = ()

# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
