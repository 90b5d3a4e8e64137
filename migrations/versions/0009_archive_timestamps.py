"""archive timestamps: the last document timestamp of each issued record, and its renewals

Revision ID: 0009
Revises: 0008

"""
import sqlalchemy as sa
from alembic import op

from tenants import rls

TENANT_TABLES: tuple[str, ...] = ("record_archive_renewals",)

# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('record_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('archive_timestamp_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('archive_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('archive_digest_algorithm', sa.String(length=16), nullable=True))
        batch_op.create_index(batch_op.f('ix_record_versions_archive_expires_at'), ['archive_expires_at'],
                              unique=False)

    op.create_table('record_archive_renewals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('record_version_id', sa.Integer(), nullable=False),
    sa.Column('previous_digest', sa.String(length=64), nullable=False),
    sa.Column('new_digest', sa.String(length=64), nullable=False),
    sa.Column('previous_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('timestamp_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('renewed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['record_version_id'], ['record_versions.id'],
                            name=op.f('fk_record_archive_renewals_record_version_id_record_versions')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_record_archive_renewals_school_id_schools'),
                            ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_record_archive_renewals'))
    )
    with op.batch_alter_table('record_archive_renewals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_record_archive_renewals_previous_digest'), ['previous_digest'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_record_archive_renewals_record_version_id'), ['record_version_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_record_archive_renewals_school_id'), ['school_id'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.enable_statements(table):
                op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.disable_statements(table):
                op.execute(statement)
    with op.batch_alter_table('record_archive_renewals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_record_archive_renewals_school_id'))
        batch_op.drop_index(batch_op.f('ix_record_archive_renewals_record_version_id'))
        batch_op.drop_index(batch_op.f('ix_record_archive_renewals_previous_digest'))
    op.drop_table('record_archive_renewals')
    with op.batch_alter_table('record_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_record_versions_archive_expires_at'))
        batch_op.drop_column('archive_digest_algorithm')
        batch_op.drop_column('archive_expires_at')
        batch_op.drop_column('archive_timestamp_at')
