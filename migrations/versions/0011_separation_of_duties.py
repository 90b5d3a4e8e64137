"""separation of duties: set-password links, notices to account holders, signing PINs

Revision ID: 0011
Revises: 0008

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    # Neither table is a tenant table: an account (and its password) belongs to the district, not to a school.
    op.create_table('password_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_by_name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_password_links_created_by_id_users')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_password_links_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_password_links')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_password_links_token_hash'))
    )
    with op.batch_alter_table('password_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_password_links_user_id'), ['user_id'], unique=False)

    op.create_table('account_notices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('message', sa.String(length=500), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_account_notices_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_notices'))
    )
    with op.batch_alter_table('account_notices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_notices_user_id'), ['user_id'], unique=False)

    # A person's server-held key now opens only with a secret of the holder's (a signing PIN). Secrets that
    # were sealed with the server's key alone are dropped: their holders type the .p12 passphrase when they
    # sign, or set a signing PIN with it (the passphrase is the proof that they hold the key).
    op.execute("UPDATE person_certificates SET passphrase_sealed = NULL, pin_sealed = NULL")
    with op.batch_alter_table('person_certificates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pin_failures', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('person_certificates', schema=None) as batch_op:
        batch_op.drop_column('pin_failures')
    with op.batch_alter_table('account_notices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_notices_user_id'))
    op.drop_table('account_notices')
    with op.batch_alter_table('password_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_password_links_user_id'))
    op.drop_table('password_links')
