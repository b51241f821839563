"""Reading one value of an export: amounts, dates, times, durations and the labels of categories."""

from __future__ import annotations

import datetime as dt
import functools
import re

from core.importing.columns import canonical

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
    "musique": "music",
    "music": "music",
    "theatre": "theatre",
    "theater": "theatre",
    "danse": "dance",
    "dance": "dance",
    "humour": "humour",
    "humor": "humour",
    "cirque": "circus",
    "circus": "circus",
    "artsducirque": "circus",
    "musiqueclassique": "classical",
    "classique": "classical",
    "classical": "classical",
    "classicalmusic": "classical",
    "opera": "classical",
    "festival": "festival",
    "autre": "other",
    "autres": "other",
    "other": "other",
}
CHANNEL_LABELS = {
    "internet": "web",
    "web": "web",
    "enligne": "web",
    "online": "web",
    "siteweb": "web",
    "website": "web",
    "guichet": "box_office",
    "billetterie": "box_office",
    "boxoffice": "box_office",
    "comptoir": "box_office",
    "telephone": "phone",
    "phone": "phone",
    "tel": "phone",
}
CATEGORY_LABELS = {
    "achatunique": "single",
    "billetsimple": "single",
    "billetunique": "single",
    "single": "single",
    "singleticket": "single",
    "simple": "single",
    "unique": "single",
    "abonnement": "subscription",
    "subscription": "subscription",
    "abonne": "subscription",
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
