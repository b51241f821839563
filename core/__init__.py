"""quartier-pilot: the application factory."""

from __future__ import annotations

import importlib
import logging
import secrets

from flask import Flask, Response, g, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError, CSRFProtect
from markupsafe import escape
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from core.config import PROJECT_ROOT, load_config

# The feature packages, lowest first; each exposes ``init_app(app)`` that registers its
# blueprint, models, commands, jobs and navigation entries (core/registry.py). This list is the
# composition root: nowhere else does core name a feature package.
FEATURES = ("segments", "campaigns", "experiments")
# Packages that add commands to ``pilot`` only (no pages, models or jobs).
TOOLS = ("benchmarks",)

csrf = CSRFProtect()
log = logging.getLogger(__name__)


def create_app(overrides: dict | None = None) -> Flask:
    """Build the application. ``overrides`` replaces configuration keys (tests use it)."""
    config = load_config(overrides)
    app = Flask(
        __name__,
        instance_path=config["INSTANCE_PATH"],
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    app.config.update(config)
    # Before any blueprint: every ``<int:...>`` of every rule is bounded (see BoundedIntConverter).
    app.url_map.converters["int"] = BoundedIntConverter

    from core import auth, db, i18n, views

    db.init_app(app)
    i18n.init_app(app)
    csrf.init_app(app)
    auth.init_app(app)
    views.init_app(app)
    importlib.import_module("core.admin_views").init_app(app)  # organisations, users, the audit log
    importlib.import_module("core.jobs_views").init_app(app)  # the admin page of scheduled jobs
    importlib.import_module("core.import_views").init_app(app)  # the mapping screen, the preview, the template
    importlib.import_module("core.questions").init_app(app)  # the question budget and its admin page
    for name in (*FEATURES, *TOOLS):
        importlib.import_module(name).init_app(app)
    _install_security(app)
    _install_download_audit(app)
    _install_error_pages(app)
    _guard_number_ranges()
    return app


# The largest identifier a URL may carry: PostgreSQL's ``integer`` (every id named in a URL is one).
MAX_URL_ID = 2**31 - 1


class BoundedIntConverter(IntegerConverter):
    """Werkzeug's ``int`` converter, bounded to 0..MAX_URL_ID: an identifier out of the columns' range
    (``/imports/99999999999999999999``) matches no rule, so it is a 404, never an overflow in the
    database driver (a 500)."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", MAX_URL_ID)
        super().__init__(map, *args, **kwargs)


def page_arg(name: str = "page", default: int = 1, limit: int = 100_000) -> int:
    """A page number from the query string, kept within 1..``limit`` (junk gives ``default``): an
    offset beyond any table must not overflow the driver."""
    value = request.args.get(name, default, type=int)
    return min(max(value, 1), limit)


def id_arg(name: str) -> int | None:
    """An identifier from the query string, or None when missing, junk or out of range."""
    value = request.args.get(name, type=int)
    return value if value is not None and 0 < value <= MAX_URL_ID else None


def _guard_number_ranges() -> None:
    """WTForms' ``NumberRange`` calls ``math.isnan`` on the field's value, which raises
    ``OverflowError`` for an integer beyond the range of a float (a 309-digit number typed in any
    ``IntegerField``): a 500 instead of a form error. Such a number is out of every range the
    application accepts, so it is refused like any other out-of-range value."""
    from wtforms.validators import NumberRange, ValidationError

    if getattr(NumberRange.__call__, "pilot_guarded", False):
        return
    original = NumberRange.__call__

    def __call__(self, form, field):
        try:
            return original(self, form, field)
        except OverflowError:
            raise ValidationError(
                self.message
                or field.gettext("Number must be between %(min)s and %(max)s.")
                % {"min": self._resolve(self.min), "max": self._resolve(self.max)}
            ) from None

    __call__.pilot_guarded = True
    NumberRange.__call__ = __call__


def _install_security(app: Flask) -> None:
    @app.before_request
    def _nonce():
        g.csp_nonce = secrets.token_urlsafe(16)

    @app.after_request
    def _headers(response):
        nonce = getattr(g, "csp_nonce", "")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; "
            f"script-src 'self' 'nonce-{nonce}'; object-src 'none'; base-uri 'self'; "
            "form-action 'self'; frame-ancestors 'none'",
        )
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if app.config.get("SESSION_COOKIE_SECURE"):
            # production is served over HTTPS only: browsers must never fall back to plain HTTP
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if request.endpoint != "static":  # error pages (no endpoint) are never cached either
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def _install_download_audit(app: Flask) -> None:
    """Every download (a response served as an attachment: CSV, JSON) is in the audit log: a view
    that logs its own (contact lists, rejected rows, the audit log) is left alone, any other gets a
    ``download`` event naming the page, its query and who asked (DESIGN.md §10)."""

    @app.after_request
    def _audit_download(response):
        disposition = response.headers.get("Content-Disposition", "")
        if response.status_code != 200 or not disposition.startswith("attachment") or g.get("pilot_audited"):
            return response
        from flask_login import current_user

        from core.db import get_db
        from core.models import audit

        user = current_user if current_user.is_authenticated else None
        with get_db().session() as session:
            audit(
                session,
                "download",
                actor=user.email if user else "anonymous",
                user_id=user.id if user else None,
                object_type="download",
                object_id=(request.endpoint or "")[:60],
                organisation_id=user.organisation_id if user else None,
                path=request.full_path.rstrip("?")[:500],
                filename=disposition.partition("filename=")[2].strip('"')[:200],
            )
            session.commit()
        return response


def _install_error_pages(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(error):
        return render_template(
            "error.html",
            code=400,
            message=_("The form expired or was sent from elsewhere. Reload the page and try again."),
        ), 400

    @app.errorhandler(HTTPException)
    def _http(error):
        messages = {
            403: _("You do not have access to this page."),
            404: _("This page does not exist, or it is not yours to see."),
            405: _("This action is not allowed here."),
            413: _(
                "The file is too large: uploads are limited to %(mb)s MB.",
                mb=max(1, (app.config.get("MAX_CONTENT_LENGTH") or 0) // (1024 * 1024)),
            ),
        }
        message = messages.get(error.code, error.description)
        return render_template("error.html", code=error.code, message=message), error.code

    @app.errorhandler(Exception)
    def _unexpected(error):
        # Never a traceback on a page: log it, show a calm message.
        log.exception("unhandled error on %s", request.path)
        # A failed statement (a timeout, a constraint) leaves the request's transaction aborted on
        # PostgreSQL: every later query of the session fails, the error page's own (the user's
        # organisation in the header) included. Roll back first, so the page can always render.
        session = g.get("db_session")
        if session is not None:
            try:
                session.rollback()
            except Exception:  # the connection itself is gone: the page below copes without it
                log.exception("rollback after an unhandled error failed")
        message = _("Something went wrong on our side. The error was logged.")
        try:
            return render_template("error.html", code=500, message=message), 500
        except Exception:  # the database is unreachable: a page without the header's details
            log.exception("the error page itself failed on %s", request.path)
            return Response(
                f"<!doctype html><title>500</title><h1>Error 500</h1><p>{escape(message)}</p>",
                status=500,
                mimetype="text/html",
            )
