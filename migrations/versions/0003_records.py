"""records

Revision ID: 0003
Revises: 0002

"""
import sqlalchemy as sa
from alembic import op

from tenants import rls

TENANT_TABLES = ("record_versions", "record_signatures")

# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('record_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pupil_id', sa.Integer(), nullable=False),
    sa.Column('school_year_id', sa.Integer(), nullable=False),
    sa.Column('class_id', sa.Integer(), nullable=False),
    sa.Column('grade', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('replaces_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.Enum('draft', 'returned', 'signed_homeroom', 'signed_principal', 'issued', 'cancelled',
                                'superseded', name='recordstatus', native_enum=False, length=24),
              nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=False),
    sa.Column('correction_reason', sa.Text(), nullable=False),
    sa.Column('status_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.Column('source_hash', sa.String(length=64), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('draft_digest', sa.String(length=64), nullable=False),
    sa.Column('xml_digest', sa.String(length=64), nullable=False),
    sa.Column('signed_digest', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['class_id'], ['classes.id'], name=op.f('fk_record_versions_class_id_classes')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_record_versions_created_by_id_users')),
    sa.ForeignKeyConstraint(['pupil_id'], ['pupils.id'], name=op.f('fk_record_versions_pupil_id_pupils')),
    sa.ForeignKeyConstraint(['replaces_id'], ['record_versions.id'],
                            name=op.f('fk_record_versions_replaces_id_record_versions')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_record_versions_school_id_schools'),
                            ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['school_year_id'], ['school_years.id'],
                            name=op.f('fk_record_versions_school_year_id_school_years')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_record_versions')),
    sa.UniqueConstraint('code', name=op.f('uq_record_versions_code')),
    sa.UniqueConstraint('pupil_id', 'number', name=op.f('uq_record_versions_pupil_id_number')),
    )
    with op.batch_alter_table('record_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_record_versions_class_id'), ['class_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_record_versions_pupil_id'), ['pupil_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_record_versions_school_id'), ['school_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_record_versions_school_year_id'), ['school_year_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_record_versions_status'), ['status'], unique=False)

    op.create_table('record_signatures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('record_version_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=16), nullable=False),
    sa.Column('signer_id', sa.Integer(), nullable=True),
    sa.Column('signer_name', sa.String(length=200), nullable=False),
    sa.Column('certificate_fingerprint', sa.String(length=64), nullable=False),
    sa.Column('key_kind', sa.String(length=16), nullable=False),
    sa.Column('signed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('input_digest', sa.String(length=64), nullable=False),
    sa.Column('output_digest', sa.String(length=64), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['record_version_id'], ['record_versions.id'],
                            name=op.f('fk_record_signatures_record_version_id_record_versions')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_record_signatures_school_id_schools'),
                            ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['signer_id'], ['users.id'], name=op.f('fk_record_signatures_signer_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_record_signatures')),
    sa.UniqueConstraint('record_version_id', 'step', name=op.f('uq_record_signatures_record_version_id_step')),
    )
    with op.batch_alter_table('record_signatures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_record_signatures_record_version_id'), ['record_version_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_record_signatures_school_id'), ['school_id'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.enable_statements(table):
                op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.disable_statements(table):
                op.execute(statement)
    with op.batch_alter_table('record_signatures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_record_signatures_school_id'))
        batch_op.drop_index(batch_op.f('ix_record_signatures_record_version_id'))
    op.drop_table('record_signatures')
    with op.batch_alter_table('record_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_record_versions_status'))
        batch_op.drop_index(batch_op.f('ix_record_versions_school_year_id'))
        batch_op.drop_index(batch_op.f('ix_record_versions_school_id'))
        batch_op.drop_index(batch_op.f('ix_record_versions_pupil_id'))
        batch_op.drop_index(batch_op.f('ix_record_versions_class_id'))

    op.drop_table('record_versions')
