"""preview speed

The FSA index of the profiles becomes (fsa, organisation_mask, lifecycle, contactable): a rule on
a region and organisations is then answered, with its preview's breakdown, from the index alone on
SQLite. On PostgreSQL its FSA column is in ``varchar_pattern_ops``, so that a rule's "fsa starts
with" (``LIKE 'H2%'``) reads it whatever the database's collation (the default operator class
serves LIKE only under the C collation); it still serves ``fsa in (...)``.

Revision ID: 7b3f0c2d9e41
Revises: 5e9a1c7d3b20
Create Date: 2026-12-03 08:55:00.000000+00:00
"""

from alembic import op


revision = '7b3f0c2d9e41'
down_revision = '5e9a1c7d3b20'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_spectator_profile_fsa', table_name='spectator_profile')
    op.create_index('ix_spectator_profile_fsa', 'spectator_profile',
                    ['fsa', 'organisation_mask', 'lifecycle', 'contactable'], unique=False,
                    postgresql_ops={'fsa': 'varchar_pattern_ops'})


def downgrade() -> None:
    op.drop_index('ix_spectator_profile_fsa', table_name='spectator_profile')
    op.create_index('ix_spectator_profile_fsa', 'spectator_profile', ['fsa'], unique=False)
