"""school data versions: a value every write to a school's rows changes, for the pages kept rendered

Revision ID: 0020
Revises: 0019

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade():
    # No row-level security: a row holds a random number, none of the school's data (tenants/models.py).
    op.create_table('school_data_versions',
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_school_data_versions_school_id_schools'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('school_id', name=op.f('pk_school_data_versions'))
    )


def downgrade():
    op.drop_table('school_data_versions')
