"""supplementary assessment: its date and result, kept beside the first year-end result (TT27 Điều 11)

Revision ID: 0014
Revises: 0008

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    # year_results already has row-level security (0002): new columns need nothing more.
    with op.batch_alter_table('year_results') as batch:
        batch.add_column(sa.Column('supplementary_on', sa.Date(), nullable=True))
        batch.add_column(sa.Column('supplementary_passed', sa.Boolean(), nullable=True))


def downgrade():
    with op.batch_alter_table('year_results') as batch:
        batch.drop_column('supplementary_passed')
        batch.drop_column('supplementary_on')
