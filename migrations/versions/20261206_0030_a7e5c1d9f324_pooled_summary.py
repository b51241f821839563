"""pooled summary

- ``pooled_summary``: the raw facts of the insight pages and of the comparison per scope and
  period, published by the insights.warm job after imports and profile refreshes, read by the
  pages instead of the transactions (issue 18).

Revision ID: a7e5c1d9f324
Revises: f4c8a2d6e913
Create Date: 2026-12-06 00:30:00.000000+00:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'a7e5c1d9f324'
down_revision = 'f4c8a2d6e913'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'pooled_summary',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('scope', sa.String(length=80), nullable=False),
        sa.Column('period', sa.String(length=16), nullable=False),
        sa.Column('as_of', sa.Date(), nullable=True),
        sa.Column('epoch', sa.Integer(), nullable=True),
        sa.Column('facts', sa.Text(), nullable=True),
        sa.Column('wanted', sa.Integer(), nullable=True),
        sa.Column('computed_at', sa.DateTime(), nullable=True),
        sa.Column('seconds', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_pooled_summary')),
        sa.UniqueConstraint('kind', 'scope', 'period', name=op.f('uq_pooled_summary_kind_scope_period')),
    )


def downgrade() -> None:
    op.drop_table('pooled_summary')
