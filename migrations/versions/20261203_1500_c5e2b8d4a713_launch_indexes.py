"""launch indexes

Three index changes found in the launch's plans at a million spectators:

- ``ix_consent_withdrawn``: a partial index of the withdrawn consents. The launch keeps a contact
  only if it never withdrew e-mail consent; without it that anti-join read every consent (265 MB at
  2.5 million consents), with it a few thousand index entries.
- ``ix_consent_contact_id`` goes: the unique constraint on (contact_id, channel, basis) leads with
  the same column and serves every lookup by contact, so every consent written by an import paid
  for an index nothing read.
- ``ix_contact_history_campaign_id`` goes: no query searches the contact history by campaign (the
  contact-pressure exclusion reads it by spectator and date), and a launch writes one row per
  test-arm recipient.

Revision ID: c5e2b8d4a713
Revises: a61f3c9d2b75
Create Date: 2026-12-03 15:00:00.000000+00:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'c5e2b8d4a713'
down_revision = 'a61f3c9d2b75'
branch_labels = None
depends_on = None

WITHDRAWN = sa.text('withdrawn_at IS NOT NULL')


def upgrade() -> None:
    op.create_index('ix_consent_withdrawn', 'consent', ['contact_id', 'channel'], unique=False,
                    postgresql_where=WITHDRAWN, sqlite_where=WITHDRAWN)
    op.drop_index('ix_consent_contact_id', table_name='consent')
    op.drop_index('ix_contact_history_campaign_id', table_name='contact_history')


def downgrade() -> None:
    op.create_index('ix_contact_history_campaign_id', 'contact_history', ['campaign_id'], unique=False)
    op.create_index('ix_consent_contact_id', 'consent', ['contact_id'], unique=False)
    op.drop_index('ix_consent_withdrawn', table_name='consent')
