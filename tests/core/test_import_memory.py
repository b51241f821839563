"""The importer's memory does not grow with the file (DESIGN.md §6 and §12: constant memory, flat in
file size): what it must remember across batches lives in the database or in bounded structures.

Measured with tracemalloc (the Python objects the import allocates), never with timings: the peak of
an import four times as long, with four times as many buyers, performances and purchase moments,
stays within a small factor of the shorter one's. Both are several batches long and fill the
importer's bounded caches and memos: what it holds at once is reached within the short file, and the
question is whether it grows after that.
"""

from __future__ import annotations

import csv
import datetime as dt
import tracemalloc
from pathlib import Path

from sqlalchemy import func, select

import core.importing.common
import core.importing.write
from core.importing import ahead, import_file
from core.models import Transaction

SECRET = "test-district-secret"
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
    "Type de spectacle",
    "Catégorie d'achat",
    "Canal d'achat",
    "Abonné à l'infolettre",
    "Numéro de commande",
]


# Rows per batch here: four batches in the short file, sixteen in the long one. At 5,000 the short
# file's buyers did not fill the importer's bounded memos (8,192 known spectators and contacts then,
# core.importing.write._Memo) while the long one's did: a bounded rise (1.26x on PostgreSQL after
# other tests in the same process) that looked like growth. At 10,000 both files fill them.
# The sales writer also keeps contacts and consents in memory for up to
# core.importing.write.STAGE_KEEP spectators (65,536) before staging them: bounded, but more buyers
# than the short file has, so the test lowers that bound to 8,192 for both files to fill it.
BATCH = 10_000
STAGE_KEEP = 8_192


def write_export(path: Path, rows: int, tag: str) -> tuple[Path, int]:
    """``rows`` order lines, each batch alike: a quarter batch's worth of buyers of its own (three or
    four lines each), and one line in five by a loyal buyer met again in every batch (whose address
    changes from line to line); distinct purchase moments, a performance per 50 lines. Returns the
    file and its number of distinct buyers."""
    quarter = BATCH // 4
    start = dt.datetime(2024, 1, 1, 8, 0)
    buyers = set()
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, delimiter=";")
        writer.writerow(HEADER)
        for i in range(rows):
            spread = (i * 7919) % quarter
            b = spread if i % 5 == 0 else (i // BATCH + 1) * quarter + spread
            buyers.add(b)
            moment = start + dt.timedelta(minutes=7 * i)
            show = moment + dt.timedelta(days=3)
            writer.writerow(
                [
                    f"Nom{b}",
                    f"Prénom{b}",
                    f"{i % 9000 + 1} rue Saint-Denis",
                    f"H2X {b % 10}A{b % 7}",
                    f"acheteur.{tag}{b}@exemple.ca",
                    "",
                    f"{20 + i % 60},50 $",
                    str(1 + i % 4),
                    ["Plein tarif", "Promotion", "Courtoisie"][i % 3],
                    moment.strftime("%Y-%m-%d %H:%M"),
                    show.strftime("%d/%m/%Y"),
                    "20:00",
                    f"Spectacle {i // 50}",
                    ["Salle A", "Salle B"][i % 2],
                    ["Théâtre", "Danse", "Musique"][i % 3],
                    "Abonnement" if i % 20 == 0 else "Achat unique",
                    ["Internet", "Guichet", "Téléphone"][i % 3],
                    "Oui" if i % 3 == 0 else "Non",
                    f"C{tag}{i}",
                ]
            )
    return path, len(buyers)


def peak_of_import(session, path: Path, org) -> tuple[int, object]:
    """The peak of the Python memory allocated while importing ``path`` (flushed; the caller rolls back)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = import_file(session, path, org, secret=SECRET)
        session.flush()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak, result


def test_peak_memory_does_not_grow_with_the_number_of_rows(make_org, session, tmp_path, monkeypatch):
    monkeypatch.setattr(core.importing.common, "BATCH_SIZE", BATCH)
    monkeypatch.setattr(core.importing.write, "STAGE_KEEP", STAGE_KEEP)
    # Both files read in this process, where tracemalloc sees the parser too (a large file is read in
    # a child, core.importing.ahead, whose peak the bench's memory probe adds to this process's).
    monkeypatch.setattr(ahead, "AHEAD_BYTES", 1 << 40)
    short_rows, long_rows = 4 * BATCH, 16 * BATCH
    short, short_buyers = write_export(tmp_path / "short.csv", short_rows, "s")
    long, long_buyers = write_export(tmp_path / "long.csv", long_rows, "l")
    assert long_buyers > 3 * short_buyers
    org = make_org("memoire")

    short_peak, result = peak_of_import(session, short, org)
    assert (result.rows, result.imported, result.spectators_new) == (short_rows, short_rows, short_buyers)
    session.rollback()
    long_peak, result = peak_of_import(session, long, org)
    assert (result.rows, result.imported, result.spectators_new) == (long_rows, long_rows, long_buyers)
    assert session.scalar(select(func.count()).select_from(Transaction)) == long_rows
    session.rollback()

    # Four times the rows, buyers and moments, each batch alike: the peak may not follow. Memory that
    # grew with the file (a set of every key seen, a map of every buyer, the caches of every distinct
    # value) would put the long file's peak well above the short one's.
    assert long_peak < 1.25 * short_peak, (short_peak, long_peak)
