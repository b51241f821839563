"""spectator fsa changed at

- ``spectator.fsa_changed_at``: when an import learnt the spectator's postal area (FSA) after the
  spectator was created. The district's and the disciplines' pooled facts read that area in every
  season, so a change of it moves every season those scopes hold the spectator in; a new purchase
  moves only its own season and the later ones (``segments.insight_publish``, issue 18).

Revision ID: d2b7e9c4a531
Revises: a7e5c1d9f324
Create Date: 2026-12-07 04:00:00.000000+00:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'd2b7e9c4a531'
down_revision = 'a7e5c1d9f324'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('spectator') as batch_op:
        batch_op.add_column(sa.Column('fsa_changed_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('spectator') as batch_op:
        batch_op.drop_column('fsa_changed_at')
