"""exchange

Revision ID: 0007
Revises: 0006

"""
import sqlalchemy as sa
from alembic import op

from tenants import rls

TENANT_TABLES = ("pupil_transfers", "received_records", "city_uploads")

# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('city_feed_cursors',
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('after', sa.Integer(), nullable=False),
    sa.Column('pulled_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_city_feed_cursors_district_id_districts')),
    sa.PrimaryKeyConstraint('district_id', name=op.f('pk_city_feed_cursors'))
    )
    op.create_table('pupil_transfers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pupil_id', sa.Integer(), nullable=False),
    sa.Column('to_school_id', sa.Integer(), nullable=False),
    sa.Column('pupil_code', sa.String(length=32), nullable=False),
    sa.Column('pupil_name', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('state', sa.Enum('released', 'accepted', 'withdrawn', name='transferstate', native_enum=False, length=16), nullable=False),
    sa.Column('record_version_ids', sa.JSON(), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('released_by_id', sa.Integer(), nullable=True),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('accepted_by_id', sa.Integer(), nullable=True),
    sa.Column('received_pupil_id', sa.Integer(), nullable=True),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['accepted_by_id'], ['users.id'], name=op.f('fk_pupil_transfers_accepted_by_id_users')),
    sa.ForeignKeyConstraint(['pupil_id'], ['pupils.id'], name=op.f('fk_pupil_transfers_pupil_id_pupils')),
    sa.ForeignKeyConstraint(['received_pupil_id'], ['pupils.id'], name=op.f('fk_pupil_transfers_received_pupil_id_pupils')),
    sa.ForeignKeyConstraint(['released_by_id'], ['users.id'], name=op.f('fk_pupil_transfers_released_by_id_users')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_pupil_transfers_school_id_schools'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['to_school_id'], ['schools.id'], name=op.f('fk_pupil_transfers_to_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pupil_transfers'))
    )
    with op.batch_alter_table('pupil_transfers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pupil_transfers_pupil_id'), ['pupil_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pupil_transfers_school_id'), ['school_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pupil_transfers_to_school_id'), ['to_school_id'], unique=False)

    op.create_table('received_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.Enum('city', 'transfer', name='receivedsource', native_enum=False, length=16), nullable=False),
    sa.Column('external_ref', sa.String(length=64), nullable=False),
    sa.Column('pupil_id', sa.Integer(), nullable=True),
    sa.Column('pupil_code', sa.String(length=32), nullable=False),
    sa.Column('record_code', sa.String(length=16), nullable=False),
    sa.Column('version_number', sa.Integer(), nullable=True),
    sa.Column('school_year', sa.String(length=16), nullable=False),
    sa.Column('grade', sa.Integer(), nullable=True),
    sa.Column('issuing_school_name', sa.String(length=200), nullable=False),
    sa.Column('issuing_school_moet_code', sa.String(length=32), nullable=False),
    sa.Column('pdf_digest', sa.String(length=64), nullable=True),
    sa.Column('state', sa.Enum('accepted', 'refused', name='receivedstate', native_enum=False, length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('transfer_id', sa.Integer(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['pupil_id'], ['pupils.id'], name=op.f('fk_received_records_pupil_id_pupils')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_received_records_school_id_schools'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['transfer_id'], ['pupil_transfers.id'], name=op.f('fk_received_records_transfer_id_pupil_transfers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_received_records')),
    sa.UniqueConstraint('school_id', 'external_ref', name=op.f('uq_received_records_school_id_external_ref'))
    )
    with op.batch_alter_table('received_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_received_records_pupil_id'), ['pupil_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_received_records_school_id'), ['school_id'], unique=False)

    op.create_table('city_uploads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('record_version_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('upload', 'cancelled', 'superseded', name='uploadkind', native_enum=False, length=16), nullable=False),
    sa.Column('record_code', sa.String(length=16), nullable=False),
    sa.Column('school_year_id', sa.Integer(), nullable=False),
    sa.Column('grade', sa.Integer(), nullable=False),
    sa.Column('pdf_digest', sa.String(length=64), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('state', sa.Enum('waiting', 'sent', 'acknowledged', 'rejected', name='uploadstate', native_enum=False, length=16), nullable=False),
    sa.Column('receipt_number', sa.String(length=40), nullable=True),
    sa.Column('error_code', sa.String(length=40), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['record_version_id'], ['record_versions.id'], name=op.f('fk_city_uploads_record_version_id_record_versions')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_city_uploads_school_id_schools'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['school_year_id'], ['school_years.id'], name=op.f('fk_city_uploads_school_year_id_school_years')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_city_uploads')),
    sa.UniqueConstraint('receipt_number', name=op.f('uq_city_uploads_receipt_number')),
    sa.UniqueConstraint('record_version_id', 'kind', name=op.f('uq_city_uploads_record_version_id_kind'))
    )
    with op.batch_alter_table('city_uploads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_city_uploads_record_code'), ['record_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_city_uploads_record_version_id'), ['record_version_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_city_uploads_school_id'), ['school_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_city_uploads_school_year_id'), ['school_year_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_city_uploads_state'), ['state'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.enable_statements(table):
                op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.disable_statements(table):
                op.execute(statement)
    with op.batch_alter_table('city_uploads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_city_uploads_state'))
        batch_op.drop_index(batch_op.f('ix_city_uploads_school_year_id'))
        batch_op.drop_index(batch_op.f('ix_city_uploads_school_id'))
        batch_op.drop_index(batch_op.f('ix_city_uploads_record_version_id'))
        batch_op.drop_index(batch_op.f('ix_city_uploads_record_code'))

    op.drop_table('city_uploads')
    with op.batch_alter_table('received_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_received_records_school_id'))
        batch_op.drop_index(batch_op.f('ix_received_records_pupil_id'))

    op.drop_table('received_records')
    with op.batch_alter_table('pupil_transfers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pupil_transfers_to_school_id'))
        batch_op.drop_index(batch_op.f('ix_pupil_transfers_school_id'))
        batch_op.drop_index(batch_op.f('ix_pupil_transfers_pupil_id'))

    op.drop_table('pupil_transfers')
    op.drop_table('city_feed_cursors')
