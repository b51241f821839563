"""profile narrow

On PostgreSQL, the FSA index of the profiles includes the spectator id: a rule on a region reads
the index alone (an index-only scan) once the refreshed profiles are vacuumed, which a refresh now
asks for when it commits (``segments.profiles``). SQLite's indexes hold the rowid already: nothing
changes there.

Revision ID: a61f3c9d2b75
Revises: 8c4a1d3e0f52
Create Date: 2026-12-03 11:00:00.000000+00:00
"""

from alembic import op


revision = 'a61f3c9d2b75'
down_revision = '8c4a1d3e0f52'
branch_labels = None
depends_on = None

COLUMNS = ['fsa', 'organisation_mask', 'lifecycle', 'contactable']


def _recreate(include: list[str]) -> None:
    if op.get_context().dialect.name != 'postgresql':
        return
    op.drop_index('ix_spectator_profile_fsa', table_name='spectator_profile')
    op.create_index('ix_spectator_profile_fsa', 'spectator_profile', COLUMNS, unique=False,
                    postgresql_ops={'fsa': 'varchar_pattern_ops'}, postgresql_include=include)


def upgrade() -> None:
    _recreate(['spectator_id'])


def downgrade() -> None:
    _recreate([])
