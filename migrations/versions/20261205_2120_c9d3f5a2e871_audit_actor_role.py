"""audit actor role: the role the actor had when they acted, for the audit log's sentences

Revision ID: c9d3f5a2e871
Revises: f4c8a2d6e1b5
Create Date: 2026-12-05 21:10:00.000000+00:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'c9d3f5a2e871'
down_revision = 'f4c8a2d6e1b5'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('actor_role', sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_column('actor_role')
