"""compliance

Revision ID: 0004
Revises: 0003

"""
import sqlalchemy as sa
from alembic import op

from tenants import rls

TENANT_TABLES: tuple[str, ...] = ("compliance_evidence", "training_sessions", "training_attendances",
                                  "progress_snapshots", "compliance_notices")

# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def _school_id(table: str) -> sa.Column:
    return sa.Column('school_id', sa.Integer(), sa.ForeignKey('schools.id', name=f'fk_{table}_school_id_schools',
                                                              ondelete='RESTRICT'), nullable=False)


def upgrade():
    op.create_table('plan_milestones',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('year_label', sa.String(length=16), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('phase', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('deadline', sa.Date(), nullable=False),
    sa.Column('scope', sa.Enum('all', 'grade5', 'grades1_4', 'staff', name='scope', native_enum=False, length=16),
              nullable=False),
    sa.Column('measure', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('phase between 1 and 9', name=op.f('ck_plan_milestones_phase_1_to_9')),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_plan_milestones_district_id_districts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plan_milestones')),
    sa.UniqueConstraint('district_id', 'year_label', 'position',
                        name=op.f('uq_plan_milestones_district_id_year_label_position'))
    )
    op.create_index(op.f('ix_plan_milestones_district_id'), 'plan_milestones', ['district_id'], unique=False)

    op.create_table('compliance_evidence',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('milestone_id', sa.Integer(), nullable=False),
    sa.Column('done_on', sa.Date(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('filename', sa.String(length=200), nullable=False),
    sa.Column('mimetype', sa.String(length=100), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('submitted', 'accepted', 'returned', name='evidencestatus', native_enum=False,
                                length=16), nullable=False),
    sa.Column('submitted_by_id', sa.Integer(), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reviewed_by_id', sa.Integer(), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('review_comment', sa.Text(), nullable=False),
    _school_id('compliance_evidence'),
    sa.ForeignKeyConstraint(['milestone_id'], ['plan_milestones.id'],
                            name=op.f('fk_compliance_evidence_milestone_id_plan_milestones')),
    sa.ForeignKeyConstraint(['reviewed_by_id'], ['users.id'], name=op.f('fk_compliance_evidence_reviewed_by_id_users')),
    sa.ForeignKeyConstraint(['submitted_by_id'], ['users.id'],
                            name=op.f('fk_compliance_evidence_submitted_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_compliance_evidence'))
    )
    op.create_index(op.f('ix_compliance_evidence_milestone_id'), 'compliance_evidence', ['milestone_id'])
    op.create_index(op.f('ix_compliance_evidence_school_id'), 'compliance_evidence', ['school_id'])

    op.create_table('training_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('held_on', sa.Date(), nullable=False),
    sa.Column('topic', sa.String(length=300), nullable=False),
    sa.Column('trainer', sa.String(length=200), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    _school_id('training_sessions'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_training_sessions_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_training_sessions'))
    )
    op.create_index(op.f('ix_training_sessions_school_id'), 'training_sessions', ['school_id'])

    op.create_table('training_attendances',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    _school_id('training_attendances'),
    sa.ForeignKeyConstraint(['session_id'], ['training_sessions.id'],
                            name=op.f('fk_training_attendances_session_id_training_sessions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_training_attendances_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_training_attendances')),
    sa.UniqueConstraint('session_id', 'user_id', name=op.f('uq_training_attendances_session_id_user_id'))
    )
    op.create_index(op.f('ix_training_attendances_school_id'), 'training_attendances', ['school_id'])
    op.create_index(op.f('ix_training_attendances_session_id'), 'training_attendances', ['session_id'])
    op.create_index(op.f('ix_training_attendances_user_id'), 'training_attendances', ['user_id'])

    op.create_table('progress_snapshots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('milestone_id', sa.Integer(), nullable=False),
    sa.Column('taken_on', sa.Date(), nullable=False),
    sa.Column('done', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('last_done_on', sa.Date(), nullable=True),
    sa.Column('forecast_on', sa.Date(), nullable=True),
    sa.Column('counted_at', sa.DateTime(timezone=True), nullable=False),
    _school_id('progress_snapshots'),
    sa.ForeignKeyConstraint(['milestone_id'], ['plan_milestones.id'],
                            name=op.f('fk_progress_snapshots_milestone_id_plan_milestones'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_progress_snapshots')),
    sa.UniqueConstraint('school_id', 'milestone_id', 'taken_on',
                        name=op.f('uq_progress_snapshots_school_id_milestone_id_taken_on'))
    )
    op.create_index(op.f('ix_progress_snapshots_milestone_id'), 'progress_snapshots', ['milestone_id'])
    op.create_index(op.f('ix_progress_snapshots_school_id'), 'progress_snapshots', ['school_id'])
    op.create_index(op.f('ix_progress_snapshots_taken_on'), 'progress_snapshots', ['taken_on'])

    op.create_table('compliance_notices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('milestone_id', sa.Integer(), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('read_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('read_by_id', sa.Integer(), nullable=True),
    _school_id('compliance_notices'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_compliance_notices_created_by_id_users')),
    sa.ForeignKeyConstraint(['milestone_id'], ['plan_milestones.id'],
                            name=op.f('fk_compliance_notices_milestone_id_plan_milestones'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['read_by_id'], ['users.id'], name=op.f('fk_compliance_notices_read_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_compliance_notices'))
    )
    op.create_index(op.f('ix_compliance_notices_school_id'), 'compliance_notices', ['school_id'])

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.enable_statements(table):
                op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in rls.disable_statements(table):
                op.execute(statement)
    for table in ("compliance_notices", "progress_snapshots", "training_attendances", "training_sessions",
                  "compliance_evidence", "plan_milestones"):
        op.drop_table(table)
