"""unsaved cells: what a teacher typed into a grid that the server refused, until corrected

Revision ID: 0015
Revises: 0008

"""
import sqlalchemy as sa
from alembic import op

from tenants import rls

TENANT_TABLES: tuple[str, ...] = ("unsaved_cells",)

# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('unsaved_cells',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('grid_key', sa.String(length=64), nullable=False),
    sa.Column('record_key', sa.String(length=32), nullable=False),
    sa.Column('field', sa.String(length=32), nullable=False),
    sa.Column('raw', sa.Text(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_unsaved_cells_school_id_schools'),
                            ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_unsaved_cells_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_unsaved_cells')),
    sa.UniqueConstraint('grid_key', 'record_key', 'field', name=op.f('uq_unsaved_cells_grid_key_record_key_field'))
    )
    with op.batch_alter_table('unsaved_cells', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_unsaved_cells_school_id'), ['school_id'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.enable_statements(table):
                op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.disable_statements(table):
                op.execute(statement)
    with op.batch_alter_table('unsaved_cells', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_unsaved_cells_school_id'))
    op.drop_table('unsaved_cells')
