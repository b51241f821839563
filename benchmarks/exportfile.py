"""Ticketing exports for the benchmark: N order lines in the import format of DESIGN.md §6.

French headers, semicolons, French amounts (``1 234,50 $``), ``YYYY-MM-DD HH:MM`` purchase times,
``DD/MM/YYYY`` show dates with a separate show time: what a Quebec box office exports. Generated
in vectors (numpy) and written with the csv module, deterministic for a seed.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER = [
    "Nom",
    "Prénom",
    "Adresse",
    "Code postal",
    "Adresse courriel",
    "Téléphone",
    "Valeur de l'achat",
    "Nombre de billets",
    "Circonstance de l'achat",
    "Date de l'achat",
    "Date du spectacle",
    "Heure du spectacle",
    "Titre du spectacle",
    "Salle",
    "Capacité de la salle",
    "Type de spectacle",
    "Catégorie d'achat",
    "Canal d'achat",
    "Abonné à l'infolettre",
    "Code promo",
    "Numéro de commande",
]

_FIRST = (
    "Marie",
    "Julie",
    "Isabelle",
    "Catherine",
    "Jean",
    "Pierre",
    "Luc",
    "Marc",
    "Émilie",
    "Félix",
    "Zoé",
    "Hélène",
    "Sarah",
    "David",
    "Mei",
    "Karim",
    "Noémie",
    "Gabriel",
    "Sophie",
    "Olivier",
)
_LAST = (
    "Tremblay",
    "Gagnon",
    "Roy",
    "Côté",
    "Bouchard",
    "Gauthier",
    "Morin",
    "Lavoie",
    "Fortin",
    "Bélanger",
    "Smith",
    "Nguyen",
    "Haddad",
    "Rossi",
    "Lévesque",
    "Bergeron",
    "Leblanc",
    "Girard",
    "Simard",
    "Caron",
)
_FSAS = ("H2X", "H2J", "H2T", "H2W", "H2L", "H3A", "H1V", "H4A", "H7N", "J4K", "H2S", "H3H", "H1W", "H8N")
_STREETS = (
    "rue Saint-Denis",
    "boulevard Saint-Laurent",
    "rue Sainte-Catherine Est",
    "avenue du Mont-Royal Est",
    "rue Ontario Est",
    "rue Sherbrooke Ouest",
    "avenue Papineau",
    "rue Beaubien Est",
)
_DISCIPLINES = ("Théâtre", "Danse", "Musique", "Humour", "Cirque", "Opéra")
_TITLES = (
    "La Traversée",
    "Les Héritiers",
    "Le Jardin de verre",
    "Corps célestes",
    "Gravité",
    "Les Lucioles",
    "Sans filtre",
    "Vertiges",
    "Carmen",
    "Le Procès",
    "Migrations",
    "Échos",
)
_CIRCUMSTANCES = np.array(["Plein tarif", "Promotion", "Courtoisie"], dtype=object)
_CATEGORIES = np.array(["Achat unique", "Abonnement"], dtype=object)
_CHANNELS = np.array(["Internet", "Guichet", "Téléphone"], dtype=object)
_YES_NO = np.array(["Non", "Oui"], dtype=object)


@dataclass
class Buyers:
    """The people of an export, one entry each: names, postal code, e-mail (None: no e-mail)."""

    last: list[str]
    first: list[str]
    postal: list[str]
    email: list[str | None]

    def __len__(self) -> int:
        return len(self.last)

    def __add__(self, other: "Buyers") -> "Buyers":
        return Buyers(
            self.last + other.last, self.first + other.first, self.postal + other.postal, self.email + other.email
        )


def new_buyers(count: int, tag: str, seed: int) -> Buyers:
    """``count`` people nobody knows yet: e-mails ``prenom.nom.<tag><n>@bench.example``."""
    rng = np.random.default_rng([seed, 11])
    first = rng.integers(len(_FIRST), size=count)
    last = rng.integers(len(_LAST), size=count)
    fsa = rng.integers(len(_FSAS), size=count)
    digits = rng.integers(0, 10, size=(count, 2))
    firsts = [_FIRST[i] for i in first.tolist()]
    lasts = [_LAST[i] for i in last.tolist()]
    postals = [f"{_FSAS[f]} {a}A{b}" for f, (a, b) in zip(fsa.tolist(), digits.tolist())]
    emails = [f"{f.lower()}.{n.lower()}.{tag}{i}@bench.example" for i, (f, n) in enumerate(zip(firsts, lasts))]
    return Buyers(lasts, firsts, postals, emails)


def _french_amount(cents: np.ndarray) -> list[str]:
    out = []
    for value in cents.tolist():
        dollars, rest = divmod(value, 100)
        whole = f"{dollars:,}".replace(",", "\u00a0")  # a no-break space groups thousands
        out.append(f"{whole},{rest:02d} $")
    return out


def write_sales_export(
    path: Path,
    rows: int,
    buyers: Buyers,
    *,
    seed: int,
    start: dt.date,
    end: dt.date,
    shows: int = 150,
    order_prefix: str = "B",
) -> dict:
    """Write ``rows`` order lines bought by ``buyers`` between ``start`` and ``end`` (both included).

    Every buyer appears at least once when there are as many orders as buyers; the rest of the
    orders go to buyers drawn at random. An order has one to three lines (same buyer, same moment).

    :returns: ``{"rows", "orders", "buyers", "bytes"}``.
    """
    if rows <= 0 or len(buyers) == 0:
        raise ValueError("an export needs rows and buyers")
    rng = np.random.default_rng([seed, 12])
    # orders and their lines
    lines_per_order = rng.choice([1, 1, 1, 2, 2, 3], size=rows)
    ends = np.cumsum(lines_per_order)
    n_orders = int(np.searchsorted(ends, rows) + 1)
    lines_per_order = lines_per_order[:n_orders]
    lines_per_order[-1] -= int(lines_per_order.sum() - rows)
    order_of_row = np.repeat(np.arange(n_orders), lines_per_order)
    n_buyers = len(buyers)
    covering = rng.permutation(n_buyers)[:n_orders]
    extra = rng.integers(0, n_buyers, size=max(0, n_orders - n_buyers))
    buyer_of_order = rng.permutation(np.concatenate([covering, extra]))

    # the catalogue of this organisation: performances between start and end + 90 days
    span_days = (end - start).days + 1
    show_day = rng.integers(0, span_days + 90, size=shows)
    show_minutes = rng.choice([14 * 60, 19 * 60 + 30, 20 * 60], size=shows)
    show_title = [f"{_TITLES[i % len(_TITLES)]} ({i + 1})" for i in range(shows)]
    show_disc = rng.integers(0, len(_DISCIPLINES), size=shows)
    show_venue = rng.integers(0, 2, size=shows)
    show_price = (rng.integers(20, 90, size=shows) * 100).astype(np.int64)

    # per order: show, purchase moment (before the show, within the span)
    show_of_order = rng.integers(0, shows, size=n_orders)
    lead = rng.integers(0, 75, size=n_orders)
    day = np.clip(show_day[show_of_order] - lead, 0, span_days - 1)
    minute = rng.integers(8 * 60, 23 * 60, size=n_orders)
    circumstance = np.where(rng.random(n_orders) < 0.2, 1, np.where(rng.random(n_orders) < 0.02, 2, 0))
    category = (rng.random(n_orders) < 0.05).astype(np.int64)
    channel = rng.choice(3, size=n_orders, p=[0.64, 0.22, 0.14])

    # per row: each line of an order is another performance (identical lines would be one line, §6)
    line_in_order = np.arange(rows) - np.repeat(np.cumsum(lines_per_order) - lines_per_order, lines_per_order)
    s = (show_of_order[order_of_row] + line_in_order) % shows
    tickets = rng.choice([1, 2, 2, 2, 3, 4], size=rows)
    amount = show_price[s] * tickets
    amount = np.where(
        circumstance[order_of_row] == 2, 0, np.where(circumstance[order_of_row] == 1, amount * 8 // 10, amount)
    )
    b = buyer_of_order[order_of_row]
    newsletter = rng.random(rows) < 0.3
    civic = rng.integers(10, 9900, size=rows)
    street = rng.integers(0, len(_STREETS), size=rows)

    start_ordinal = start.toordinal()
    day_text = {d: dt.date.fromordinal(start_ordinal + d) for d in np.unique(np.concatenate([day, show_day])).tolist()}
    purchase_text = [
        f"{day_text[d].isoformat()} {m // 60:02d}:{m % 60:02d}"
        for d, m in zip(day[order_of_row].tolist(), minute[order_of_row].tolist())
    ]
    show_date_text = [day_text[d].strftime("%d/%m/%Y") for d in show_day[s].tolist()]
    show_time_text = [f"{m // 60}:{m % 60:02d}" for m in show_minutes[s].tolist()]
    amounts = _french_amount(amount)
    promo = np.where(circumstance[order_of_row] == 1, "BENCH26", "")
    order_text = [f"{order_prefix}{o:09d}" for o in order_of_row.tolist()]
    venues = ("Salle Bench", "Studio Bench")

    written = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, delimiter=";")
        writer.writerow(HEADER)
        chunk = 100_000
        for lo in range(0, rows, chunk):
            hi = min(rows, lo + chunk)
            batch = []
            for i in range(lo, hi):
                who = int(b[i])
                show = int(s[i])
                order = int(order_of_row[i])
                batch.append(
                    (
                        buyers.last[who],
                        buyers.first[who],
                        f"{civic[i]}, {_STREETS[street[i]]}",
                        buyers.postal[who],
                        buyers.email[who] or "",
                        f"514 555-{who % 10000:04d}",
                        amounts[i],
                        int(tickets[i]),
                        _CIRCUMSTANCES[circumstance[order]],
                        purchase_text[i],
                        show_date_text[i],
                        show_time_text[i],
                        show_title[show],
                        venues[show_venue[show]],
                        450 if show_venue[show] == 0 else 180,
                        _DISCIPLINES[show_disc[show]],
                        _CATEGORIES[category[order]],
                        _CHANNELS[channel[order]],
                        _YES_NO[int(newsletter[i])],
                        promo[i],
                        order_text[i],
                    )
                )
            writer.writerows(batch)
            written += len(batch)
    return {"rows": written, "orders": n_orders, "buyers": int(len(np.unique(b))), "bytes": path.stat().st_size}
