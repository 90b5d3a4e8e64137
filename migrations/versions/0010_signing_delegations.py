"""signing delegations: a vice principal signing in the principal's field

Revision ID: 0010
Revises: 0008

"""
import sqlalchemy as sa
from alembic import op

from tenants import rls

TENANT_TABLES: tuple[str, ...] = ("signing_delegations",)

# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('signing_delegations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_signing_delegations_created_by_id_users')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_signing_delegations_school_id_schools'),
                            ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_signing_delegations_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signing_delegations'))
    )
    with op.batch_alter_table('signing_delegations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signing_delegations_school_id'), ['school_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_signing_delegations_user_id'), ['user_id'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.enable_statements(table):
                op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.disable_statements(table):
                op.execute(statement)
    with op.batch_alter_table('signing_delegations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signing_delegations_user_id'))
        batch_op.drop_index(batch_op.f('ix_signing_delegations_school_id'))
    op.drop_table('signing_delegations')
