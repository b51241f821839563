"""provider approval: a named organisation approves, as data provider, a campaign whose rule names it

Revision ID: e3b9c1f7a214
Revises: d7a1e5c3b902
Create Date: 2026-12-05 13:00:00.000000+00:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'e3b9c1f7a214'
down_revision = 'd7a1e5c3b902'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'provider_approval',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('campaign_id', sa.Integer(), nullable=False),
        sa.Column('organisation_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('requested_at', sa.DateTime(), nullable=False),
        sa.Column('decided_at', sa.DateTime(), nullable=True),
        sa.Column('decided_by_id', sa.Integer(), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'approved', 'declined', 'expired')",
                           name=op.f('ck_provider_approval_status')),
        sa.ForeignKeyConstraint(['campaign_id'], ['campaign.id'], name=op.f('fk_provider_approval_campaign_id_campaign'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['decided_by_id'], ['user.id'], name=op.f('fk_provider_approval_decided_by_id_user'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['organisation_id'], ['organisation.id'],
                                name=op.f('fk_provider_approval_organisation_id_organisation'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_approval')),
        sa.UniqueConstraint('campaign_id', 'organisation_id', name=op.f('uq_provider_approval_campaign_id_organisation_id')),
    )
    op.create_index(op.f('ix_provider_approval_organisation_id'), 'provider_approval', ['organisation_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_provider_approval_organisation_id'), table_name='provider_approval')
    op.drop_table('provider_approval')
