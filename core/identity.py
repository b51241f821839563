"""Pseudonymous identity: normalising personal fields and keying spectators with the district secret."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

_POSTAL = re.compile(r"^[A-Z]\d[A-Z]\d[A-Z]\d$")
_FSA = re.compile(r"^[A-Z]\d[A-Z]$")


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
    return bool(_POSTAL.match(code))


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


def identity_basis(email: str | None, last_name: str | None, first_name: str | None,
                   postal_code: str | None, phone: str | None) -> str | None:
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
