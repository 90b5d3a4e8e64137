"""verification

Revision ID: 0008
Revises: 0007

"""
import sqlalchemy as sa
from alembic import op

from tenants import rls

TENANT_TABLES: tuple[str, ...] = ("family_access_codes",)

# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    # The lookup log is not a tenant table: an unknown code or a wrong access code belongs to no school.
    op.create_table('public_lookups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('code', 'file', 'family', name='lookupkind', native_enum=False, length=16),
              nullable=False),
    sa.Column('outcome', sa.Enum('found', 'unknown', 'checked', 'refused', 'wrong', 'limited', name='lookupoutcome',
                                 native_enum=False, length=16), nullable=False),
    sa.Column('address_hash', sa.String(length=16), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_public_lookups'))
    )
    with op.batch_alter_table('public_lookups', schema=None) as batch_op:
        batch_op.create_index('ix_public_lookups_address_kind_at', ['address_hash', 'kind', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_public_lookups_at'), ['at'], unique=False)

    op.create_table('family_access_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pupil_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('issued_by_id', sa.Integer(), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_by_id', sa.Integer(), nullable=True),
    sa.Column('end_reason', sa.Enum('rotated', 'revoked', name='codeend', native_enum=False, length=16), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['ended_by_id'], ['users.id'], name=op.f('fk_family_access_codes_ended_by_id_users')),
    sa.ForeignKeyConstraint(['issued_by_id'], ['users.id'], name=op.f('fk_family_access_codes_issued_by_id_users')),
    sa.ForeignKeyConstraint(['pupil_id'], ['pupils.id'], name=op.f('fk_family_access_codes_pupil_id_pupils')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_family_access_codes_school_id_schools'),
                            ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_family_access_codes')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_family_access_codes_code_hash'))
    )
    with op.batch_alter_table('family_access_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_family_access_codes_pupil_id'), ['pupil_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_family_access_codes_school_id'), ['school_id'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.enable_statements(table):
                op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.disable_statements(table):
                op.execute(statement)
    with op.batch_alter_table('family_access_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_family_access_codes_school_id'))
        batch_op.drop_index(batch_op.f('ix_family_access_codes_pupil_id'))
    op.drop_table('family_access_codes')
    with op.batch_alter_table('public_lookups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_public_lookups_at'))
        batch_op.drop_index('ix_public_lookups_address_kind_at')
    op.drop_table('public_lookups')
