"""accounts: server-side session version, evaluators' insights grant, login failures per (account, address) and per address

Revision ID: d7a1e5c3b902
Revises: d7a3e5f1b9c2
Create Date: 2026-12-05 12:30:00.000000+00:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'd7a1e5c3b902'
down_revision = 'd7a3e5f1b9c2'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('insights_granted', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        'login_throttle',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=False),
        sa.Column('account', sa.String(length=320), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('first_failure_at', sa.DateTime(), nullable=False),
        sa.Column('locked_until', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_login_throttle')),
        sa.UniqueConstraint('address', 'account', name=op.f('uq_login_throttle_address_account')),
    )


def downgrade() -> None:
    op.drop_table('login_throttle')
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('insights_granted')
        batch_op.drop_column('session_version')
