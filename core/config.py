"""Configuration: defaults for the embedded SQLite setup, overridden by environment variables."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _instance_path() -> Path:
    return Path(os.environ.get("PILOT_INSTANCE", PROJECT_ROOT / "instance"))


def default_database_url() -> str:
    """SQLite at ``instance/pilot.db`` unless ``DATABASE_URL`` says otherwise."""
    url = os.environ.get("DATABASE_URL")
    if url:
        # Heroku-style URLs name the driver "postgres"; SQLAlchemy wants psycopg 3 spelled out.
        if url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url[len("postgres://") :]
        elif url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return url
    return f"sqlite:///{_instance_path() / 'pilot.db'}"


def _secret(name: str, instance: Path) -> str:
    """Read a secret from the environment, else from a file kept in the instance folder.

    The file is created once with a random value so that a fresh clone works without setup
    and the value survives restarts (sessions stay valid, spectator keys stay stable).
    """
    value = os.environ.get(name)
    if value:
        return value
    path = instance / f".{name.lower()}"
    if path.exists():
        return path.read_text().strip()
    instance.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    path.write_text(value)
    path.chmod(0o600)
    return value


def load_config(overrides: dict | None = None) -> dict:
    """Build the Flask configuration mapping from defaults, environment and ``overrides``."""
    overrides = dict(overrides or {})
    instance = Path(overrides.get("INSTANCE_PATH") or _instance_path())
    production = os.environ.get("PILOT_ENV", "development") == "production"
    config = {
        "INSTANCE_PATH": str(instance),
        "DATABASE_URL": default_database_url(),
        "SECRET_KEY": None,
        "DISTRICT_SECRET": None,
        "BABEL_DEFAULT_LOCALE": "fr",
        "LANGUAGES": ("fr", "en"),
        "K_THRESHOLD": int(os.environ.get("PILOT_K", 10)),
        # Noisy pooled figures (core.privacy): σ of a count's noise, the per-user daily budget of
        # questions (previews, insight views) and its switch (off only for the attack tests).
        "PRIVACY_SIGMA": float(os.environ.get("PILOT_PRIVACY_SIGMA", 14.0)),
        "PRIVACY_DAILY_BUDGET": int(os.environ.get("PILOT_DAILY_QUESTIONS", 1000)),
        "PRIVACY_BUDGET": os.environ.get("PILOT_QUESTION_BUDGET", "on") != "off",
        # A large export read in a process of its own (core.importing.ahead); off for a small machine.
        "IMPORT_READ_AHEAD": os.environ.get("PILOT_IMPORT_READ_AHEAD", "on") != "off",
        "MAX_CONTENT_LENGTH": int(os.environ.get("PILOT_MAX_UPLOAD_MB", 200)) * 1024 * 1024,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": production,
        # Behind HTTPS in production: absolute URLs and HSTS say so.
        "PREFERRED_URL_SCHEME": "https" if production else "http",
        "WTF_CSRF_TIME_LIMIT": None,
        "CONTACT_LIST_RETENTION_DAYS": int(os.environ.get("PILOT_LIST_RETENTION_DAYS", 30)),
        "INBOX_PATH": str(instance / "inbox"),
        "SMTP_HOST": os.environ.get("PILOT_SMTP_HOST"),
        # The site's public address, for links that leave it (contact lists' unsubscribe links,
        # the one-time links of invitations and password resets).
        "PUBLIC_URL": os.environ.get("PILOT_PUBLIC_URL"),
        # How long a one-time link works (core.people).
        "INVITE_LINK_HOURS": float(os.environ.get("PILOT_INVITE_LINK_HOURS", 7 * 24)),
        "RESET_LINK_HOURS": float(os.environ.get("PILOT_RESET_LINK_HOURS", 24)),
        "TESTING": False,
    }
    config.update(overrides)
    if not config["SECRET_KEY"]:
        config["SECRET_KEY"] = _secret("SECRET_KEY", instance)
    if not config["DISTRICT_SECRET"]:
        config["DISTRICT_SECRET"] = _secret("DISTRICT_SECRET", instance)
    return config
