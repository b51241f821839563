"""launch speed

The contact history loses its three foreign keys (to spectator, campaign and organisation), like
``recipient``: a launch writes one row per test-arm recipient at once (400,000 at 500,000
recipients), and PostgreSQL checks each key row by row, with a lock on the referenced row; the
checks took three quarters of the write. The rows are copied from the experiment's recipients,
whose spectators, campaign and organisations are never deleted (an erasure keeps the pseudonymous
spectator and its history), so the keys never had anything to cascade.

Revision ID: 8c4a1d3e0f52
Revises: 7b3f0c2d9e41
Create Date: 2026-12-03 09:00:00.000000+00:00
"""

from alembic import op


revision = '8c4a1d3e0f52'
down_revision = '7b3f0c2d9e41'
branch_labels = None
depends_on = None

KEYS = (
    ('fk_contact_history_spectator_id_spectator', 'spectator', 'spectator_id', 'CASCADE'),
    ('fk_contact_history_campaign_id_campaign', 'campaign', 'campaign_id', 'SET NULL'),
    ('fk_contact_history_organisation_id_organisation', 'organisation', 'organisation_id', 'SET NULL'),
)


def upgrade() -> None:
    with op.batch_alter_table('contact_history', schema=None) as batch_op:
        for name, _table, _column, _ondelete in KEYS:
            batch_op.drop_constraint(name, type_='foreignkey')


def downgrade() -> None:
    with op.batch_alter_table('contact_history', schema=None) as batch_op:
        for name, table, column, ondelete in KEYS:
            batch_op.create_foreign_key(name, table, [column], ['id'], ondelete=ondelete)
