"""Shared domain vocabulary shown to users: the labels of disciplines."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

DISCIPLINE_LABELS = {
    "music": _l("Music"),
    "theatre": _l("Theatre"),
    "dance": _l("Dance"),
    "humour": _l("Humour"),
    "circus": _l("Circus"),
    "classical": _l("Classical music"),
    "festival": _l("Festival"),
    "other": _l("Other"),
}
