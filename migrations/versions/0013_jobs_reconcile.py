"""jobs that reconcile with the queue; row-level security on the audit trail and the job rows

Revision ID: 0013
Revises: 0008

"""
import sqlalchemy as sa
from alembic import op

from tenants import rls

# Rows without a school are the district's (see tenants/rls.py for the tables left out, and why).
SHARED_TABLES: tuple[str, ...] = ("audit_entries", "job_runs")

# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=64), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('interrupted_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('resumes', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('note', sa.String(length=300), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('rq_job_id', sa.String(length=48), nullable=True))
        batch_op.add_column(sa.Column('request_id', sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_job_runs_heartbeat_at'), ['heartbeat_at'], unique=False)
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.alter_column('owner', server_default=None)
        batch_op.alter_column('resumes', server_default=None)
        batch_op.alter_column('note', server_default=None)
    # A wrong or revoked API key was once taken as the city's final word: those records only wait for
    # the key to be fixed, so they wait again.
    op.execute("UPDATE city_uploads SET state = 'waiting', attempts = 0 "
               "WHERE state = 'rejected' AND error_code IN ('AUTH_INVALID', 'AUTH_MISSING')")
    if op.get_bind().dialect.name == "postgresql":
        for table in SHARED_TABLES:
            for statement in rls.enable_statements(table, shared=True):
                op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in SHARED_TABLES:
            for statement in rls.disable_statements(table):
                op.execute(statement)
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_runs_heartbeat_at'))
        batch_op.drop_column('request_id')
        batch_op.drop_column('rq_job_id')
        batch_op.drop_column('note')
        batch_op.drop_column('resumes')
        batch_op.drop_column('interrupted_at')
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('owner')
