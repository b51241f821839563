"""French first, English on every page: locale choice and the translation catalogs.

Each package keeps its French catalog as text in ``<package>/translations/fr.po``; at start-up
they are merged and compiled into the instance folder, so no binary catalog is committed and
the compiled one can never be stale.
"""

from __future__ import annotations

import hashlib
import sys
from io import BytesIO
from pathlib import Path
from urllib.parse import quote, urlencode

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import has_request_context, request, session
from flask_babel import Babel
from flask_login import current_user

from core import FEATURES, localtime, numbers
from core.config import PROJECT_ROOT

PACKAGES = ("core", *FEATURES)
EXTRACT_METHOD_MAP = [
    ("**/tests/**", "ignore"),
    ("**/benchmarks/**", "ignore"),
    ("**/migrations/**", "ignore"),
    ("**.py", "python"),
    ("**/templates/**.html", "jinja2"),
]
KEYWORDS = {"_": None, "gettext": None, "lazy_gettext": None, "_l": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2)}


def po_files() -> list[Path]:
    return [p for pkg in PACKAGES if (p := PROJECT_ROOT / pkg / "translations" / "fr.po").exists()]


def load_catalog() -> Catalog:
    """All packages' French catalogs merged into one."""
    merged = Catalog(locale="fr", domain="messages")
    for path in po_files():
        with path.open("rb") as fh:
            for message in read_po(fh, locale="fr"):
                if message.id and message.string:
                    merged.add(message.id, _plural_forms(message.string, merged.num_plurals))
    return merged


def _plural_forms(string, count: int):
    """A plural entry written with French's two usual forms (one, other) given the merged catalog's
    ``count`` forms (CLDR adds "many", for millions): the last form fills the missing ones, so that
    no count falls back to English."""
    if not isinstance(string, tuple):
        return string
    forms = list(string[:count])
    return tuple(forms + [forms[-1]] * (count - len(forms)))


def compile_catalogs(instance_path: str | Path) -> Path:
    """Compile the merged French catalog into ``instance/translations`` when the sources changed."""
    target_dir = Path(instance_path) / "translations"
    mo_path = target_dir / "fr" / "LC_MESSAGES" / "messages.mo"
    fingerprint = hashlib.sha256(b"".join(p.read_bytes() for p in po_files())).hexdigest()
    stamp = mo_path.with_suffix(".sha256")
    if not (mo_path.exists() and stamp.exists() and stamp.read_text() == fingerprint):
        mo_path.parent.mkdir(parents=True, exist_ok=True)
        buffer = BytesIO()
        write_mo(buffer, load_catalog())
        tmp = mo_path.with_suffix(".tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(mo_path)  # atomic, so concurrent workers never read half a file
        stamp.write_text(fingerprint)
    return target_dir


def extract_messages() -> list[tuple[str, str, int]]:
    """Every translatable message in the code and templates: (msgid, file, line)."""
    found = []
    for folder in (*PACKAGES, "templates"):
        root = PROJECT_ROOT / folder
        method_map = [("**.html", "jinja2")] if folder == "templates" else EXTRACT_METHOD_MAP
        for filename, lineno, message, _comments, _ctx in extract_from_dir(
            root,
            method_map=method_map,
            keywords=KEYWORDS,
            options_map={"**.html": {"extensions": "jinja2.ext.do"}},
        ):
            msgid = message[0] if isinstance(message, tuple) else message
            if msgid:
                found.append((msgid, f"{folder}/{filename}", lineno))
    return found


def missing_translations() -> list[tuple[str, str, int]]:
    """Messages that have no French translation yet."""
    catalog = load_catalog()
    missing = []
    for message in extract_messages():
        entry = catalog.get(message[0])
        if entry is None or not entry.string:
            missing.append(message)
    return missing


def select_locale() -> str:
    """``?lang=`` (remembered in the session), then the user's choice, then French."""
    languages = ("fr", "en")
    if not has_request_context():  # jobs and commands: French, the district's language
        return "fr"
    asked = request.args.get("lang")
    if asked in languages:
        session["lang"] = asked
        return asked
    if session.get("lang") in languages:
        return session["lang"]
    if current_user and getattr(current_user, "is_authenticated", False) and current_user.locale in languages:
        return current_user.locale
    return "fr"


def language_switch_url(lang: str) -> str:
    """This page in language ``lang``: the same path and query (filters, page, tab), ``lang``
    replaced; relative, so that it never leaves the site."""
    args = [(key, value) for key, value in request.args.items(multi=True) if key != "lang"]
    args.append(("lang", lang))
    path = quote(request.script_root + request.path, safe="/:@!$&'()*+,;=-._~")
    return f"{path}?{urlencode(args)}"


def init_app(app) -> None:
    directory = compile_catalogs(app.config["INSTANCE_PATH"])
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(directory)
    Babel(app, locale_selector=select_locale)
    app.jinja_env.globals.update(language_switch_url=language_switch_url)
    localtime.init_app(app)
    numbers.init_app(app)


def add_translations(package: str, pairs: dict[str, str]) -> None:
    """Add or replace French translations in ``<package>/translations/fr.po`` (kept sorted)."""
    from babel.messages.pofile import write_po

    path = PROJECT_ROOT / package / "translations" / "fr.po"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        with path.open("rb") as fh:
            catalog = read_po(fh, locale="fr")
    else:
        catalog = Catalog(locale="fr", project="quartier-pilot", domain="messages")
    for msgid, msgstr in pairs.items():
        catalog.add(msgid, msgstr)
    with path.open("wb") as fh:
        write_po(fh, catalog, width=100, sort_output=True)


if __name__ == "__main__":
    # python -m core.i18n               list what still needs a French translation (exit 1 if any)
    # python -m core.i18n add PKG FILE  merge a JSON object {english: french} into PKG's catalog
    if len(sys.argv) == 4 and sys.argv[1] == "add":
        import json

        add_translations(sys.argv[2], json.loads(Path(sys.argv[3]).read_text(encoding="utf-8")))
        sys.exit(0)
    seen = set()
    for msgid, where, line in missing_translations():
        if msgid not in seen:
            seen.add(msgid)
            escaped = msgid.replace("\\", "\\\\").replace('"', '\\"')
            print(f'#: {where}:{line}\nmsgid "{escaped}"\nmsgstr ""\n')
    sys.exit(1 if seen else 0)
