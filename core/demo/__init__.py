"""The demo district: a fictional, deterministic Montreal district, generated in vectors and bulk-loaded."""

from __future__ import annotations

import importlib
import time
from typing import Callable

from sqlalchemy import func, select

from core import sql
from core.demo.district import (
    DEMO_DOMAIN,
    DEMO_PASSWORD,
    FSAS,
    ORGANISATIONS,
    SALES_END,
    VENUE_LOGINS,
)
from core.demo.loading import _load
from core.headline import publish_headlines
from core.models import Organisation, User
from core.quality import keep_quality

__all__ = [
    "DEMO_DOMAIN",
    "DEMO_PASSWORD",
    "FSAS",
    "SALES_END",
    "VENUE_LOGINS",
    "build_demo",
    "demo_logins",
    "empty_database",
]


# --- the command's entry point ---------------------------------------------------------------


def demo_logins() -> list[tuple[str, str, str | None]]:
    """(role, e-mail, organisation slug) of every demo login."""
    logins = [
        ("admin", f"admin@{DEMO_DOMAIN}", None),
        ("staff", f"staff@{DEMO_DOMAIN}", None),
        ("evaluator", f"evaluator@{DEMO_DOMAIN}", None),
    ]
    logins += [("venue", f"venue-{slug}@{DEMO_DOMAIN}", slug) for slug in VENUE_LOGINS]
    return logins


def _ensure_users(db) -> list[tuple[str, str]]:
    from core.auth import create_user

    made = []
    with db.session() as session:
        orgs = {o.slug: o.id for o in session.scalars(select(Organisation))}
        for role, email, slug in demo_logins():
            if slug is not None and slug not in orgs:
                continue
            if session.scalar(select(User.id).where(func.lower(User.email) == email)) is None:
                create_user(
                    session,
                    email,
                    DEMO_PASSWORD,
                    role,
                    orgs.get(slug) if slug else None,
                    name=f"Démo {role}" if slug is None else f"Démo {slug}",
                )
            made.append((role, email))
        session.commit()
    return made


def empty_database(db) -> None:
    """Delete every row of every table of the application (children first)."""
    from core.db import Base
    from core.migrate import load_all_models

    load_all_models()
    tables = list(reversed(Base.metadata.sorted_tables))
    with db.engine.begin() as connection:
        sql.empty_tables(connection, tables)


def build_demo(
    db,
    spectators: int = 50_000,
    seed: int = 2017,
    echo: Callable[[str], None] = print,
    *,
    fresh: bool = False,
    secret: str | None = None,
) -> dict:
    """Build the demo district in ``db`` and return its logins.

    :param db: the :class:`core.db.Database` to fill (already migrated).
    :param spectators: how many spectators (about ten order lines each on average).
    :param seed: the same seed gives the same district, row for row.
    :param echo: where progress lines go.
    :param fresh: empty every table first; without it an existing district is kept as it is.
    :param secret: the district secret keying spectators (default: the application's).
    :returns: ``{"password": str, "users": [(role, email), ...]}``.
    """
    if secret is None:
        from flask import current_app

        secret = current_app.config["DISTRICT_SECRET"]
    if fresh:
        echo("Emptying the database...")
        empty_database(db)
    with db.session() as session:
        existing = session.scalar(select(func.count()).select_from(Organisation))
    if existing:
        echo(
            f"The database already holds {existing} organisations: the demo district is kept as it is "
            "(use --fresh to rebuild it)."
        )
        return {"password": DEMO_PASSWORD, "users": _ensure_users(db)}

    began = time.perf_counter()
    totals = _load(db, spectators, seed, secret, echo, began)
    users = _ensure_users(db)
    from core import FEATURES

    for name in FEATURES:
        module = importlib.import_module(name)
        step = getattr(module, "build_demo", None)
        if step is not None:
            step(db, rng_seed=seed, echo=echo)
    for name in FEATURES:  # then what reads the finished district (the segments publish its pooled pages' facts)
        finish = getattr(importlib.import_module(name), "finish_demo", None)
        if finish is not None:
            finish(db, echo=echo)
    with db.session() as session:  # what the headline.publish and imports.quality jobs would do within the minute
        published = publish_headlines(session, commit=session.commit)
        quality = keep_quality(session, commit=session.commit)
    echo(
        f"Dashboard figures counted ({published['seconds']:.1f} s), import quality figures ({quality['seconds']:.1f} s)."
    )
    echo(
        f"Demo district ready: {len(ORGANISATIONS)} organisations, {totals['shows']:,} shows, "
        f"{totals['spectators']:,} spectators, {totals['transactions']:,} transactions, "
        f"{totals['contacts']:,} contacts ({time.perf_counter() - began:.1f} s)."
    )
    return {"password": DEMO_PASSWORD, "users": users}
