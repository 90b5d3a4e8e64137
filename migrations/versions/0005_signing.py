"""signing

Revision ID: 0005
Revises: 0004

"""
import sqlalchemy as sa
from alembic import op

from tenants import rls

TENANT_TABLES: tuple[str, ...] = ("seal_certificates",)

# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _certificate_columns():
    return [
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('common_name', sa.String(length=200), nullable=False),
        sa.Column('subject', sa.String(length=1000), nullable=False),
        sa.Column('issuer', sa.String(length=1000), nullable=False),
        sa.Column('serial', sa.String(length=80), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('not_before', sa.DateTime(timezone=True), nullable=False),
        sa.Column('not_after', sa.DateTime(timezone=True), nullable=False),
        sa.Column('certificate', sa.LargeBinary(), nullable=False),
        sa.Column('chain_pem', sa.Text(), nullable=False),
        sa.Column('key_kind', sa.Enum('pkcs12', 'pkcs11', 'usb', 'csc', name='keykind', native_enum=False,
                                      length=16), nullable=False),
        sa.Column('pkcs12_digest', sa.String(length=64), nullable=True),
        sa.Column('passphrase_sealed', sa.Text(), nullable=True),
        sa.Column('pkcs11_module', sa.String(length=300), nullable=True),
        sa.Column('pkcs11_token', sa.String(length=100), nullable=True),
        sa.Column('pkcs11_key_label', sa.String(length=100), nullable=True),
        sa.Column('pin_sealed', sa.Text(), nullable=True),
        sa.Column('csc_provider', sa.String(length=100), nullable=True),
        sa.Column('csc_credential_id', sa.String(length=200), nullable=True),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
    ]


def upgrade():
    op.create_table('person_certificates',
    *_certificate_columns(),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_person_certificates_created_by_id_users')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_person_certificates_school_id_schools')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_person_certificates_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_person_certificates')),
    sa.UniqueConstraint('user_id', 'fingerprint', name=op.f('uq_person_certificates_user_id_fingerprint'))
    )
    with op.batch_alter_table('person_certificates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_person_certificates_school_id'), ['school_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_person_certificates_user_id'), ['user_id'], unique=False)

    op.create_table('seal_certificates',
    *_certificate_columns(),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_seal_certificates_created_by_id_users')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_seal_certificates_school_id_schools'),
                            ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_seal_certificates')),
    sa.UniqueConstraint('school_id', 'fingerprint', name=op.f('uq_seal_certificates_school_id_fingerprint'))
    )
    with op.batch_alter_table('seal_certificates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_seal_certificates_school_id'), ['school_id'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.enable_statements(table):
                op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.disable_statements(table):
                op.execute(statement)
    with op.batch_alter_table('seal_certificates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_seal_certificates_school_id'))
    op.drop_table('seal_certificates')
    with op.batch_alter_table('person_certificates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_person_certificates_user_id'))
        batch_op.drop_index(batch_op.f('ix_person_certificates_school_id'))
    op.drop_table('person_certificates')
