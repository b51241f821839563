"""Shared fixtures: every database test runs on SQLite and on PostgreSQL, each run in its own database."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from core import create_app
from core.auth import create_user
from core.db import Base, get_db, make_engine
from core.migrate import load_all_models, upgrade
from core.models import Organisation

ENGINES = ("sqlite", "postgresql")
PG_SERVER = os.environ.get("PILOT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
PASSWORD = "correct-horse-42"


def pytest_addoption(parser):
    parser.addoption(
        "--db", choices=("all", *ENGINES), default="all", help="run database tests on this engine only (default: both)"
    )


def pytest_generate_tests(metafunc):
    if "engine_name" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--db")
        names = ENGINES if chosen == "all" else (chosen,)
        only = metafunc.definition.get_closest_marker("engines")
        if only:
            names = tuple(n for n in names if n in only.args)
        metafunc.parametrize("engine_name", names, scope="session")


def _create_pg_database() -> tuple[str, callable]:
    """A fresh PostgreSQL database for this test run; PostgreSQL missing is a failure, not a skip."""
    import psycopg

    name = f"pilot_test_{uuid.uuid4().hex[:12]}"
    plain = PG_SERVER.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(plain + "/postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required for the tests (at {plain}): {exc}. Run with --db sqlite to test on SQLite only.",
            pytrace=False,
        )

    def drop():
        with psycopg.connect(plain + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{PG_SERVER}/{name}", drop


@pytest.fixture(scope="session")
def database_url(engine_name, tmp_path_factory):
    """A migrated, empty database for the whole run on ``engine_name``."""
    load_all_models()
    if engine_name == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}"
        drop = None
    else:
        url, drop = _create_pg_database()
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    if drop:
        drop()


@pytest.fixture(scope="session")
def instance_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("instance")


def _empty_tables(engine) -> None:
    tables = [t for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            # APScheduler's job store, when present, is not part of our metadata.
            conn.execute(
                text(
                    "DO $$ BEGIN IF to_regclass('apscheduler_jobs') IS NOT NULL THEN "
                    "DELETE FROM apscheduler_jobs; END IF; END $$"
                )
            )
        else:
            for table in tables:
                conn.execute(table.delete())
            conn.execute(text("DELETE FROM sqlite_sequence")) if conn.execute(
                text("SELECT 1 FROM sqlite_master WHERE name='sqlite_sequence'")
            ).first() else None


@pytest.fixture
def app(database_url, instance_path, tmp_path):
    """The application on a clean database (tables emptied after each test)."""
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "INSTANCE_PATH": str(instance_path),
            "SECRET_KEY": "test-secret",
            "DISTRICT_SECRET": "test-district-secret",
            "INBOX_PATH": str(tmp_path / "inbox"),
            "WTF_CSRF_ENABLED": False,
        }
    )
    yield app
    db = get_db(app)
    _empty_tables(db.engine)
    db.engine.dispose()


@pytest.fixture
def db(app):
    """The :class:`core.db.Database` of the app."""
    return get_db(app)


@pytest.fixture
def session(db):
    """A session on the test database; the test commits what it wants seen by the app."""
    with db.session() as s:
        yield s


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_org(db):
    """Factory: ``make_org("salle-a", k=None)`` creates and commits an organisation."""

    def make(
        slug: str, name: str | None = None, kind: str = "venue", k: int | None = None, disciplines: str = ""
    ) -> Organisation:
        with db.session() as s:
            org = Organisation(
                slug=slug,
                name=name or slug.replace("-", " ").title(),
                kind=kind,
                k_threshold=k,
                disciplines=disciplines,
            )
            s.add(org)
            s.commit()
            return org

    return make


@pytest.fixture
def make_user(db):
    """Factory: ``make_user("staff")`` or ``make_user("venue", org)`` creates a user with PASSWORD."""

    def make(role: str, org: Organisation | None = None, email: str | None = None):
        with db.session() as s:
            user = create_user(
                s, email or f"{role}-{uuid.uuid4().hex[:6]}@example.org", PASSWORD, role, org.id if org else None
            )
            s.commit()
            return user

    return make


def login(client, email: str, password: str = PASSWORD):
    return client.post("/login", data={"email": email, "password": password})


@pytest.fixture
def login_as(app, make_user, make_org):
    """Factory: ``login_as("venue", org)`` returns a test client logged in with a new user of that role."""

    def make(role: str, org: Organisation | None = None):
        if role == "venue" and org is None:
            org = make_org(f"org-{uuid.uuid4().hex[:6]}")
        user = make_user(role, org)
        client = app.test_client()
        response = login(client, user.email)
        assert response.status_code == 302, response.data[:500]
        client.user = user
        return client

    return make
