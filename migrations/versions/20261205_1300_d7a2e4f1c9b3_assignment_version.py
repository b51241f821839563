"""assignment version

Each experiment stores the version of the assignment algorithm that drew its arms: 1, largest
remainder rounding (every experiment launched before this revision), 2, randomised rounding
(every unit's probability of an arm is its planned share, in tiny strata too). Verifying an
experiment redraws it with its own version.

Revision ID: d7a2e4f1c9b3
Revises: c5e2b8d4a713
Create Date: 2026-12-05 13:00:00.000000+00:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'd7a2e4f1c9b3'
down_revision = 'c5e2b8d4a713'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('experiment') as batch:
        batch.add_column(sa.Column('assignment_version', sa.Integer(), server_default='1', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('experiment') as batch:
        batch.drop_column('assignment_version')
