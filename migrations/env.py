"""Alembic environment: one metadata for every package, batch mode for SQLite."""

from alembic import context

from core.db import Base, make_engine
from core.migrate import load_all_models

load_all_models()
config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = config.attributes.get("engine")
    if engine is None:
        from core.config import default_database_url

        engine = make_engine(config.get_main_option("sqlalchemy.url") or default_database_url())
    with engine.begin() as conn:
        _run(conn)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things: batch mode rebuilds tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; use 'pilot db upgrade'")
run_migrations_online()
