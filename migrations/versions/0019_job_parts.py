"""job parts: one user action split into parts that several workers take at once

Revision ID: 0019
Revises: 0014

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0019'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    # job_runs already has row-level security (0013): new columns need nothing more.
    with op.batch_alter_table('job_runs') as batch:
        batch.add_column(sa.Column('parent_id', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('parts', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('position', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('done_items', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('total_items', sa.Integer(), nullable=False, server_default='0'))
        batch.create_foreign_key(batch.f('fk_job_runs_parent_id_job_runs'), 'job_runs', ['parent_id'], ['id'])
        batch.create_index(batch.f('ix_job_runs_parent_id'), ['parent_id'], unique=False)


def downgrade():
    with op.batch_alter_table('job_runs') as batch:
        batch.drop_index(batch.f('ix_job_runs_parent_id'))
        batch.drop_constraint(batch.f('fk_job_runs_parent_id_job_runs'), type_='foreignkey')
        for column in ('total_items', 'done_items', 'position', 'parts', 'parent_id'):
            batch.drop_column(column)
