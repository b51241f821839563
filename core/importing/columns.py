"""Columns of an export: the headers each field answers to, in French and English (DESIGN.md §6)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.identity import (
    strip_accents,
)
from core.importing.common import _
from core.importing.result import ImportResult

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
SALES_REQUIRED = (
    "last_name",
    "first_name",
    "address",
    "postal_code",
    "email",
    "phone",
    "amount",
    "tickets",
    "circumstance",
    "purchased_at",
    "show_date",
    "show_title",
)

UNSUBSCRIBE_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "email": SALES_COLUMNS["email"],
    "customer_id": SALES_COLUMNS["customer_id"],
    "date": (
        ("Date", "Date de désabonnement", "Date du désabonnement", "Désabonné le"),
        ("Date", "Unsubscribe date", "Unsubscribed at", "Unsubscribed on"),
    ),
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
    fields: list[str]  # the header cells as written in the file
    index: dict[str, int]  # field → column position
    language: str  # "fr" or "en": how to name missing columns
    line: int

    def column(self, name: str) -> str:
        return self.fields[self.index[name]].strip()


def _match_header(
    cells: list[str],
    columns: dict,
    lookup: dict,
    line: int,
    result: ImportResult,
    mapping: dict[str, str] | None = None,
) -> _Header:
    """The fields of a header row: each cell by the headers we know, else by the organisation's
    ``mapping`` (canonical header → field; ``""`` ignores it); a field named twice is an error."""
    index: dict[str, int] = {}
    votes = {"fr": 0, "en": 0}
    mapping = mapping or {}
    for position, cell in enumerate(cells):
        found = lookup.get(canonical_header(cell))
        if found is None:
            mapped = mapping.get(canonical_header(cell))
            if mapped and mapped in columns:
                if mapped in index:
                    result.add_error(line, cell.strip(), _("This column appears more than once."))
                else:
                    index[mapped] = position
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
