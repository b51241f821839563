"""Pseudonymous identity: normalising personal fields and keying spectators with the district secret."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

_POSTAL = re.compile(r"^[A-Z]\d[A-Z]\d[A-Z]\d$")
_FSA = re.compile(r"^[A-Z]\d[A-Z]$")
# An address a mail server could deliver to: one "@", a local part without spaces, quotes or
# brackets (and no dot at its ends or twice in a row), a domain of dotted labels ending in a
# top-level domain of letters (or its punycode form). Unicode letters are welcome (IDN).
_EMAIL = re.compile(
    r"(?!\.)(?!.*\.\.)[^@\s\"(),:;<>\[\]\\]{1,64}(?<!\.)"
    r"@(?:[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?\.)+(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})"
)
# Postal codes as normalised (upper case, letters and digits only). Canadian codes, whole or cut
# after the FSA as some exports keep them ("partial codes keep what they have"); and, for the
# visitors from elsewhere a festival sells to, the shapes other countries use: digits only (US ZIP
# and ZIP+4, France, Germany, Japan, Brazil...), the United Kingdom, Ireland (Eircode), the
# Netherlands, Malta, Argentina, and a country prefix before digits (F-75001, CH-1200, SE-114 55,
# BB17004).
_POSTAL_SHAPES = re.compile(
    r"[A-Z]\d[A-Z](?:\d(?:[A-Z]\d?)?)?"  # Canada: H2X1Y4, H2X, H2X1, H2X1Y
    r"|\d{3,10}"  # digits only
    r"|[A-Z]{1,2}\d[A-Z\d]?\d[A-Z]{2}|GIR0AA"  # United Kingdom: SW1A1AA, M11AE, EH12NG
    r"|[A-Z]\d[\dW][A-Z\d]{4}"  # Ireland: D02X285, D6WXY12
    r"|\d{4}[A-Z]{2}"  # the Netherlands: 1012AB
    r"|[A-Z]{3}\d{4}"  # Malta: VLT1117
    r"|[A-Z]\d{4}[A-Z]{3}"  # Argentina: C1425DKC
    r"|[A-Z]{1,2}\d{2,6}"  # a country prefix and digits: F75001, CH1200, BB17004
)


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def normalise_email(email: str | None) -> str | None:
    """Lower-cased, trimmed e-mail, or None when it is not plausibly an address."""
    if not email:
        return None
    email = email.strip().lower()
    if "@" not in email or email.startswith("@") or email.endswith("@") or " " in email:
        return None
    return email


def is_plausible_email(email: str | None) -> bool:
    """Whether a normalised e-mail (:func:`normalise_email`) has the shape of a deliverable address:
    ``x@@example``, ``x@example`` (no top-level domain) or ``x.@example.org`` do not."""
    return bool(email) and len(email) <= 320 and _EMAIL.fullmatch(email) is not None


def normalise_name(name: str | None) -> str | None:
    """Upper-case letters only, accents removed: ``Côté-Lévesque`` → ``COTELEVESQUE``."""
    if not name:
        return None
    cleaned = re.sub(r"[^A-Z]", "", strip_accents(name).upper())
    return cleaned or None


def normalise_postal_code(code: str | None) -> str | None:
    """``h2x 1y4`` → ``H2X1Y4``; None when empty. Partial codes keep what they have."""
    if not code:
        return None
    cleaned = re.sub(r"[^A-Z0-9]", "", code.upper())
    return cleaned or None


def is_valid_postal_code(code: str) -> bool:
    """A whole Canadian postal code (normalised): ``H2X1Y4``."""
    return bool(_POSTAL.match(code))


def is_plausible_postal_code(code: str | None) -> bool:
    """Whether a normalised postal code (:func:`normalise_postal_code`) is a Canadian code (whole,
    or cut after its FSA) or has the shape of another country's code; ``ZZZ999`` has neither."""
    return bool(code) and len(code) <= 10 and _POSTAL_SHAPES.fullmatch(code) is not None


def fsa_of(postal_code: str | None) -> str | None:
    """The forward sortation area: the first three characters of a Canadian postal code."""
    if postal_code and len(postal_code) >= 3 and _FSA.match(postal_code[:3]):
        return postal_code[:3]
    return None


def normalise_phone(phone: str | None) -> str | None:
    """Digits only, North-American leading 1 dropped; None under 7 digits."""
    if not phone:
        return None
    digits = re.sub(r"\D", "", phone)
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return digits if len(digits) >= 7 else None


def identity_basis(
    email: str | None, last_name: str | None, first_name: str | None, postal_code: str | None, phone: str | None
) -> str | None:
    """The normalised text a spectator's key is computed from, or None for an anonymous sale.

    Order of preference (DESIGN.md §3): the e-mail; else last name + first name + postal code;
    else last name + first name + phone. Each basis is prefixed so two kinds never collide.
    """
    email = normalise_email(email)
    if email:
        return "e:" + email
    last, first = normalise_name(last_name), normalise_name(first_name)
    if last and first:
        postal = normalise_postal_code(postal_code)
        if postal:
            return f"n:{last}|{first}|{postal}"
        phone = normalise_phone(phone)
        if phone:
            return f"p:{last}|{first}|{phone}"
    return None


def spectator_key(secret: str | bytes, basis: str) -> str:
    """HMAC-SHA256 of the identity basis with the district secret, as 64 hex characters."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, basis.encode("utf-8"), hashlib.sha256).hexdigest()
