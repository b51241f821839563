"""profile column

- ``profile_column``: every spectator profile column kept as one array (``segments.profile_columns``),
  written by each profile refresh; a new rule's preview counts its breakdown over the few arrays it
  reads instead of scanning the profile table (issue 18). The arrays are already dense numbers, so
  PostgreSQL keeps them out of line without trying to compress them (storage EXTERNAL).

Revision ID: e6a1f3c8b274
Revises: d2b7e9c4a531
Create Date: 2026-12-07 12:00:00.000000+00:00
"""

from alembic import op
import sqlalchemy as sa


revision = "e6a1f3c8b274"
down_revision = "d2b7e9c4a531"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profile_column",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("vocabulary", sa.JSON(), nullable=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_profile_column")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE profile_column ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("profile_column")
