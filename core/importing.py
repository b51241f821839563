"""Importing ticketing exports (sales and unsubscribes): streamed, validated, written in batches (DESIGN.md §6)."""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import functools
import hashlib
import io
import itertools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from flask import current_app, has_request_context
from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    Table,
    Text,
    any_,
    bindparam,
    func,
    insert,
    literal_column,
    select,
    update,
)

from core.identity import (
    fsa_of,
    identity_basis,
    is_plausible_email,
    is_plausible_postal_code,
    normalise_email,
    normalise_postal_code,
    spectator_key,
    strip_accents,
)
from core.models import (
    Consent,
    Contact,
    ImportBatch,
    Organisation,
    Show,
    Spectator,
    Transaction,
    Venue,
    audit,
    utcnow,
)

KINDS = ("sales", "unsubscribes")
BATCH_SIZE = 20_000  # rows read, parsed and written at once
MAX_ERRORS = 100
MAX_UNKNOWN_DISCIPLINES = 100
SHOWS_KEPT = 1 << 14  # performances whose ids an import keeps from one batch to the next
READ_CHUNK = 1 << 20

_spectators = Spectator.__table__
_contacts = Contact.__table__
_consents = Consent.__table__
_shows = Show.__table__
_venues = Venue.__table__
_transactions = Transaction.__table__


def _(msgid: str, **variables) -> str:
    """The message in the user's language inside a request (French by default), plain English elsewhere."""
    if has_request_context():
        from flask_babel import gettext

        return gettext(msgid, **variables)
    return msgid % variables if variables else msgid


# --- the result ----------------------------------------------------------------------------------

@dataclass
class ImportResult:
    """What came of one import. ``rows = imported + duplicates + rejected + anonymous`` always holds.

    When the file is refused whole, nothing was written: ``imported``, ``duplicates`` and
    ``anonymous`` are 0 and every row counts as ``rejected``; ``invalid_rows`` says how many rows
    had errors themselves.
    """

    kind: str = "sales"
    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    rejected: int = 0
    anonymous: int = 0
    spectators_new: int = 0
    errors: list[dict] = field(default_factory=list)
    errors_total: int = 0
    invalid_rows: int = 0
    unknown_disciplines: list[str] = field(default_factory=list)
    rejects_file: str | None = None
    batch_id: int | None = None
    refused: bool = False
    filename: str = ""
    checksum: str = ""
    encoding: str | None = None
    delimiter: str | None = None

    def add_error(self, line: int, column: str, reason: str) -> None:
        self.errors_total += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"line": line, "column": column, "reason": reason})

    def to_json(self) -> dict:
        return {
            "rows": self.rows,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "anonymous": self.anonymous,
            "spectators_new": self.spectators_new,
            "errors": list(self.errors),
            "errors_total": self.errors_total,
            "invalid_rows": self.invalid_rows,
            "unknown_disciplines": list(self.unknown_disciplines),
            "rejects_file": self.rejects_file,
            "batch_id": self.batch_id,
            "kind": self.kind,
            "refused": self.refused,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
        }


class ImportRefused(Exception):
    """The file is refused whole; ``result`` lists why. The caller must roll back its session."""

    def __init__(self, result: ImportResult):
        super().__init__(f"import refused: {result.errors_total} error(s)")
        self.result = result


# --- headers -------------------------------------------------------------------------------------

def canonical(text: str) -> str:
    """Lower-case letters and digits only, accents removed: ``Valeur de l'achat`` → ``valeurdelachat``."""
    return re.sub(r"[^a-z0-9]", "", strip_accents(text).lower())


def canonical_header(text: str) -> str:
    """A header's canonical form; a unit in brackets is ignored (``Durée (min)`` → ``duree``)."""
    return canonical(re.sub(r"\([^)]*\)|\[[^\]]*\]", "", text)) or canonical(text)


# field: (French headers, English headers); the first of each is how an error names the column.
SALES_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "last_name": (("Nom", "Nom de famille"), ("Last name", "Surname", "Family name")),
    "first_name": (("Prénom",), ("First name", "Given name")),
    "address": (("Adresse", "Adresse postale"), ("Address", "Street address")),
    "postal_code": (("Code postal",), ("Postal code", "Postcode")),
    "email": (("Adresse courriel", "Courriel", "Adresse électronique"), ("Email", "Email address")),
    "phone": (("Téléphone", "Numéro de téléphone"), ("Phone", "Phone number", "Telephone")),
    "amount": (("Valeur de l'achat",), ("Amount", "Purchase value")),
    "tickets": (("Nombre de billets",), ("Tickets", "Number of tickets")),
    "circumstance": (("Circonstance de l'achat",), ("Purchase circumstance",)),
    "purchased_at": (("Date de l'achat", "Date d'achat"), ("Purchase date",)),
    "show_date": (("Date du spectacle",), ("Show date",)),
    "show_title": (("Titre du spectacle",), ("Show title",)),
    "show_time": (("Heure du spectacle",), ("Show time",)),
    "company": (("Compagnie",), ("Company",)),
    "venue": (("Salle",), ("Venue",)),
    "capacity": (("Capacité de la salle",), ("Capacity", "Venue capacity")),
    "duration": (("Durée",), ("Duration",)),
    "discipline": (("Type de spectacle",), ("Discipline", "Show type")),
    "category": (("Catégorie d'achat",), ("Purchase category",)),
    "channel": (("Canal d'achat",), ("Channel", "Purchase channel")),
    "newsletter": (("Abonné à l'infolettre",), ("Newsletter",)),
    "promo_code": (("Code promo",), ("Promo code",)),
    "order_id": (("Numéro de commande",), ("Order ID", "Order number")),
    "customer_id": (("Identifiant client",), ("Customer ID",)),
}
# The seed's twelve essential fields: a sales file without one of these columns is refused.
SALES_REQUIRED = ("last_name", "first_name", "address", "postal_code", "email", "phone", "amount", "tickets",
                  "circumstance", "purchased_at", "show_date", "show_title")

UNSUBSCRIBE_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "email": SALES_COLUMNS["email"],
    "customer_id": SALES_COLUMNS["customer_id"],
    "date": (("Date", "Date de désabonnement", "Date du désabonnement", "Désabonné le"),
             ("Date", "Unsubscribe date", "Unsubscribed at", "Unsubscribed on")),
}


def _header_index(columns: dict) -> dict[str, tuple[str, str]]:
    """canonical header → (field, language)"""
    index: dict[str, tuple[str, str]] = {}
    for name, (french, english) in columns.items():
        for language, labels in (("en", english), ("fr", french)):
            for label in labels:
                index.setdefault(canonical_header(label), (name, language))
    return index


_SALES_HEADERS = _header_index(SALES_COLUMNS)
_SALES_ONLY = frozenset({"amount", "tickets", "purchased_at", "show_date", "show_title"})
_UNSUBSCRIBE_HEADERS = _header_index(UNSUBSCRIBE_COLUMNS)


@dataclass
class _Header:
    fields: list[str]                       # the header cells as written in the file
    index: dict[str, int]                   # field → column position
    language: str                           # "fr" or "en": how to name missing columns
    line: int

    def column(self, name: str) -> str:
        return self.fields[self.index[name]].strip()


def _match_header(cells: list[str], columns: dict, lookup: dict, line: int,
                  result: ImportResult) -> _Header:
    index: dict[str, int] = {}
    votes = {"fr": 0, "en": 0}
    for position, cell in enumerate(cells):
        found = lookup.get(canonical_header(cell))
        if found is None:
            continue
        name, _language = found
        french, english = columns[name]
        canon = canonical_header(cell)
        in_french = any(canonical_header(c) == canon for c in french)
        in_english = any(canonical_header(c) == canon for c in english)
        if in_french and not in_english:
            votes["fr"] += 1
        elif in_english and not in_french:
            votes["en"] += 1
        if name in index:
            result.add_error(line, cell.strip(), _("This column appears more than once."))
            continue
        index[name] = position
    language = "en" if votes["en"] > votes["fr"] else "fr"
    return _Header(fields=cells, index=index, language=language, line=line)


def _column_label(columns: dict, name: str, language: str) -> str:
    french, english = columns[name]
    return (french if language == "fr" else english)[0]


# --- values --------------------------------------------------------------------------------------

_SPACES = " \u00a0\u202f\u2009\t"
_GROUPED_SPACE = re.compile(r"\d{1,3}(?:[ \u00a0\u202f\u2009]\d{3})+(?:[.,]\d{0,2})?")
_SPACE_DROP = str.maketrans("", "", _SPACES)
_GROUPED_COMMA = re.compile(r"\d{1,3}(?:,\d{3})+")
_GROUPED_DOT = re.compile(r"\d{1,3}(?:\.\d{3})+")
_DECIMAL = re.compile(r"(\d{0,9})(?:\.(\d{0,2}))?")
MAX_TICKETS = 100_000
MAX_CAPACITY = 1_000_000
MAX_DURATION = 10_000


@functools.lru_cache(maxsize=1 << 14)
def parse_amount(text: str) -> int | None:
    """Money as integer cents: ``12,50 $``, ``1 234,50``, ``$12.50``, ``12.5`` → 1250 / 123450 / 1250 / 1250.

    Spaces, no-break spaces and narrow no-break spaces group thousands; a lone comma or point
    followed by three digits groups thousands too (``1,234`` is 1234 dollars), otherwise it is the
    decimal mark. None when the text is not a non-negative amount.
    """
    s = text.replace("$", "").strip(_SPACES)
    if s[:3].upper() == "CAD":
        s = s[3:].lstrip(_SPACES)
    elif s[-3:].upper() == "CAD":
        s = s[:-3].rstrip(_SPACES)
    if any(space in s for space in _SPACES):
        if not _GROUPED_SPACE.fullmatch(s):
            return None
        s = s.translate(_SPACE_DROP)
    if s.startswith("+"):
        s = s[1:]
    if "," in s and "." in s:
        if s.rfind(",") > s.rfind("."):
            s = s.replace(".", "").replace(",", ".")
        else:
            s = s.replace(",", "")
    elif "," in s:
        s = s.replace(",", "") if _GROUPED_COMMA.fullmatch(s) else s.replace(",", ".")
    elif "." in s and _GROUPED_DOT.fullmatch(s):
        s = s.replace(".", "")
    match = _DECIMAL.fullmatch(s)
    if match is None or not (match.group(1) or match.group(2)):
        return None
    whole, cents = match.group(1) or "0", (match.group(2) or "").ljust(2, "0")
    return int(whole) * 100 + int(cents)


def _whole_number(text: str) -> int | None:
    s = text.translate(_SPACE_DROP)
    return int(s) if s and len(s) < 10 and s.isascii() and s.isdigit() else None


_DATE_ISO = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[ T]+(.+))?")
_DATE_DMY = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?:[ T]+(.+))?")
_TIME = re.compile(r"(\d{1,2})\s*(?:[:hH]\s*(\d{2})?)?\s*(?::\s*(\d{2})(?:\.\d+)?)?\s*(?:([AaPp])\.?\s*[Mm]\.?)?")


@functools.lru_cache(maxsize=1 << 10)
def parse_time(text: str) -> dt.time | None:
    """``19:30``, ``19h30``, ``19 h``, ``7:30 PM``, ``19:30:00`` → a time; None otherwise."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        return None
    hour, minute, second = int(match.group(1)), int(match.group(2) or 0), int(match.group(3) or 0)
    meridiem = (match.group(4) or "").lower()
    if meridiem:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if meridiem == "p" else 0)
    if hour > 23 or minute > 59 or second > 59:
        return None
    return dt.time(hour, minute, second)


@functools.lru_cache(maxsize=1 << 14)
def parse_datetime(text: str) -> tuple[dt.datetime, bool] | None:
    """``2017-03-15``, ``2017-03-15 19:30``, ``15/03/2017`` (day first) → (moment, has a time); None otherwise."""
    if len(text) >= 10 and text[4] == "-" and text[7] == "-":
        try:
            moment = dt.datetime.fromisoformat(text)  # the common case, in C
        except ValueError:
            pass
        else:
            if 1900 <= moment.year <= 2100:
                return moment.replace(tzinfo=None), len(text) > 10
            return None
    match = _DATE_ISO.fullmatch(text)
    if match:
        year, month, day, rest = int(match.group(1)), int(match.group(2)), int(match.group(3)), match.group(4)
    else:
        match = _DATE_DMY.fullmatch(text)
        if match is None:
            return None
        day, month, year, rest = int(match.group(1)), int(match.group(2)), int(match.group(3)), match.group(4)
    if not 1900 <= year <= 2100:
        return None
    clock = dt.time()
    if rest:
        clock = parse_time(rest.rstrip("Zz"))
        if clock is None:
            return None
    try:
        return dt.datetime.combine(dt.date(year, month, day), clock), bool(rest)
    except ValueError:
        return None


def parse_duration(text: str) -> int | None:
    """Minutes: ``90``, ``90 min``, ``1h30``, ``2 h``, ``1:30``; None otherwise."""
    s = canonical(text.replace(":", "h"))
    match = re.fullmatch(r"(\d{1,5})(?:mn|min|minute|minutes)?", s)
    if match:
        return int(match.group(1))
    match = re.fullmatch(r"(\d{1,3})(?:h|hr|hrs|heure|heures|hour|hours)(\d{1,2})?(?:mn|min|minutes)?", s)
    if match:
        return int(match.group(1)) * 60 + int(match.group(2) or 0)
    return None


def plus_two_years(moment: dt.datetime) -> dt.datetime:
    """The same moment two years later (29 February → 28 February)."""
    try:
        return moment.replace(year=moment.year + 2)
    except ValueError:
        return moment.replace(year=moment.year + 2, day=28)


DISCIPLINE_LABELS = {
    "musique": "music", "music": "music",
    "theatre": "theatre", "theater": "theatre",
    "danse": "dance", "dance": "dance",
    "humour": "humour", "humor": "humour",
    "cirque": "circus", "circus": "circus", "artsducirque": "circus",
    "musiqueclassique": "classical", "classique": "classical", "classical": "classical",
    "classicalmusic": "classical", "opera": "classical",
    "festival": "festival",
    "autre": "other", "autres": "other", "other": "other",
}
CHANNEL_LABELS = {
    "internet": "web", "web": "web", "enligne": "web", "online": "web", "siteweb": "web", "website": "web",
    "guichet": "box_office", "billetterie": "box_office", "boxoffice": "box_office", "comptoir": "box_office",
    "telephone": "phone", "phone": "phone", "tel": "phone",
}
CATEGORY_LABELS = {
    "achatunique": "single", "billetsimple": "single", "billetunique": "single", "single": "single",
    "singleticket": "single", "simple": "single", "unique": "single",
    "abonnement": "subscription", "subscription": "subscription", "abonne": "subscription",
    "seasonticket": "subscription",
}
_CIRCUMSTANCE_WORDS = (
    ("complimentary", ("complimentary", "gratuit", "courtoisie", "faveur", "invitation", "free")),
    ("promotion", ("promo", "rabais", "discount", "reduit", "escompte", "solde")),
    ("regular", ("regular", "regulier", "pleintarif", "pleinprix", "fullprice", "standard")),
)
_YES = frozenset({"oui", "yes", "o", "y", "1", "true", "vrai", "x"})


@functools.lru_cache(maxsize=1 << 10)
def circumstance_key(label: str) -> str:
    """regular price / plein tarif / régulier → regular; promotion / promo / rabais → promotion;
    complimentary / gratuit / courtoisie → complimentary; anything else → other."""
    canon = canonical(label)
    if canon == "comp":
        return "complimentary"
    for key, words in _CIRCUMSTANCE_WORDS:
        if any(word in canon for word in words):
            return key
    return "other"


@functools.lru_cache(maxsize=1 << 10)
def category_key(label: str) -> str:
    """Achat unique / Billet simple → single; Abonnement → subscription; anything else → single."""
    canon = canonical(label)
    found = CATEGORY_LABELS.get(canon)
    if found:
        return found
    return "subscription" if ("abonn" in canon or "subscri" in canon) else "single"


@functools.lru_cache(maxsize=1 << 10)
def discipline_key(label: str) -> tuple[str, bool]:
    """(key, whether the label is known): Musique → music ... Opéra → classical; unknown → other."""
    if not label:
        return "other", True
    found = DISCIPLINE_LABELS.get(canonical(label))
    return (found, True) if found else ("other", False)


@functools.lru_cache(maxsize=1 << 10)
def channel_key(label: str) -> str | None:
    """Internet / Web / En ligne → web; Guichet / Billetterie → box_office; Téléphone → phone; else None."""
    return CHANNEL_LABELS.get(canonical(label)) if label else None


@functools.lru_cache(maxsize=1 << 10)
def is_yes(label: str) -> bool:
    """oui / yes / o / y / 1 / true (and vrai, x)."""
    return canonical(label) in _YES


# --- reading the file ----------------------------------------------------------------------------

def _inspect(path: Path) -> tuple[str, str, int, bool]:
    """One streaming pass: (encoding, sha256, size, has NUL bytes). UTF-8 when the bytes decode as
    UTF-8 (``utf-8-sig`` with a BOM, ``utf-16`` with a UTF-16 BOM), Windows-1252 otherwise."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8, size, has_nul, head = True, 0, False, b""
    with path.open("rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            if not head:
                head = chunk[:4]
            digest.update(chunk)
            size += len(chunk)
            has_nul = has_nul or b"\x00" in chunk
            if utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
        if utf8:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                utf8 = False
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", digest.hexdigest(), size, True
    if utf8:
        return ("utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"), digest.hexdigest(), size, has_nul
    return "cp1252", digest.hexdigest(), size, has_nul


def _sniff_delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def rejects_encoding(encoding: str | None) -> str:
    """The encoding a rejects file is written in: the export's own, UTF-8 for a UTF-16 export."""
    return "utf-8" if not encoding or encoding == "utf-16" else encoding


class _Rejects:
    """The refused rows with a ``reason`` column, opened on the first one (same delimiter and encoding)."""

    def __init__(self, path: Path, header: list[str], delimiter: str, encoding: str):
        self.path, self.header, self.delimiter = path, header, delimiter
        self.encoding = rejects_encoding(encoding)
        self.handle = None
        self.writer = None

    def write(self, cells: list[str], problems: list[tuple[str, str]]) -> None:
        if self.handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = self.path.open("w", encoding=self.encoding, errors="replace", newline="")
            self.writer = csv.writer(self.handle, delimiter=self.delimiter)
            self.writer.writerow([*self.header, "reason"])
        reason = "; ".join(f"{column}: {text}" if column else text for column, text in problems)
        self.writer.writerow([*cells, reason])

    def close(self, discard: bool = False) -> str | None:
        if self.handle is None:
            return None
        self.handle.close()
        if discard:
            self.path.unlink(missing_ok=True)
            return None
        return str(self.path)


class _Progress:
    """A progress bar over the bytes read (``"terminal"``), a callable ``(done, total)``, or nothing."""

    def __init__(self, progress, total: int, label: str):
        self.callback, self.bar = None, None
        if progress == "terminal":
            import click

            self.bar = click.progressbar(length=max(total, 1), label=label, file=sys.stderr)
            self.bar.__enter__()
        elif callable(progress):
            self.callback = progress
        self.total, self.done = total, 0

    def update(self, done: int) -> None:
        if self.bar is not None and done > self.done:
            self.bar.update(done - self.done)
        elif self.callback is not None:
            self.callback(done, self.total)
        self.done = max(self.done, done)

    def close(self) -> None:
        self.update(self.total)
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


# --- parsing rows --------------------------------------------------------------------------------

ANONYMOUS = object()


class _Sale:
    __slots__ = ("line", "key", "fsa", "last_name", "first_name", "address", "postal_code", "email", "phone",
                 "customer_id", "amount", "tickets", "circumstance", "category", "channel", "promo_code",
                 "order_id", "purchased_at", "show_key", "title", "company", "venue", "capacity", "duration",
                 "discipline", "starts_at", "newsletter", "external_id")


# Column lengths of the models: longer values are errors rather than database failures.
_LIMITS = {"last_name": 200, "first_name": 200, "address": 400, "phone": 40, "customer_id": 100,
           "show_title": 300, "company": 200, "venue": 200, "promo_code": 60, "order_id": 100}


_BAD = object()  # a value the fast path does not vouch for: the row goes through the row-by-row parser


CACHE_KEEP = 1 << 12  # entries a cache may carry from one batch to the next


class _Cache(dict):
    """``function`` memoised per distinct argument; ``list(map(cache.__getitem__, values))`` runs at C
    speed on the many repeats of an export (dates, amounts, titles, labels, buyers).

    Between batches :meth:`trim` forgets everything once past ``limit`` entries: the few-valued
    columns (labels, titles, prices) stay memoised for the whole file, the many-valued ones (buyers,
    moments) are memoised within a batch only. Either way a cache holds at most one batch's distinct
    values plus ``limit``, reached on the first batch: memory does not grow with the file."""

    __slots__ = ("function", "limit")

    def __init__(self, function, limit: int = CACHE_KEEP):
        super().__init__()
        self.function, self.limit = function, limit

    def __missing__(self, key):
        value = self[key] = self.function(key)
        return value

    def trim(self) -> None:
        """Forget everything past ``limit`` entries (between batches): memory stays flat."""
        if len(self) > self.limit:
            self.clear()


class _SaleColumns:
    """A batch of good sales, one list per field of :class:`_Sale`, in file order."""

    __slots__ = tuple(name for name in _Sale.__slots__ if name != "line")

    def __len__(self) -> int:
        return len(self.external_id)

    def with_sales(self, good: list[bool], sales: dict[int, "_Sale"]) -> "_SaleColumns":
        """These columns with ``sales`` (batch index → sale) put back in their places."""
        merged, names = _SaleColumns(), self.__slots__
        sources = [iter(getattr(self, name)) for name in names]
        targets = [[] for _name in names]
        for index, ok in enumerate(good):
            if ok:
                for source, target in zip(sources, targets):
                    target.append(next(source))
            elif index in sales:
                for name, target in zip(names, targets):
                    target.append(getattr(sales[index], name))
        for name, target in zip(names, targets):
            setattr(merged, name, target)
        return merged


@dataclass
class _Parsed:
    bad: list[tuple[int, list[tuple[str, str]]]]  # (index in the batch, problems), in file order
    anonymous: int
    good: Any  # what the writer takes: _SaleColumns, or a list of _Unsubscribe


class _SalesParser:
    """Turns one CSV record into a :class:`_Sale`, ``ANONYMOUS``, or a list of (column, reason)."""

    def __init__(self, header: _Header, organisation_id: int, secret: str, result: ImportResult):
        self.header, self.organisation_id, self.result = header, organisation_id, result
        self.width = len(header.fields)
        # Positions in SALES_COLUMNS order; -1 reads the "" appended to each record.
        self.order = [header.index.get(name, -1) for name in SALES_COLUMNS]
        self.prefix = f"{organisation_id}|"
        # The buyers' keys, the costliest value of a row (an HMAC): kept across batches for repeat
        # buyers, within a bound reached long before a file's size shows.
        self.key_of = functools.lru_cache(maxsize=1 << 13)(functools.partial(spectator_key, secret))
        self.unknown: set[str] = set()  # the labels of result.unknown_disciplines: at most 100
        self.positions = {name: header.index.get(name, -1) for name in SALES_COLUMNS}
        self.memo = self._memo()

    def _column(self, name: str) -> str:
        return self.header.column(name)

    def _too_long(self, values: dict[str, str]) -> list[tuple[str, str]]:
        return [(self._column(name), _("Too long: at most %(n)d characters.", n=limit))
                for name, limit in _LIMITS.items() if len(values[name]) > limit]

    def _date(self, name: str, text: str, problems: list) -> tuple[dt.datetime, bool] | None:
        if not text:
            problems.append((self._column(name), _("A value is required.")))
            return None
        parsed = parse_datetime(text)
        if parsed is None:
            problems.append((self._column(name), _(
                "Not a date (expected 2017-03-15, 2017-03-15 19:30 or 15/03/2017).")))
        return parsed

    def parse(self, cells: list[str], line: int):
        width = len(cells)
        if width != self.width:
            if width < self.width or any(c.strip() for c in cells[self.width:]):
                return [("", _("This row has %(found)d fields where the header has %(expected)d.",
                                found=width, expected=self.width))]
        cells.append("")
        (last_name, first_name, address, raw_postal, raw_email, phone, amount_text, tickets_text, circumstance_text,
         purchased_text, show_date_text, title, show_time_text, company, venue, capacity_text, duration_text,
         discipline_text, category_text, channel_text, newsletter_text, promo_code, order_id,
         customer_id) = [cells[i].strip() for i in self.order]
        cells.pop()
        problems: list[tuple[str, str]] = []
        if (len(last_name) > 200 or len(first_name) > 200 or len(address) > 400 or len(phone) > 40
                or len(customer_id) > 100 or len(title) > 300 or len(company) > 200 or len(venue) > 200
                or len(promo_code) > 60 or len(order_id) > 100):
            problems.extend(self._too_long({
                "last_name": last_name, "first_name": first_name, "address": address, "phone": phone,
                "customer_id": customer_id, "show_title": title, "company": company, "venue": venue,
                "promo_code": promo_code, "order_id": order_id}))
        amount = parse_amount(amount_text) if amount_text else None
        if amount is None or amount >= 10**11:
            if not amount_text:
                reason = _("A value is required.")
            elif amount is None:
                reason = _("Not an amount (expected e.g. 12,50 $ or 12.50).")
            else:
                reason = _("The amount is too large.")
            problems.append((self._column("amount"), reason))
        tickets = _whole_number(tickets_text)
        if tickets is None or not 0 < tickets <= MAX_TICKETS:
            problems.append((self._column("tickets"), _("A value is required.") if not tickets_text else _(
                "The number of tickets must be a positive whole number.")))
        purchased = self._date("purchased_at", purchased_text, problems)
        shown = self._date("show_date", show_date_text, problems)
        starts_at = None
        if shown is not None:
            starts_at, has_time = shown
            if show_time_text and not has_time:
                clock = parse_time(show_time_text)
                if clock is None:
                    problems.append((self._column("show_time"), _("Not a time (expected 19:30).")))
                else:
                    starts_at = dt.datetime.combine(starts_at.date(), clock)
        if not title:
            problems.append((self._column("show_title"), _("A value is required.")))
        capacity = duration = None
        if capacity_text:
            capacity = _whole_number(capacity_text)
            if capacity is None or not 0 < capacity <= MAX_CAPACITY:
                problems.append((self._column("capacity"), _(
                    "The capacity must be a positive whole number.")))
        if duration_text:
            duration = parse_duration(duration_text)
            if duration is None or duration > MAX_DURATION:
                problems.append((self._column("duration"), _("Not a duration in minutes.")))
        email = normalise_email(raw_email) if raw_email else None
        if raw_email and not is_plausible_email(email):
            problems.append((self._column("email"), email_problem()))
        postal = normalise_postal_code(raw_postal) if raw_postal else None
        if postal and not is_plausible_postal_code(postal):
            problems.append((self._column("postal_code"), postal_code_problem()))
        if problems:
            return problems

        basis = identity_basis(email, last_name, first_name, postal, phone)
        if basis is None:
            return ANONYMOUS
        sale = _Sale()
        sale.line = line
        sale.key = key = self.key_of(basis)
        sale.fsa = fsa_of(postal)
        sale.email, sale.postal_code = email, postal
        sale.last_name, sale.first_name = last_name or None, first_name or None
        sale.address, sale.phone, sale.customer_id = address or None, phone or None, customer_id or None
        sale.title = title = _squeeze(title)
        sale.company, sale.venue = _squeeze(company) or None, _squeeze(venue) or None
        sale.promo_code, sale.order_id = promo_code or None, order_id or None
        sale.amount, sale.tickets, sale.capacity, sale.duration = amount, tickets, capacity, duration
        sale.purchased_at = purchased_at = purchased[0]
        sale.starts_at = starts_at
        discipline, known = discipline_key(discipline_text)
        if not known:
            self._unknown(discipline_text)
        sale.discipline = discipline
        sale.circumstance = circumstance = circumstance_key(circumstance_text)
        sale.category = category = category_key(category_text)
        sale.channel = channel = channel_key(channel_text)
        sale.newsletter = is_yes(newsletter_text)
        sale.show_key = show_key = show_natural_key(title, starts_at, sale.venue)
        sale.external_id = hashlib.sha256(f"{self.prefix}{key}|{show_key}|{purchased_at.isoformat()}|{amount}|"
                                          f"{tickets}|{circumstance}|{category}|{channel or ''}|{promo_code}|"
                                          f"{order_id}".encode()).hexdigest()
        return sale

    def _unknown(self, label: str) -> None:
        """Report an unknown discipline label once, the first MAX_UNKNOWN_DISCIPLINES of them."""
        if label not in self.unknown and len(self.unknown) < MAX_UNKNOWN_DISCIPLINES:
            self.unknown.add(label)
            self.result.unknown_disciplines.append(label)

    # The fast path: a whole batch at once, column by column, each distinct text parsed once. A row
    # it cannot vouch for goes through :meth:`parse`, which words the errors; both agree on the rest.
    def parse_batch(self, records: list[tuple[list[str], int]]) -> "_Parsed":
        """``records``: (cells, line) in file order → bad rows (with their problems), the count of
        anonymous sales, and the good rows as columns (:class:`_SaleColumns`)."""
        width, memo = self.width, self.memo
        n = len(records)
        suspect: set[int] = set()
        rows = []
        for index, (cells, _line) in enumerate(records):
            if len(cells) != width:
                if len(cells) > width and not any(c.strip() for c in cells[width:]):
                    cells = cells[:width]
                else:
                    suspect.add(index)
                    cells = [""] * width
            rows.append(cells)
        transposed = list(zip(*rows)) if rows else [()] * width
        del rows
        blank = [""] * n

        def column(name: str) -> list[str]:
            position = self.positions[name]
            return list(map(str.strip, transposed[position])) if position >= 0 else blank

        text = {name: column(name) for name in SALES_COLUMNS}
        transposed = None  # the batch's cells live on in ``records`` only

        def converted(kind: str, values) -> list:
            """One column through its memoised converter; rows whose cell failed become suspects."""
            out = list(map(memo[kind].__getitem__, values))
            if _BAD in out:
                suspect.update(i for i, v in enumerate(out) if v is _BAD)
            return out

        for name, limit in _LIMITS.items():
            values = text[name]
            if values is not blank and max(map(len, values), default=0) > limit:
                suspect.update(i for i, v in enumerate(values) if len(v) > limit)
        amounts = converted("amount", text["amount"])
        tickets = converted("tickets", text["tickets"])
        purchased = converted("purchased", text["purchased_at"])
        starts = converted("starts", zip(text["show_date"], text["show_time"]))
        titles = converted("title", text["show_title"])
        capacities = converted("capacity", text["capacity"])
        durations = converted("duration", text["duration"])
        emails = converted("email", text["email"])
        postals = converted("postal", text["postal_code"])
        last_names, first_names, phones = text["last_name"], text["first_name"], text["phone"]
        keys = list(map(memo["identity"].__getitem__, zip(emails, last_names, first_names, postals, phones)))

        bad: list[tuple[int, list[tuple[str, str]]]] = []
        anonymous = keys.count(None)
        good = [key is not None for key in keys]
        rescued: dict[int, _Sale] = {}
        for index in sorted(suspect):
            if keys[index] is None:
                anonymous -= 1
            good[index] = False
            cells, line = records[index]
            parsed = self.parse(cells, line)
            if isinstance(parsed, list):
                bad.append((index, parsed))
            elif parsed is ANONYMOUS:
                anonymous += 1
            else:  # not expected: the checks above are the same as parse's; parse has the last word
                rescued[index] = parsed
        keep = None if all(good) else good

        def pick(values: list) -> list:
            return values if keep is None else list(itertools.compress(values, good))

        columns = _SaleColumns()
        columns.key = pick(keys)
        columns.fsa = list(map(memo["fsa"].__getitem__, pick(postals)))
        columns.email, columns.postal_code = pick(emails), pick(postals)
        columns.last_name = [v or None for v in pick(last_names)]
        columns.first_name = [v or None for v in pick(first_names)]
        columns.address = [v or None for v in pick(text["address"])]
        columns.phone = [v or None for v in pick(phones)]
        columns.customer_id = [v or None for v in pick(text["customer_id"])]
        columns.title = pick(titles)
        columns.company = list(map(memo["squeeze"].__getitem__, pick(text["company"])))
        columns.venue = venues = list(map(memo["squeeze"].__getitem__, pick(text["venue"])))
        promo_codes, order_ids = pick(text["promo_code"]), pick(text["order_id"])
        columns.promo_code = [v or None for v in promo_codes]
        columns.order_id = [v or None for v in order_ids]
        columns.amount, columns.tickets = pick(amounts), pick(tickets)
        columns.capacity, columns.duration = pick(capacities), pick(durations)
        columns.purchased_at = pick(purchased)
        columns.starts_at = pick(starts)
        disciplines = pick(text["discipline"])
        for label in dict.fromkeys(disciplines):
            if not discipline_key(label)[1]:
                self._unknown(label)
        columns.discipline = list(map(memo["discipline"].__getitem__, disciplines))
        columns.circumstance = list(map(memo["circumstance"].__getitem__, pick(text["circumstance"])))
        columns.category = list(map(memo["category"].__getitem__, pick(text["category"])))
        columns.channel = list(map(memo["channel"].__getitem__, pick(text["channel"])))
        columns.newsletter = list(map(memo["newsletter"].__getitem__, pick(text["newsletter"])))
        columns.show_key = list(map(memo["show"].__getitem__, zip(columns.title, columns.starts_at, venues)))
        iso = memo["iso"].__getitem__
        prefix, sha256 = self.prefix, hashlib.sha256
        columns.external_id = [
            sha256(f"{prefix}{key}|{show_key}|{iso(purchased_at)}|{amount}|{tickets}|{circumstance}|{category}|"
                   f"{channel or ''}|{promo_code}|{order_id}".encode()).hexdigest()
            for key, show_key, purchased_at, amount, tickets, circumstance, category, channel, promo_code, order_id
            in zip(columns.key, columns.show_key, columns.purchased_at, columns.amount, columns.tickets,
                   columns.circumstance, columns.category, columns.channel, promo_codes, order_ids)]
        if rescued:
            columns = columns.with_sales(good, rescued)
        for cache in memo.values():
            cache.trim()
        return _Parsed(bad, anonymous, columns)

    def _memo(self) -> dict[str, "_Cache"]:
        def amount(text: str):
            value = parse_amount(text) if text else None
            return _BAD if value is None or value >= 10**11 else value

        def tickets(text: str):
            value = _whole_number(text)
            return _BAD if value is None or not 0 < value <= MAX_TICKETS else value

        def purchased(text: str):
            parsed = parse_datetime(text) if text else None
            return _BAD if parsed is None else parsed[0]

        def starts(pair: tuple[str, str]):
            date_text, time_text = pair
            parsed = parse_datetime(date_text) if date_text else None
            if parsed is None:
                return _BAD
            moment, has_time = parsed
            if time_text and not has_time:
                clock = parse_time(time_text)
                if clock is None:
                    return _BAD
                moment = dt.datetime.combine(moment.date(), clock)
            return moment

        def title(text: str):
            return _squeeze(text) if text else _BAD

        def capacity(text: str):
            if not text:
                return None
            value = _whole_number(text)
            return _BAD if value is None or not 0 < value <= MAX_CAPACITY else value

        def duration(text: str):
            if not text:
                return None
            value = parse_duration(text)
            return _BAD if value is None or value > MAX_DURATION else value

        def email(text: str):
            if not text:
                return None
            value = normalise_email(text)
            return value if is_plausible_email(value) else _BAD

        def postal(text: str):
            value = normalise_postal_code(text) if text else None
            return _BAD if value and not is_plausible_postal_code(value) else value

        def identity(values: tuple):
            if values[0] is _BAD or values[3] is _BAD:  # a suspect row: parse() decides
                return _BAD
            basis = identity_basis(*values)
            return None if basis is None else self.key_of(basis)

        return {
            "amount": _Cache(amount), "tickets": _Cache(tickets), "purchased": _Cache(purchased),
            "starts": _Cache(starts), "title": _Cache(title), "capacity": _Cache(capacity),
            "email": _Cache(email), "postal": _Cache(postal), "identity": _Cache(identity), "fsa": _Cache(fsa_of),
            "duration": _Cache(duration), "squeeze": _Cache(lambda t: _squeeze(t) or None),
            "discipline": _Cache(lambda t: discipline_key(t)[0]), "circumstance": _Cache(circumstance_key),
            "category": _Cache(category_key), "channel": _Cache(channel_key), "newsletter": _Cache(is_yes),
            "show": _Cache(lambda args: show_natural_key(*args)), "iso": _Cache(dt.datetime.isoformat),
        }


def email_problem() -> str:
    """Why an e-mail cell is refused (its value is not repeated: the summary is shown to staff too)."""
    return _("Not a valid e-mail address: expected one @ and a domain, such as name@example.ca.")


def postal_code_problem() -> str:
    """Why a postal-code cell is refused (its value is not repeated, as for e-mails)."""
    return _("Not a postal code: expected a Canadian code such as H2X 1Y4, or a foreign one "
             "such as 10001, 75001 or SW1A 1AA.")


def _squeeze(text: str) -> str:
    return " ".join(text.split()) if "  " in text or "\t" in text or "\n" in text else text


@functools.lru_cache(maxsize=1 << 12)
def show_natural_key(title: str, starts_at: dt.datetime, venue: str | None) -> str:
    """sha256 of title | starts_at | venue (case and spacing ignored): one row per performance."""
    venue_name = " ".join((venue or "").split()).casefold()
    text = f"{' '.join(title.split()).casefold()}|{starts_at.isoformat(sep=' ')}|{venue_name}"
    return hashlib.sha256(text.encode()).hexdigest()


class _Unsubscribe:
    __slots__ = ("line", "email", "key", "customer_id", "at")


class _UnsubscribeParser:
    """Turns one CSV record of an unsubscribe list into an :class:`_Unsubscribe` or a list of (column, reason)."""

    def __init__(self, header: _Header, secret: str, now: dt.datetime):
        self.header, self.secret, self.now = header, secret, now
        self.width = len(header.fields)
        self.positions = {name: header.index.get(name) for name in UNSUBSCRIBE_COLUMNS}

    def parse(self, cells: list[str], line: int):
        width = len(cells)
        if width != self.width:
            if width < self.width or any(c.strip() for c in cells[self.width:]):
                return [("", _("This row has %(found)d fields where the header has %(expected)d.",
                                found=width, expected=self.width))]

        def get(name: str) -> str:
            position = self.positions[name]
            return cells[position].strip() if position is not None else ""

        problems = []
        row = _Unsubscribe()
        row.line = line
        raw_email, row.customer_id = get("email"), get("customer_id") or None
        row.email = normalise_email(raw_email)
        if raw_email and not is_plausible_email(row.email):
            problems.append((self.header.column("email"), email_problem()))
        if row.customer_id and len(row.customer_id) > 100:
            problems.append((self.header.column("customer_id"), _("Too long: at most %(n)d characters.", n=100)))
        if not raw_email and not row.customer_id:
            name = "email" if self.positions["email"] is not None else "customer_id"
            problems.append((self.header.column(name), _("An e-mail address or a customer ID is required.")))
        text = get("date")
        row.at = self.now
        if text:
            parsed = parse_datetime(text)
            if parsed is None:
                problems.append((self.header.column("date"), _(
                    "Not a date (expected 2017-03-15, 2017-03-15 19:30 or 15/03/2017).")))
            else:
                row.at = parsed[0]
        if problems:
            return problems
        basis = identity_basis(row.email, None, None, None, None)
        row.key = spectator_key(self.secret, basis) if basis else None
        return row

    def parse_batch(self, records: list[tuple[list[str], int]]) -> _Parsed:
        bad, good = [], []
        for index, (cells, line) in enumerate(records):
            parsed = self.parse(cells, line)
            if isinstance(parsed, list):
                bad.append((index, parsed))
            else:
                good.append(parsed)
        return _Parsed(bad, 0, good)


# --- writing batches -----------------------------------------------------------------------------

def _chunks(values: list, size: int = BATCH_SIZE) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _among(session, column, values: list):
    """``column IN (values)`` with the whole list as one bound parameter: an array on PostgreSQL, a
    JSON list on SQLite. An expanded IN list costs a bind parameter per value, which shows at 5,000."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    if dialect == "sqlite":
        return column.in_(select(literal_column("value"))
                          .select_from(func.json_each(bindparam(None, json.dumps(list(values)), type_=Text))))
    return column.in_(list(values))


def _dialect_insert(session):
    """The ``insert`` of the session's engine, the one that knows ON CONFLICT."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert


def _insert_ignoring_conflicts(session, table, rows: list[dict], conflict: list[str], returning=()):
    """INSERT ... ON CONFLICT DO NOTHING (both engines): concurrent imports may create the same row."""
    statement = _dialect_insert(session)(table).on_conflict_do_nothing(index_elements=conflict)
    if returning:
        statement = statement.returning(*returning)
        return session.execute(statement, rows).all()
    session.execute(statement, rows)
    return []


def _bulk_insert(session, table, columns: tuple[str, ...], rows: list[tuple], converted: bool = False) -> None:
    """Append ``rows`` (tuples in ``columns`` order) to ``table`` in the session's transaction, the
    way the engine loads fastest: COPY on PostgreSQL, the driver's executemany of plain tuples on
    SQLite (DateTime written in SQLAlchemy's own storage format), Core executemany elsewhere."""
    connection = session.connection()
    dialect = connection.dialect.name
    if dialect == "postgresql":
        names = ", ".join(connection.dialect.identifier_preparer.quote(c) for c in columns)
        with connection.connection.driver_connection.cursor() as cursor:
            with cursor.copy(f"COPY {connection.dialect.identifier_preparer.format_table(table)} ({names}) "
                             "FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    elif dialect == "sqlite":
        if not converted:
            rows = _sqlite_stamps(rows, [i for i, c in enumerate(columns) if isinstance(table.c[c].type, DateTime)])
        names = ", ".join(f'"{c}"' for c in columns)
        cursor = connection.connection.driver_connection.cursor()
        try:
            cursor.executemany(f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join("?" * len(columns))})', rows)
        finally:
            cursor.close()
    else:
        connection.execute(insert(table), [dict(zip(columns, row)) for row in rows])



def _sqlite_stamps(rows: list[tuple], positions) -> list:
    """``rows`` with the datetimes at ``positions`` in SQLAlchemy's SQLite storage format."""
    if not positions:
        return rows
    converted = []
    for row in rows:
        row = list(row)
        for position in positions:
            value = row[position]
            if value is not None:
                row[position] = value.isoformat(" ", "microseconds")
        converted.append(row)
    return converted


def _execute_many(session, statement: str, rows: list[tuple], stamps=()) -> None:
    """The driver's own executemany of ``statement`` (``?`` placeholders) in the session's transaction:
    no per-row work in SQLAlchemy. ``stamps``: positions of datetimes, converted for SQLite."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        rows = _sqlite_stamps(rows, stamps)
    else:
        statement = statement.replace("?", "%s")
    cursor = connection.connection.driver_connection.cursor()
    try:
        cursor.executemany(statement, rows)
    finally:
        cursor.close()


# The staged consents of an import, one row per consent: keep the earliest given_at and the latest
# expires_at; leave withdrawn_at alone. (WHERE true: SQLite's upsert after a SELECT needs a WHERE.)
_CONSENT_UPSERT = (
    "INSERT INTO consent (contact_id, channel, basis, source, given_at, expires_at, withdrawn_at) "
    "SELECT contact_id, channel, basis, min(source), min(given_at), max(expires_at), max(withdrawn_at) "
    "FROM import_consent_stage WHERE true GROUP BY contact_id, channel, basis "
    "ON CONFLICT (contact_id, channel, basis) DO UPDATE SET "
    "given_at = CASE WHEN (excluded.given_at < consent.given_at) THEN excluded.given_at ELSE consent.given_at END, "
    "expires_at = CASE WHEN (consent.expires_at IS NULL) THEN excluded.expires_at "
    "WHEN (excluded.expires_at > consent.expires_at) THEN excluded.expires_at ELSE consent.expires_at END "
    "WHERE excluded.given_at < consent.given_at OR excluded.expires_at IS NOT NULL "
    "AND (consent.expires_at IS NULL OR excluded.expires_at > consent.expires_at)")


class _Memo(dict):
    """What this import already knows the database holds, forgotten whenever it grows past ``limit``:
    repeat buyers close together in a file cost no query. It holds at most ``limit`` entries or one
    batch's, whichever is more, and reaches that on the first batch: memory stays flat whatever the
    file size. (What must hold across the whole file, the rows already imported, is read from the
    database, where the previous batches are.)"""

    def __init__(self, limit: int = 1 << 13):
        super().__init__()
        self.limit = limit

    def put(self, key, value) -> None:
        if len(self) >= self.limit and key not in self:
            self.clear()
        self[key] = value

    def put_many(self, items: dict) -> None:
        if len(self) + len(items) > self.limit:
            self.clear()
        self.update(items)

_SPECTATOR_STAGE = Table(
    "import_spectator_stage", MetaData(),
    *(Column(c.name, c.type) for c in Spectator.__table__.c if c.name in ("key", "created_at", "fsa", "opted_out_at")),
)


class _SpectatorLookup:
    """Finds spectators by key in one query per batch and creates the missing ones."""

    def __init__(self, session, result: ImportResult, memo: bool = True):
        self.session, self.result = session, result
        self.known = _Memo() if memo else None
        self.created: set[str] = set()  # keys created by the last call

    def _select(self, keys: list[str], found: dict) -> None:
        for chunk in _chunks(keys):
            rows = self.session.execute(
                select(_spectators.c.key, _spectators.c.id, _spectators.c.fsa, _spectators.c.opted_out_at)
                .where(_among(self.session, _spectators.c.key, chunk)))
            found.update((key, (id_, fsa, opted)) for key, id_, fsa, opted in rows)

    def _insert(self, rows: list[tuple], found: dict) -> dict[str, int]:
        """Insert new spectators (key, created_at, fsa, opted_out_at), skipping keys that exist; returns
        key → id of those this call created."""
        session = self.session
        dialect = session.get_bind().dialect.name
        if dialect == "sqlite":
            # This transaction holds SQLite's write lock (the import batch is written): no other import
            # can create a key between the select that missed it and this insert.
            _execute_many(session, "INSERT INTO spectator (key, created_at, fsa, opted_out_at) VALUES (?, ?, ?, ?) "
                                   "ON CONFLICT (key) DO NOTHING", rows, stamps=(1, 3))
            keys = [row[0] for row in rows]
            self._select(keys, found)
            return {key: found[key][0] for key in keys if key in found}
        if dialect == "postgresql":
            connection = session.connection()
            connection.exec_driver_sql(
                "CREATE TEMPORARY TABLE IF NOT EXISTS import_spectator_stage (key varchar(64), created_at timestamp, "
                "fsa varchar(3), opted_out_at timestamp) ON COMMIT DROP")
            connection.exec_driver_sql("TRUNCATE import_spectator_stage")
            _bulk_insert(session, _SPECTATOR_STAGE, ("key", "created_at", "fsa", "opted_out_at"), rows)
            return dict(connection.exec_driver_sql(
                "INSERT INTO spectator (key, created_at, fsa, opted_out_at) "
                "SELECT key, created_at, fsa, opted_out_at FROM import_spectator_stage "
                "ON CONFLICT (key) DO NOTHING RETURNING key, id").all())
        return dict(_insert_ignoring_conflicts(
            session, _spectators, [dict(zip(("key", "created_at", "fsa", "opted_out_at"), row)) for row in rows],
            ["key"], returning=(_spectators.c.key, _spectators.c.id)))

    def resolve(self, wanted: dict[str, dict]) -> dict[str, tuple[int, str | None, Any]]:
        """``wanted``: key → values for a new spectator (fsa, opted_out_at).

        Returns key → (id, fsa, opted_out_at) for every wanted key, creating the missing spectators.
        """
        found: dict[str, tuple[int, str | None, Any]] = {}
        known = self.known
        if known:
            found.update((key, known[key]) for key in wanted if key in known)
        self._select([k for k in wanted if k not in found], found)
        missing = [k for k in wanted if k not in found]
        self.created = set()
        if missing:
            now = utcnow()
            inserted = self._insert([(k, now, wanted[k].get("fsa"), wanted[k].get("opted_out_at")) for k in missing],
                                    found)
            for key in inserted:
                found[key] = (found[key][0] if key in found else inserted[key], wanted[key].get("fsa"),
                              wanted[key].get("opted_out_at"))
                self.created.add(key)
            self.result.spectators_new += len(inserted)
            raced = [k for k in missing if k not in found]
            if raced:  # created meanwhile by a concurrent import
                self._select(raced, found)
        # FSAs learnt for spectators known without one
        fill = {found[key][0]: values["fsa"] for key, values in wanted.items()
                if values.get("fsa") and not found[key][1]}
        if fill:
            self.session.execute(update(_spectators).where(_spectators.c.id == bindparam("b_id"))
                                 .values(fsa=bindparam("b_fsa")), [{"b_id": k, "b_fsa": v} for k, v in fill.items()])
            for key, values in wanted.items():
                if found[key][0] in fill:
                    found[key] = (found[key][0], values["fsa"], found[key][2])
        if known is not None:
            known.put_many(found)
        return found


_TRANSACTION_COLUMNS = ("organisation_id", "spectator_id", "show_id", "batch_id", "purchased_at", "amount_cents",
                        "tickets", "circumstance", "category", "channel", "promo_code", "order_id", "external_id")
_PERSONAL = ("last_name", "first_name", "address", "postal_code", "email", "phone", "customer_id")
_CONTACT_COLUMNS = ("organisation_id", "spectator_id", "updated_at", *_PERSONAL)
_CONTACT_STAGE_COLUMNS = ("updated_at", *_PERSONAL, "id")
# A batch's changed contacts, staged by COPY on PostgreSQL and applied in one UPDATE.
_CONTACT_STAGE = Table(
    "import_contact_stage", MetaData(),
    *(Column(c.name, c.type) for c in Contact.__table__.c if c.name in _CONTACT_STAGE_COLUMNS),
)
_CONSENT_COLUMNS = ("contact_id", "channel", "basis", "source", "given_at", "expires_at", "withdrawn_at")
# Each batch's consents are staged (COPY on PostgreSQL), then upserted in one statement by finish().
_CONSENT_STAGE = Table(
    "import_consent_stage", MetaData(),
    *(Column(c.name, c.type) for c in Consent.__table__.c if c.name in _CONSENT_COLUMNS),
)


class _SalesWriter:
    """Writes batches of parsed sales (:class:`_SaleColumns`): spectators, venues, shows, contacts, consents,
    transactions."""

    def __init__(self, session, organisation_id: int, batch_id: int, result: ImportResult):
        self.session, self.organisation_id, self.batch_id, self.result = session, organisation_id, batch_id, result
        self.dialect = session.get_bind().dialect.name
        self.spectators = _SpectatorLookup(session, result)
        self.venues: dict[str, list] = {}  # casefolded name → [id, capacity]
        for id_, name, capacity in session.execute(
                select(_venues.c.id, _venues.c.name, _venues.c.capacity)
                .where(_venues.c.organisation_id == organisation_id)):
            self.venues[name.casefold()] = [id_, capacity]
        self.shows: dict[str, int] = {}  # natural key → id; shows are few next to rows (SHOWS_KEPT at most)
        self.contacts = _Memo()  # spectator id → (contact id, personal fields)
        self.staging = False  # consents staged in a temporary table, upserted by finish()
        self.later = _Cache(plus_two_years)
        self.stamp = _Cache(lambda moment: None if moment is None else moment.isoformat(" ", "microseconds"))

    def write(self, sales: "_SaleColumns") -> None:
        external_ids = sales.external_id
        count = len(external_ids)
        # external id → its first row (a later copy within the batch is a duplicate)
        first = dict(zip(reversed(external_ids), range(count - 1, -1, -1)))
        known: set[str] = set()
        for chunk in _chunks(list(first)):
            known.update(self.session.scalars(
                select(_transactions.c.external_id).where(
                    _transactions.c.organisation_id == self.organisation_id,
                    _among(self.session, _transactions.c.external_id, chunk))))
        fresh = sorted(index for external_id, index in first.items() if external_id not in known)
        self.result.duplicates += count - len(fresh)
        if not fresh:
            return
        keys, fsas = sales.key, sales.fsa
        wanted: dict[str, dict] = {}
        for index in fresh:
            key, fsa = keys[index], fsas[index]
            entry = wanted.get(key)
            if entry is None:
                wanted[key] = {"fsa": fsa}
            elif fsa and not entry["fsa"]:
                entry["fsa"] = fsa
        spectators = self.spectators.resolve(wanted)
        spectator_of = [spectators[keys[index]][0] for index in fresh]
        shows = self._shows(sales, fresh)
        # Spectators this batch created have no contact yet: no need to look theirs up.
        created = {spectators[key][0] for key in self.spectators.created}
        contacts = self._contacts(sales, fresh, spectator_of, created)
        self._consents(sales, fresh, spectator_of, spectators, contacts)
        organisation_id, batch_id = self.organisation_id, self.batch_id
        purchased = sales.purchased_at
        if self.dialect == "sqlite":  # DateTime in SQLAlchemy's storage format, each distinct moment once
            stamps = {moment: moment.isoformat(" ", "microseconds") for moment in set(purchased)}
            purchased = [stamps[moment] for moment in purchased]
        show_keys, amounts, tickets = sales.show_key, sales.amount, sales.tickets
        circumstances, categories, channels = sales.circumstance, sales.category, sales.channel
        promo_codes, order_ids = sales.promo_code, sales.order_id
        _bulk_insert(self.session, _transactions, _TRANSACTION_COLUMNS, [
            (organisation_id, spectator_id, shows[show_keys[index]], batch_id, purchased[index], amounts[index],
             tickets[index], circumstances[index], categories[index], channels[index], promo_codes[index],
             order_ids[index], external_ids[index]) for index, spectator_id in zip(fresh, spectator_of)],
            converted=True)
        self.result.imported += len(fresh)
        self.later.trim()
        self.stamp.trim()

    def _venue_id(self, sales: "_SaleColumns", index: int) -> int | None:
        venue, capacity = sales.venue[index], sales.capacity[index]
        if not venue:
            return None
        entry = self.venues.get(venue.casefold())
        if entry is None:
            id_ = self.session.execute(insert(_venues).returning(_venues.c.id), {
                "organisation_id": self.organisation_id, "name": venue, "capacity": capacity}).scalar_one()
            entry = self.venues[venue.casefold()] = [id_, capacity]
        elif entry[1] is None and capacity:
            self.session.execute(update(_venues).where(_venues.c.id == entry[0]).values(capacity=capacity))
            entry[1] = capacity
        return entry[0]

    def _shows(self, sales: "_SaleColumns", fresh: list[int]) -> dict[str, int]:
        needed: dict[str, int] = {}
        if len(self.shows) > SHOWS_KEPT:  # an export of countless performances: forget those of past batches
            self.shows.clear()
        show_keys, capacities, venues, known = sales.show_key, sales.capacity, sales.venue, self.shows
        for index in fresh:
            show_key = show_keys[index]
            if show_key not in known:
                if show_key not in needed:
                    needed[show_key] = index
            elif capacities[index] and venues[index] and self.venues[venues[index].casefold()][1] is None:
                self._venue_id(sales, index)  # a capacity given on a later row of a known venue
        if needed:
            for chunk in _chunks(list(needed)):
                known.update(self.session.execute(
                    select(_shows.c.natural_key, _shows.c.id).where(
                        _shows.c.organisation_id == self.organisation_id,
                        _among(self.session, _shows.c.natural_key, chunk))).all())
            missing = [index for key, index in needed.items() if key not in known]
            if missing:
                rows = [{"organisation_id": self.organisation_id, "venue_id": self._venue_id(sales, index),
                         "natural_key": show_keys[index], "title": sales.title[index],
                         "company": sales.company[index], "discipline": sales.discipline[index],
                         "starts_at": sales.starts_at[index], "duration_minutes": sales.duration[index]}
                        for index in missing]
                known.update(self.session.execute(
                    insert(_shows).returning(_shows.c.natural_key, _shows.c.id), rows).all())
        return known

    def _contacts(self, sales: "_SaleColumns", fresh: list[int], spectator_of: list[int],
                  created: set[int] = frozenset()) -> dict[int, int]:
        """Upsert one contact per spectator of the batch with the latest personal fields (an empty field
        never erases a known one); returns spectator id → contact id."""
        latest: dict[int, int] = {}  # spectator id → index of its latest sale
        purchased = sales.purchased_at
        for index, spectator_id in zip(fresh, spectator_of):
            current = latest.get(spectator_id)
            if current is None or purchased[index] >= purchased[current]:
                latest[spectator_id] = index
        last_names, first_names, addresses, postal_codes, emails, phones, customer_ids = (
            getattr(sales, name) for name in _PERSONAL)

        def fields_of(index: int) -> tuple:
            return (last_names[index], first_names[index], addresses[index], postal_codes[index], emails[index],
                    phones[index], customer_ids[index])

        memo = self.contacts
        existing: dict[int, tuple] = {s: memo[s] for s in latest if s in memo}
        unknown = [s for s in latest if s not in existing and s not in created]
        columns = [_contacts.c[name] for name in _PERSONAL]
        for chunk in _chunks(unknown):
            for row in self.session.execute(
                    select(_contacts.c.spectator_id, _contacts.c.id, *columns)
                    .where(_contacts.c.organisation_id == self.organisation_id,
                           _among(self.session, _contacts.c.spectator_id, chunk))):
                existing[row[0]] = (row[1], tuple(row[2:]))
        now = utcnow()
        contact_ids: dict[int, int] = {}
        new_rows, changed, remembered = [], [], {}
        for spectator_id, index in latest.items():
            fields = fields_of(index)
            if spectator_id not in existing:
                new_rows.append((self.organisation_id, spectator_id, now, *fields))
                continue
            contact_id, old = existing[spectator_id]
            contact_ids[spectator_id] = contact_id
            if fields != old:
                merged = tuple(new or before for new, before in zip(fields, old))
                if merged != old:
                    changed.append((now, *merged, contact_id))
            else:
                merged = old
            remembered[spectator_id] = (contact_id, merged)
        if new_rows:
            # COPY and a select beat INSERT ... RETURNING threefold on PostgreSQL.
            _bulk_insert(self.session, _contacts, _CONTACT_COLUMNS, new_rows)
            created = [row[1] for row in new_rows]
            for chunk in _chunks(created):
                for spectator_id, contact_id in self.session.execute(
                        select(_contacts.c.spectator_id, _contacts.c.id)
                        .where(_contacts.c.organisation_id == self.organisation_id,
                               _among(self.session, _contacts.c.spectator_id, chunk))):
                    contact_ids[spectator_id] = contact_id
                    remembered[spectator_id] = (contact_id, fields_of(latest[spectator_id]))
        memo.put_many(remembered)
        if changed:
            self._update_contacts(changed)
        return contact_ids

    def _update_contacts(self, changed: list[tuple]) -> None:
        """Write ``changed`` rows (updated_at, *personal fields, contact id): on PostgreSQL staged by COPY
        and applied in one UPDATE ... FROM (an UPDATE per contact costs a round trip each); on SQLite,
        in process, the driver's executemany."""
        if self.dialect != "postgresql":
            _execute_many(self.session, 'UPDATE contact SET updated_at = ?, ' + ", ".join(
                f"{name} = ?" for name in _PERSONAL) + " WHERE id = ?", changed, stamps=(0,))
            return
        connection = self.session.connection()
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_CONTACT_STAGE.name} (updated_at timestamp, "
            "last_name varchar(200), first_name varchar(200), address varchar(400), postal_code varchar(10), "
            "email varchar(320), phone varchar(40), customer_id varchar(100), id integer) ON COMMIT DROP")
        connection.exec_driver_sql(f"TRUNCATE {_CONTACT_STAGE.name}")
        _bulk_insert(self.session, _CONTACT_STAGE, _CONTACT_STAGE_COLUMNS, changed)
        # A temporary table is never analysed by autovacuum: without its size the planner may scan contact.
        connection.exec_driver_sql(f"ANALYZE {_CONTACT_STAGE.name}")
        connection.exec_driver_sql(
            f"UPDATE contact SET updated_at = s.updated_at, " + ", ".join(f"{name} = s.{name}" for name in _PERSONAL)
            + f" FROM {_CONTACT_STAGE.name} s WHERE contact.id = s.id")

    def _consents(self, sales: "_SaleColumns", fresh: list[int], spectator_of: list[int], spectators: dict,
                  contacts: dict[int, int]) -> None:
        """Derive e-mail consents (DESIGN.md §6): newsletter → express from the purchase date; a purchase →
        implied until purchase + 2 years; a subscription → implied until its last show + 2 years.

        Each batch's spans are staged in a temporary table; :meth:`finish` upserts them once for the
        whole import (the database keeps the earliest given_at and the latest expires_at), so no
        consent is read back.
        """
        purchase: dict[int, list] = {}  # contact id → [first purchase, latest purchase]
        express: dict[int, dt.datetime] = {}  # contact id → first purchase with the newsletter box ticked
        subscription: dict[int, list] = {}  # contact id → [first purchase, latest subscribed show]
        opted_out: dict[int, Any] = {}
        keys, purchased_at, newsletters = sales.key, sales.purchased_at, sales.newsletter
        categories, starts = sales.category, sales.starts_at
        for index, spectator_id in zip(fresh, spectator_of):
            contact_id = contacts[spectator_id]
            purchased = purchased_at[index]
            span = purchase.get(contact_id)
            if span is None:
                purchase[contact_id] = [purchased, purchased]
                opted_out[contact_id] = spectators[keys[index]][2]
            elif purchased < span[0]:
                span[0] = purchased
            elif purchased > span[1]:
                span[1] = purchased
            if newsletters[index]:
                first = express.get(contact_id)
                if first is None or purchased < first:
                    express[contact_id] = purchased
            if categories[index] == "subscription":
                until = starts[index]
                span = subscription.get(contact_id)
                if span is None:
                    subscription[contact_id] = [purchased, until]
                else:
                    if purchased < span[0]:
                        span[0] = purchased
                    if until > span[1]:
                        span[1] = until
        # A spectator who unsubscribed district-wide stays unsubscribed, whatever they buy.
        source = f"import {self.batch_id}"
        later = self.later.__getitem__
        rows = [(contact_id, "email", "implied_purchase", source, first, later(latest), opted_out[contact_id])
                for contact_id, (first, latest) in purchase.items()]
        rows += [(contact_id, "email", "express", source, first, None, opted_out[contact_id])
                 for contact_id, first in express.items()]
        rows += [(contact_id, "email", "implied_subscription", source, first, later(latest), opted_out[contact_id])
                 for contact_id, (first, latest) in subscription.items()]
        if rows:
            if not self.staging:
                self._stage()
            if self.dialect == "sqlite":
                stamp = self.stamp.__getitem__
                rows = [(contact_id, channel, basis, source, stamp(first), stamp(expires), stamp(withdrawn))
                        for contact_id, channel, basis, source, first, expires, withdrawn in rows]
                _execute_many(self.session, "INSERT INTO import_consent_stage (contact_id, channel, basis, source, "
                                            "given_at, expires_at, withdrawn_at) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            else:
                _bulk_insert(self.session, _CONSENT_STAGE, _CONSENT_COLUMNS, rows)

    def _stage(self) -> None:
        """Consents are staged batch after batch in a temporary table, then upserted once by :meth:`finish`:
        one upsert per consent rather than one per consent and batch."""
        connection = self.session.connection()
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_CONSENT_STAGE.name} (contact_id integer, channel varchar(20), "
            "basis varchar(30), source varchar(100), given_at timestamp, expires_at timestamp, "
            "withdrawn_at timestamp)" + (" ON COMMIT DROP" if self.dialect == "postgresql" else ""))
        connection.exec_driver_sql(f"DELETE FROM {_CONSENT_STAGE.name}")
        self.staging = True

    def finish(self) -> None:
        """Upsert the staged consents: the database keeps the earliest given_at and the latest expires_at."""
        if not self.staging:
            return
        connection = self.session.connection()
        connection.exec_driver_sql(_CONSENT_UPSERT)
        connection.exec_driver_sql(f"DROP TABLE {_CONSENT_STAGE.name}")
        self.staging = False


class _UnsubscribeWriter:
    """Withdraws this organisation's e-mail consents and records the opt-out on the spectator, district-wide."""

    def __init__(self, session, organisation_id: int, result: ImportResult):
        self.session, self.organisation_id, self.result = session, organisation_id, result
        # No memo: an opt-out recorded by this very import must read as one on the next batch.
        self.spectators = _SpectatorLookup(session, result, memo=False)

    def finish(self) -> None:
        pass

    def write(self, rows: list[_Unsubscribe]) -> None:
        wanted: dict[str, dict] = {}
        for row in rows:
            if row.key:
                entry = wanted.setdefault(row.key, {"opted_out_at": row.at})
                entry["opted_out_at"] = min(entry["opted_out_at"], row.at)
        # Keyed by e-mail even when the spectator never bought: a later sale finds them opted out.
        spectators = self.spectators.resolve(wanted)
        by_customer: dict[str, list[tuple[int, int]]] = {}
        customer_ids = sorted({row.customer_id for row in rows if row.customer_id})
        for chunk in _chunks(customer_ids):
            for customer_id, contact_id, spectator_id in self.session.execute(
                    select(_contacts.c.customer_id, _contacts.c.id, _contacts.c.spectator_id)
                    .where(_contacts.c.organisation_id == self.organisation_id,
                           _among(self.session, _contacts.c.customer_id, chunk))):
                by_customer.setdefault(customer_id, []).append((contact_id, spectator_id))
        spectator_ids = {found[0] for found in spectators.values()}
        spectator_ids.update(s for pairs in by_customer.values() for _c, s in pairs)
        contacts_of: dict[int, int] = {}
        for chunk in _chunks(sorted(spectator_ids)):
            contacts_of.update(self.session.execute(
                select(_contacts.c.spectator_id, _contacts.c.id)
                .where(_contacts.c.organisation_id == self.organisation_id,
                       _among(self.session, _contacts.c.spectator_id, chunk))).all())
        already = {id_ for key, (id_, _fsa, opted) in spectators.items()
                   if opted is not None and key not in self.spectators.created}
        if by_customer:
            ids = sorted({s for pairs in by_customer.values() for _c, s in pairs} - {v[0] for v in spectators.values()})
            for chunk in _chunks(ids):
                already.update(self.session.scalars(
                    select(_spectators.c.id).where(_among(self.session, _spectators.c.id, chunk),
                                                   _spectators.c.opted_out_at.is_not(None))))
        opt_out: dict[int, dt.datetime] = {}
        withdraw: dict[int, dt.datetime] = {}
        for row in rows:
            targets = set()
            if row.key and row.key in spectators:
                targets.add(spectators[row.key][0])
            for _contact_id, spectator_id in by_customer.get(row.customer_id, ()) if row.customer_id else ():
                targets.add(spectator_id)
            if not targets:
                self.result.anonymous += 1
                continue
            fresh = False
            for spectator_id in targets:
                if spectator_id not in already and spectator_id not in opt_out:
                    fresh = True
                if spectator_id not in already:
                    opt_out[spectator_id] = min(opt_out.get(spectator_id, row.at), row.at)
                if spectator_id in contacts_of:
                    contact_id = contacts_of[spectator_id]
                    withdraw[contact_id] = min(withdraw.get(contact_id, row.at), row.at)
            if fresh:
                self.result.imported += 1
            else:
                self.result.duplicates += 1
        if opt_out:
            self.session.execute(
                update(_spectators).where(_spectators.c.id == bindparam("b_id"), _spectators.c.opted_out_at.is_(None))
                .values(opted_out_at=bindparam("b_at")),
                [{"b_id": k, "b_at": v} for k, v in opt_out.items()])
        if withdraw:
            self.session.execute(
                update(_consents).where(_consents.c.contact_id == bindparam("b_id"), _consents.c.channel == "email",
                                        _consents.c.withdrawn_at.is_(None))
                .values(withdrawn_at=bindparam("b_at")),
                [{"b_id": k, "b_at": v} for k, v in withdraw.items()])


# --- the service ---------------------------------------------------------------------------------

def _actor(user, actor: str | None) -> tuple[str, int | None]:
    if user is not None and getattr(user, "is_authenticated", True):
        return actor or user.email, user.id
    return actor or "cli", None


def import_file(session, path, organisation: Organisation, *, kind: str = "sales", skip_invalid: bool = False,
                user=None, filename: str | None = None, progress=None, secret: str | None = None,
                rejects_path=None, actor: str | None = None) -> ImportResult:
    """Import one ticketing export of ``organisation`` into ``session`` (flushed, never committed).

    :param session: the caller's session; the caller commits on success and rolls back on
        :class:`ImportRefused`, then may call :func:`record_refused_import`.
    :param path: the CSV file (UTF-8, UTF-8 with BOM or Windows-1252; comma or semicolon).
    :param organisation: whose export this is.
    :param kind: ``"sales"`` (DESIGN.md §6) or ``"unsubscribes"`` (an e-mail and/or customer ID
        column, an optional date).
    :param skip_invalid: import the good rows and write the bad ones, with a ``reason`` column, to
        ``rejects_path`` (default ``<name>.rejects.csv`` next to the file); otherwise any bad row
        refuses the whole file.
    :param user: who imports (``None`` on the command line); ``actor`` overrides the audit name.
    :param filename: the name to record (an upload's original name); default the file's name.
    :param progress: ``"terminal"`` for a progress bar on stderr, or a callable ``(bytes_done, total)``.
    :param secret: the district secret keying spectators; default ``DISTRICT_SECRET``.
    :raises ImportRefused: the file is refused whole; its ``result`` lists the errors.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown import kind {kind!r}")
    path = Path(path)
    secret = secret or current_app.config["DISTRICT_SECRET"]
    organisation_id = organisation.id
    result = ImportResult(kind=kind, filename=(filename or path.name)[:300])
    encoding, result.checksum, size, has_nul = _inspect(path)
    result.encoding = encoding
    user_name, user_id = _actor(user, actor)

    with path.open("rb") as raw:
        # UTF-8 was checked by _inspect; the other encodings never stop an import on an odd byte.
        text = io.TextIOWrapper(raw, encoding=encoding, errors="strict" if encoding.startswith("utf-8") else "replace",
                                newline="")
        lines: Iterable[str] = text
        if has_nul:  # NUL is no character for PostgreSQL; it is never meaningful in an export
            lines = (line.replace("\x00", "") for line in text)
        lines = iter(lines)
        prefix: list[str] = []
        first = None
        for line in lines:
            prefix.append(line)
            if line.strip():
                first = line
                break
        if first is None:
            result.add_error(1, "", _("The file is empty."))
            return _refuse(result)
        hint = re.fullmatch(r'"?sep=([;,\t|])"?\s*', first, re.IGNORECASE)
        delimiter = hint.group(1) if hint else _sniff_delimiter(first)
        result.delimiter = delimiter
        reader = csv.reader(itertools.chain(prefix, lines), delimiter=delimiter)
        columns, lookup = (SALES_COLUMNS, _SALES_HEADERS) if kind == "sales" else (UNSUBSCRIBE_COLUMNS,
                                                                                  _UNSUBSCRIBE_HEADERS)
        try:
            header_cells = None
            while header_cells is None:
                cells = next(reader)
                if hint is not None and reader.line_num == len(prefix):
                    hint = None  # the "sep=;" line itself
                    continue
                if any(c.strip() for c in cells):
                    header_cells = cells
        except StopIteration:
            result.add_error(1, "", _("The file is empty."))
            return _refuse(result)
        except csv.Error as exc:
            result.add_error(reader.line_num or 1, "",
                             _("The file could not be read as CSV: %(error)s", error=str(exc)))
            return _refuse(result)
        header = _match_header(header_cells, columns, lookup, reader.line_num, result)
        if kind == "sales":
            for name in SALES_REQUIRED:
                if name not in header.index:
                    result.add_error(header.line, _column_label(columns, name, header.language),
                                     _("This required column is missing."))
        else:
            if "email" not in header.index and "customer_id" not in header.index:
                result.add_error(header.line, _column_label(columns, "email", header.language),
                                 _("The file needs an e-mail column or a customer ID column."))
            # A sales export sent as an unsubscribe list would opt its every buyer out, district-wide.
            for cell in header_cells:
                if _SALES_HEADERS.get(canonical_header(cell), ("",))[0] in _SALES_ONLY:
                    result.add_error(header.line, cell.strip(),
                                     _("An unsubscribe list has no such column: is this a sales export?"))
                    break
        if result.errors_total:
            result.rows = _count_rows(reader)
            return _refuse(result)

        batch = ImportBatch(organisation_id=organisation_id, kind=kind, filename=result.filename,
                            checksum=result.checksum, status="running", user_id=user_id)
        session.add(batch)
        session.flush()
        result.batch_id = batch.id
        if kind == "sales":
            parser = _SalesParser(header, organisation_id, secret, result)
            writer = _SalesWriter(session, organisation_id, batch.id, result)
        else:
            parser = _UnsubscribeParser(header, secret, utcnow())
            writer = _UnsubscribeWriter(session, organisation_id, result)
        rejects = None
        if skip_invalid:
            target = Path(rejects_path) if rejects_path else path.with_name(f"{path.stem}.rejects.csv")
            rejects = _Rejects(target, header_cells, delimiter, encoding)
        bar = _Progress(progress, size, label=result.filename)
        try:
            with _roomy_cache(session):
                fatal = _read_rows(reader, parser, writer, result, rejects, skip_invalid, bar, raw)
                if not (fatal or (result.invalid_rows and not skip_invalid)):
                    writer.finish()
        finally:
            bar.close()
            if rejects is not None:
                result.rejects_file = rejects.close()
    if fatal or (result.invalid_rows and not skip_invalid):
        if result.rejects_file:
            Path(result.rejects_file).unlink(missing_ok=True)
            result.rejects_file = None
        return _refuse(result)

    result.rejected = result.invalid_rows
    batch.status = "done"
    batch.rows, batch.imported, batch.duplicates = result.rows, result.imported, result.duplicates
    batch.rejected, batch.anonymous, batch.spectators_new = result.rejected, result.anonymous, result.spectators_new
    batch.errors = result.errors or None
    batch.summary = result.to_json()
    batch.finished_at = utcnow()
    audit(session, f"import.{kind}", actor=user_name, user_id=user_id, object_type="import_batch",
          object_id=batch.id, organisation_id=organisation_id, **_audit_counts(result))
    session.flush()
    return result


SQLITE_CACHE_KIB = 64 * 1024


@contextlib.contextmanager
def _roomy_cache(session):
    """On SQLite, a 64 MiB page cache for the import (the default 2 MiB thrashes on the transaction
    table's indexes), the connection's own setting restored after. The pragmas go to the driver's
    connection: they are no part of the transaction, and restoring one never masks an error."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    before = raw.execute("PRAGMA cache_size").fetchone()[0]
    page_size = raw.execute("PRAGMA page_size").fetchone()[0]
    if (-before if before < 0 else before * page_size // 1024) >= SQLITE_CACHE_KIB:
        yield
        return
    raw.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    try:
        yield
    finally:
        try:
            raw.execute(f"PRAGMA cache_size = {int(before)}")
        except Exception:  # noqa: BLE001 - a closed connection takes its cache with it
            pass


def _read_rows(reader, parser, writer, result: ImportResult, rejects, skip_invalid: bool, bar: _Progress,
               raw) -> bool:
    """Parse every record, writing good ones in batches; True when the file cannot be read to its end."""
    records: list[tuple[list[str], int]] = []
    append = records.append
    previous = reader.line_num
    try:
        for cells in reader:
            line, previous = previous + 1, reader.line_num
            if not cells or not (cells[0].strip() or "".join(cells).strip()):
                continue
            append((cells, line))
            if len(records) >= BATCH_SIZE:
                result.rows += len(records)
                _take(records, parser, writer, result, rejects, skip_invalid)
                records.clear()
                bar.update(raw.tell())
    except csv.Error as exc:
        result.rows += len(records)
        _take(records, parser, None, result, rejects)  # the errors before it, nothing written
        result.add_error(previous + 1, "", _("The file could not be read as CSV: %(error)s", error=str(exc)))
        return True
    result.rows += len(records)
    _take(records, parser, writer, result, rejects, skip_invalid)
    return False


def _take(records: list, parser, writer, result: ImportResult, rejects, skip_invalid: bool = False) -> None:
    """Parse one batch of records: count and report the bad ones, write the good ones unless the file
    is going to be refused (or ``writer`` is None)."""
    if not records:
        return
    parsed = parser.parse_batch(records)
    for index, problems in parsed.bad:
        cells, line = records[index]
        result.invalid_rows += 1
        for column, reason in problems:
            result.add_error(line, column, reason)
        if rejects is not None:
            rejects.write(cells, problems)
    result.anonymous += parsed.anonymous
    if writer is not None and len(parsed.good) and not (result.invalid_rows and not skip_invalid):
        writer.write(parsed.good)


def _count_rows(reader) -> int:
    count = 0
    try:
        for cells in reader:
            if cells and "".join(cells).strip():
                count += 1
    except csv.Error:
        pass
    return count


def _refuse(result: ImportResult):
    """Every row counts as rejected: nothing of a refused file is written."""
    result.refused = True
    result.imported = result.duplicates = result.anonymous = result.spectators_new = 0
    result.rejected = result.rows
    result.batch_id = None
    raise ImportRefused(result)


def _audit_counts(result: ImportResult) -> dict:
    return {"kind": result.kind, "filename": result.filename, "checksum": result.checksum, "rows": result.rows,
            "imported": result.imported, "duplicates": result.duplicates, "rejected": result.rejected,
            "anonymous": result.anonymous, "spectators_new": result.spectators_new,
            "errors_total": result.errors_total}


def record_refused_import(session, organisation: Organisation, result: ImportResult, user=None,
                          filename: str | None = None, actor: str | None = None) -> ImportBatch:
    """Keep a trace of a refused file after the caller rolled back: an ImportBatch with status
    ``refused`` (its errors and counts) and an audit event. Flushes; the caller commits."""
    user_name, user_id = _actor(user, actor)
    batch = ImportBatch(organisation_id=organisation.id, kind=result.kind,
                        filename=(filename or result.filename or "")[:300], checksum=result.checksum or "",
                        status="refused", rows=result.rows, imported=0, duplicates=0, rejected=result.rejected,
                        anonymous=0, spectators_new=0, errors=result.errors or None, user_id=user_id,
                        finished_at=utcnow())
    session.add(batch)
    session.flush()
    result.batch_id = batch.id
    batch.summary = result.to_json()
    audit(session, "import.refused", actor=user_name, user_id=user_id, object_type="import_batch",
          object_id=batch.id, organisation_id=organisation.id, **_audit_counts(result))
    session.flush()
    return batch
