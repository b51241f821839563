"""An organisation's own column names, mapped once to the fields of the import format and kept."""

from __future__ import annotations

import difflib

from sqlalchemy import select

from core.importing.columns import (
    _SALES_HEADERS,
    _UNSUBSCRIBE_HEADERS,
    SALES_COLUMNS,
    SALES_REQUIRED,
    UNSUBSCRIBE_COLUMNS,
    canonical_header,
)
from core.models import ColumnMapping, audit

IGNORE = ""  # the field of a column mapped to nothing

# Words a venue's own headers often carry, for the suggestion preselected on the mapping screen
# (the user confirms it): canonical fragment → field, the longest fragment found first.
_HINTS = {
    "sales": {
        "courriel": "email",
        "email": "email",
        "mail": "email",
        "codepostal": "postal_code",
        "postal": "postal_code",
        "cp": "postal_code",
        "zip": "postal_code",
        "prenom": "first_name",
        "firstname": "first_name",
        "nomdefamille": "last_name",
        "lastname": "last_name",
        "surname": "last_name",
        "nom": "last_name",
        "adresse": "address",
        "address": "address",
        "adr": "address",
        "rue": "address",
        "telephone": "phone",
        "tel": "phone",
        "phone": "phone",
        "cellulaire": "phone",
        "montant": "amount",
        "prix": "amount",
        "total": "amount",
        "valeur": "amount",
        "amount": "amount",
        "price": "amount",
        "qte": "tickets",
        "quantite": "tickets",
        "billets": "tickets",
        "nbbillets": "tickets",
        "qty": "tickets",
        "quantity": "tickets",
        "places": "tickets",
        "circonstance": "circumstance",
        "tarif": "circumstance",
        "typedeprix": "circumstance",
        "datetransaction": "purchased_at",
        "dateachat": "purchased_at",
        "datevente": "purchased_at",
        "vendule": "purchased_at",
        "transaction": "purchased_at",
        "achat": "purchased_at",
        "daterepresentation": "show_date",
        "datespectacle": "show_date",
        "representationle": "show_date",
        "heure": "show_time",
        "spectacle": "show_title",
        "representation": "show_title",
        "evenement": "show_title",
        "titre": "show_title",
        "event": "show_title",
        "show": "show_title",
        "salle": "venue",
        "lieu": "venue",
        "compagnie": "company",
        "producteur": "company",
        "duree": "duration",
        "capacite": "capacity",
        "jauge": "capacity",
        "discipline": "discipline",
        "genre": "discipline",
        "canal": "channel",
        "modedevente": "channel",
        "pointdevente": "channel",
        "categorie": "category",
        "abonnement": "category",
        "infolettre": "newsletter",
        "newsletter": "newsletter",
        "consentement": "newsletter",
        "promo": "promo_code",
        "coupon": "promo_code",
        "commande": "order_id",
        "facture": "order_id",
        "order": "order_id",
        "client": "customer_id",
        "customer": "customer_id",
        "dossier": "customer_id",
    },
    "unsubscribes": {
        "courriel": "email",
        "email": "email",
        "mail": "email",
        "client": "customer_id",
        "customer": "customer_id",
        "date": "date",
    },
}


def columns_of(kind: str) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """The fields of an import kind, each with its French and English headers."""
    return SALES_COLUMNS if kind == "sales" else UNSUBSCRIBE_COLUMNS


def required_fields(kind: str) -> tuple[str, ...]:
    """The fields a file of ``kind`` cannot be imported without (unsubscribes: an e-mail or an ID)."""
    return SALES_REQUIRED if kind == "sales" else ()


def is_known(label: str, kind: str) -> bool:
    """Whether a header is one of the import format's own names (DESIGN.md §6)."""
    return canonical_header(label) in (_SALES_HEADERS if kind == "sales" else _UNSUBSCRIBE_HEADERS)


def saved_mapping(session, organisation_id: int, kind: str) -> dict[str, str]:
    """The organisation's saved mapping for ``kind``: canonical header → field (``""``: ignored)."""
    rows = session.execute(
        select(ColumnMapping.header, ColumnMapping.field).where(
            ColumnMapping.organisation_id == organisation_id, ColumnMapping.kind == kind
        )
    )
    return {header: field for header, field in rows}


def unmapped_headers(cells: list[str], kind: str, mapping: dict[str, str]) -> list[str]:
    """The headers of a file that are neither the format's own names nor in ``mapping``, in order,
    each once (blank headers are never asked about)."""
    seen: set[str] = set()
    unknown = []
    for cell in cells:
        canon = canonical_header(cell)
        if not canon or canon in seen or is_known(cell, kind) or canon in mapping:
            continue
        seen.add(canon)
        unknown.append(cell.strip())
    return unknown


def suggest(label: str, kind: str, taken: frozenset[str] | set[str] = frozenset()) -> str:
    """The field a venue's own header most likely holds, or ``""`` (ignore) when nothing fits:
    the first telling word in it, else a close spelling of a known header (``Montant TTC`` → amount,
    ``Courriel du client`` → email)."""
    canon = canonical_header(label)
    lookup = _SALES_HEADERS if kind == "sales" else _UNSUBSCRIBE_HEADERS
    # The word that comes first names the column (French puts it first: "Nom du client"); a short
    # word (cp, tel, qte) counts only at the start.
    found = []
    for word, field in _HINTS[kind].items():
        at = canon.find(word)
        if field not in taken and at >= 0 and (len(word) > 3 or at == 0):
            found.append((at, -len(word), field))
    if found:
        return min(found)[2]
    close = difflib.get_close_matches(canon, list(lookup), n=1, cutoff=0.85)
    if close and lookup[close[0]][0] not in taken:
        return lookup[close[0]][0]
    return IGNORE


def save_mapping(
    session, organisation_id: int, kind: str, choices: dict[str, str], *, user_id: int | None, actor: str
) -> None:
    """Save ``choices`` (a header as the export writes it → field, ``""`` to ignore) for the
    organisation, replacing what it had for those headers; audited. Flushes, never commits."""
    columns = columns_of(kind)
    existing = {
        m.header: m
        for m in session.scalars(
            select(ColumnMapping).where(ColumnMapping.organisation_id == organisation_id, ColumnMapping.kind == kind)
        )
    }
    saved = {}
    for label, field in choices.items():
        if field and field not in columns:
            raise ValueError(f"unknown field {field!r}")
        canon = canonical_header(label)
        if not canon:
            continue
        row = existing.get(canon)
        if row is None:
            row = ColumnMapping(organisation_id=organisation_id, kind=kind, header=canon)
            session.add(row)
            existing[canon] = row
        row.label, row.field, row.user_id = label[:300], field, user_id
        saved[label[:100]] = field or "ignore"
    session.flush()
    audit(
        session,
        "import.mapping",
        actor=actor,
        user_id=user_id,
        object_type="organisation",
        object_id=organisation_id,
        organisation_id=organisation_id,
        kind=kind,
        columns=saved,
    )
