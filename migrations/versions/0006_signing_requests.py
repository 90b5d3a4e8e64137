"""signing_requests

Revision ID: 0006
Revises: 0005

"""
import sqlalchemy as sa
from alembic import op

from tenants import rls

TENANT_TABLES: tuple[str, ...] = ("signing_requests",)

# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('signing_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('usb', 'csc', name='requestkind', native_enum=False, length=8), nullable=False),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=32), nullable=False),
    sa.Column('description', sa.String(length=300), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('algorithm', sa.String(length=32), nullable=False),
    sa.Column('certificate', sa.LargeBinary(), nullable=False),
    sa.Column('prepared_digest', sa.String(length=64), nullable=False),
    sa.Column('state', sa.Enum('pending', 'answered', 'finished', 'failed', 'expired', 'cancelled',
                               name='requeststate', native_enum=False, length=16), nullable=False),
    sa.Column('raw_signature', sa.LargeBinary(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('batch_id', sa.String(length=32), nullable=False),
    sa.Column('csc_credential_id', sa.String(length=200), nullable=True),
    sa.Column('csc_transaction_id', sa.String(length=200), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_signing_requests_created_by_id_users')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_signing_requests_school_id_schools'),
                            ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_signing_requests_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signing_requests'))
    )
    with op.batch_alter_table('signing_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signing_requests_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_signing_requests_csc_transaction_id'), ['csc_transaction_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_signing_requests_school_id'), ['school_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_signing_requests_state'), ['state'], unique=False)
        batch_op.create_index('ix_signing_requests_subject', ['purpose', 'subject_id', 'step'], unique=False)
        batch_op.create_index(batch_op.f('ix_signing_requests_user_id'), ['user_id'], unique=False)

    op.create_table('agent_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('session_hash', sa.String(length=64), nullable=False),
    sa.Column('agent', sa.String(length=200), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_agent_tokens_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agent_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_agent_tokens_token_hash'))
    )
    with op.batch_alter_table('agent_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agent_tokens_user_id'), ['user_id'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.enable_statements(table):
                op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.disable_statements(table):
                op.execute(statement)
    with op.batch_alter_table('agent_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agent_tokens_user_id'))
    op.drop_table('agent_tokens')
    with op.batch_alter_table('signing_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signing_requests_user_id'))
        batch_op.drop_index('ix_signing_requests_subject')
        batch_op.drop_index(batch_op.f('ix_signing_requests_state'))
        batch_op.drop_index(batch_op.f('ix_signing_requests_school_id'))
        batch_op.drop_index(batch_op.f('ix_signing_requests_csc_transaction_id'))
        batch_op.drop_index(batch_op.f('ix_signing_requests_batch_id'))
    op.drop_table('signing_requests')
