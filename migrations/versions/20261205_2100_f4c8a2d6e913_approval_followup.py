"""approval follow-up: a decline's reason on both kinds of request, and every reminder sent

Revision ID: f4c8a2d6e913
Revises: c9d3f5a2e871
Create Date: 2026-12-05 21:00:00.000000+00:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'f4c8a2d6e913'
down_revision = 'c9d3f5a2e871'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('approval', 'provider_approval'):
        op.add_column(table, sa.Column('decline_reason', sa.String(length=20), nullable=True))
        op.add_column(table, sa.Column('decline_note', sa.Text(), nullable=True))
    op.create_table(
        'approval_reminder',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('approval_id', sa.Integer(), nullable=True),
        sa.Column('provider_approval_id', sa.Integer(), nullable=True),
        sa.Column('sent_at', sa.DateTime(), nullable=False),
        sa.Column('source', sa.String(length=10), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('actor', sa.String(length=320), nullable=False),
        sa.CheckConstraint('(approval_id IS NULL) <> (provider_approval_id IS NULL)',
                           name=op.f('ck_approval_reminder_one_request')),
        sa.CheckConstraint("source IN ('job', 'user')", name=op.f('ck_approval_reminder_source')),
        sa.ForeignKeyConstraint(['approval_id'], ['approval.id'],
                                name=op.f('fk_approval_reminder_approval_id_approval'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['provider_approval_id'], ['provider_approval.id'],
                                name=op.f('fk_approval_reminder_provider_approval_id_provider_approval'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_approval_reminder_user_id_user'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_approval_reminder')),
    )
    op.create_index('ix_approval_reminder_approval_sent', 'approval_reminder', ['approval_id', 'sent_at'],
                    unique=False)
    op.create_index('ix_approval_reminder_provider_sent', 'approval_reminder', ['provider_approval_id', 'sent_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_approval_reminder_provider_sent', table_name='approval_reminder')
    op.drop_index('ix_approval_reminder_approval_sent', table_name='approval_reminder')
    op.drop_table('approval_reminder')
    for table in ('provider_approval', 'approval'):
        with op.batch_alter_table(table) as batch:
            batch.drop_column('decline_note')
            batch.drop_column('decline_reason')
