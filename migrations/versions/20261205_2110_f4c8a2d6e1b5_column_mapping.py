"""column mapping

- ``column_mapping``: an organisation's own names for the columns of its exports, each mapped to a
  field or ignored, saved from the mapping screen and reused by later imports (issue 19.2).

Revision ID: f4c8a2d6e1b5
Revises: b4c8e2a17f60
Create Date: 2026-12-05 21:10:00.000000+00:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'f4c8a2d6e1b5'
down_revision = 'b4c8e2a17f60'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'column_mapping',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organisation_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('header', sa.String(length=200), nullable=False),
        sa.Column('label', sa.String(length=300), nullable=False),
        sa.Column('field', sa.String(length=40), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['organisation_id'], ['organisation.id'],
                                name=op.f('fk_column_mapping_organisation_id_organisation'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_column_mapping_user_id_user'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_column_mapping')),
        sa.UniqueConstraint('organisation_id', 'kind', 'header',
                            name=op.f('uq_column_mapping_organisation_id_kind_header')),
    )


def downgrade() -> None:
    op.drop_table('column_mapping')
