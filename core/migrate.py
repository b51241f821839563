"""Alembic, driven from the application: the only way the schema is made."""

from __future__ import annotations

import importlib

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from core.config import PROJECT_ROOT
from core.db import Base

MIGRATIONS = PROJECT_ROOT / "migrations"
FILE_TEMPLATE = "%%(year)d%%(month).2d%%(day).2d_%%(hour).2d%%(minute).2d_%%(rev)s_%%(slug)s"


def load_all_models() -> None:
    """Import every package's models so that ``Base.metadata`` is complete."""
    from core import FEATURES

    importlib.import_module("core.models")
    for name in FEATURES:
        try:
            importlib.import_module(f"{name}.models")
        except ModuleNotFoundError as exc:
            if exc.name != f"{name}.models":
                raise


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", FILE_TEMPLATE)
    config.set_main_option("timezone", "UTC")
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database behind ``engine`` to ``revision``."""
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def heads() -> list[str]:
    return list(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def drift(engine: Engine) -> list[str]:
    """Differences between the models and the database (empty when none).

    A database that is not at the single head counts as drift too.
    """
    load_all_models()
    problems = []
    script_heads = heads()
    if len(script_heads) != 1:
        problems.append(f"the migrations have {len(script_heads)} heads: {', '.join(script_heads)}")
    current = current_revision(engine)
    if current not in script_heads:
        problems.append(
            f"the database is at revision {current}, not at head {', '.join(script_heads)}: run 'pilot db upgrade'"
        )
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "render_as_batch": True})
        for diff in compare_metadata(context, Base.metadata):
            problems.append(repr(diff))
    return problems
