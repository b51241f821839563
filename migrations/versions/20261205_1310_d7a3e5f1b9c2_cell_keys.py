"""cell keys and the question budget

- ``spectator.cell_key``: each spectator's secret cell key of the noisy pooled figures
  (core.privacy), filled by the application (it needs the district secret), with a partial index
  of the spectators still without one;
- ``spectator_profile.cell_key``: its copy in the profiles, summed beside each count of a preview;
  the FSA index gains it so that a rule on a region still reads that index alone on SQLite;
- ``ix_audit_event_user_action_at``: a user's questions of the day, counted at each question.

Revision ID: d7a3e5f1b9c2
Revises: d7a2e4f1c9b3
Create Date: 2026-12-05 13:10:00.000000+00:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'd7a3e5f1b9c2'
down_revision = 'd7a2e4f1c9b3'
branch_labels = None
depends_on = None

NO_KEY = sa.text('cell_key IS NULL')


def upgrade() -> None:
    with op.batch_alter_table('spectator') as batch:
        batch.add_column(sa.Column('cell_key', sa.Integer(), nullable=True))
    op.create_index('ix_spectator_no_cell_key', 'spectator', ['id'], unique=False,
                    postgresql_where=NO_KEY, sqlite_where=NO_KEY)
    with op.batch_alter_table('spectator_profile') as batch:
        batch.add_column(sa.Column('cell_key', sa.Integer(), nullable=False, server_default='0'))
    op.drop_index('ix_spectator_profile_fsa', table_name='spectator_profile')
    op.create_index('ix_spectator_profile_fsa', 'spectator_profile',
                    ['fsa', 'organisation_mask', 'lifecycle', 'contactable', 'cell_key'], unique=False,
                    postgresql_ops={'fsa': 'varchar_pattern_ops'}, postgresql_include=['spectator_id'])
    op.create_index('ix_audit_event_user_action_at', 'audit_event', ['user_id', 'action', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_audit_event_user_action_at', table_name='audit_event')
    op.drop_index('ix_spectator_profile_fsa', table_name='spectator_profile')
    op.create_index('ix_spectator_profile_fsa', 'spectator_profile',
                    ['fsa', 'organisation_mask', 'lifecycle', 'contactable'], unique=False,
                    postgresql_ops={'fsa': 'varchar_pattern_ops'}, postgresql_include=['spectator_id'])
    with op.batch_alter_table('spectator_profile') as batch:
        batch.drop_column('cell_key')
    op.drop_index('ix_spectator_no_cell_key', table_name='spectator')
    with op.batch_alter_table('spectator') as batch:
        batch.drop_column('cell_key')
