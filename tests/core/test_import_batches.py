"""The two readers of an export (core.importing.batches) give the same records with the same line
numbers, and an import through either gives the same result, errors and rows, on messy files:
quoted delimiters, quotes and line breaks inside cells, blank lines and blank rows, CRLF and bare CR
line ends, rows too short or too long, trailing delimiters, a byte-order mark, a last line without
its line feed. pyarrow reads what it can vouch for; the csv module the rest, from the first block
of lines pyarrow cannot vouch for."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

import core.importing.common
from core.importing import ImportRefused, import_file, pipeline
from core.importing.batches import ColumnRecords, arrow_batches, csv_batches, line_start
from core.importing.opening import open_export
from core.importing.result import ImportResult
from core.models import Contact, Transaction
from tests.core.test_importing import FR_HEADER, FR_ROWS, SECRET


def _flat(batches) -> tuple[list[tuple[list[str], int]], object]:
    records, unreadable = [], None
    for batch, _position, problem in batches:
        records.extend((list(cells), line) for cells, line in batch)
        unreadable = problem or unreadable
    return records, unreadable


def _both(path) -> tuple[tuple, tuple, int]:
    """The records of ``path`` read by the csv module alone, and by pyarrow then the csv module;
    and how many of the latter's batches pyarrow read."""
    read = []
    for vector in (False, True):
        with open_export(path, "sales", ImportResult(kind="sales", filename="x"), {}) as export:
            if vector:
                offset = line_start(export.path, export.header_lines)
                assert offset is not None and export.plain
                batches = list(
                    arrow_batches(
                        export.path, offset, export.header_lines + 1, len(export.header.fields), export.delimiter
                    )
                )
                columnar = sum(isinstance(batch, ColumnRecords) for batch, _p, _u in batches)
                read.append(_flat(batches))
            else:
                read.append(_flat(csv_batches(export.reader, export.raw)))
    return read[0], read[1], columnar


def _write(path, text: str, bom: bool = False) -> None:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))


def _line(cells) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=";", lineterminator="\n").writerow(cells)
    return out.getvalue()


HEADER = ";".join(FR_HEADER) + "\n"
GOOD = _line(FR_ROWS[0])


# (file, batches of two records pyarrow reads before the first it cannot vouch for)
MESSY = [
    # quoted delimiters and doubled quotes, one record per line: pyarrow reads it all
    pytest.param(HEADER + GOOD + _line(["Côté; « fils »", 'Dit "Jo"', *FR_ROWS[1][2:]]) + GOOD, 2, id="quoted"),
    # Excel's "sep=" line and blank lines before the header
    pytest.param("sep=;\n\n" + HEADER + GOOD * 3, 2, id="sep-line"),
    # a line break inside a quoted cell, in the first batch
    pytest.param(HEADER + GOOD + _line(["Côté", "Luc\nJean", *FR_ROWS[1][2:]]) + GOOD + GOOD, 0, id="line-break"),
    # an empty line and a row of empty cells (skipped), a line of spaces, a last line without its line feed
    pytest.param(
        HEADER + GOOD + "\n" + ";" * (len(FR_HEADER) - 1) + "\n" + GOOD + "  \n" + GOOD.rstrip("\n"), 2, id="blank"
    ),
    # CRLF (fine), then a bare CR
    pytest.param((HEADER + GOOD + GOOD).replace("\n", "\r\n") + GOOD.rstrip("\n") + "\r" + GOOD, 1, id="cr"),
    # rows with trailing empty cells, too short, too long
    pytest.param(
        HEADER + GOOD + GOOD.rstrip("\n") + ";;\n" + "a;b;c\n" + GOOD.rstrip("\n") + ";x\n" + GOOD, 0, id="widths"
    ),
    # quotes inside cells and text after a closing quote (read alike), then a quote left open
    pytest.param(
        HEADER + GOOD + 'a"b;"c"d;' + ";".join(FR_ROWS[0][2:]) + "\n" + GOOD + 'x;"y\n' + GOOD, 1, id="quotes"
    ),
]


@pytest.mark.parametrize("text,first_batches", MESSY)
@pytest.mark.parametrize("bom", [False, True])
def test_both_readers_give_the_same_records_and_lines(tmp_path, monkeypatch, text, first_batches, bom):
    monkeypatch.setattr(core.importing.common, "BATCH_SIZE", 2)
    path = tmp_path / "export.csv"
    _write(path, text, bom)
    alone, mixed, columnar = _both(path)
    assert mixed == alone
    assert columnar == first_batches  # pyarrow read the plain batches before the first odd one


_cell = st.text(alphabet=list('ab é;,"\n\r\t '), max_size=6)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.lists(_cell, min_size=1, max_size=len(FR_HEADER) + 2), max_size=8),
    raw_tail=st.sampled_from(["", "\n", "\r\n", "\n\n", '"', "\r"]),
    batch=st.integers(1, 4),
)
def test_any_file_reads_the_same_both_ways(tmp_path, monkeypatch, rows, raw_tail, batch):
    monkeypatch.setattr(core.importing.common, "BATCH_SIZE", batch)
    path = tmp_path / "export.csv"
    body = "".join(_line([*cells, *FR_ROWS[0][len(cells) :]]) if len(cells) < 3 else _line(cells) for cells in rows)
    _write(path, HEADER + GOOD + body + raw_tail)
    alone, mixed, _columnar = _both(path)
    assert mixed == alone


def _import(session, org, path, vector: bool, monkeypatch):
    monkeypatch.setattr(pipeline, "VECTOR_READ", vector)
    try:
        result = import_file(
            session, path, org, secret=SECRET, skip_invalid=True, rejects_path=path.with_suffix(".rej")
        )
    except ImportRefused as exc:
        result = exc.result
    rejects = path.with_suffix(".rej").read_text("utf-8") if result.rejects_file else None
    rows = sorted(
        session.execute(
            select(Transaction.external_id, Transaction.amount_cents, Contact.email)
            .join(Contact, (Contact.spectator_id == Transaction.spectator_id) & (Contact.organisation_id == org.id))
            .where(Transaction.organisation_id == org.id)
        ).all()
    )
    summary = result.to_json()
    for volatile in ("batch_id", "rejects_file"):
        summary.pop(volatile, None)
    session.rollback()
    return summary, rows, rejects


def test_an_import_gives_the_same_result_both_ways(make_org, session, tmp_path, monkeypatch):
    monkeypatch.setattr(core.importing.common, "BATCH_SIZE", 3)
    org = make_org("deux-lecteurs")
    bad_amount = list(FR_ROWS[1])
    bad_amount[FR_HEADER.index("Valeur de l'achat")] = "douze"
    lines = [GOOD, _line(FR_ROWS[1]), _line(bad_amount), GOOD.rstrip("\n") + ";;\n", "\n", "a;b\n"]
    lines += [_line(["Côté", "Luc\nJean", *FR_ROWS[1][2:]]), _line(FR_ROWS[1])]
    path = tmp_path / "export.csv"
    _write(path, HEADER + "".join(lines), bom=True)
    alone = _import(session, org, path, False, monkeypatch)
    vector = _import(session, org, path, True, monkeypatch)
    assert vector == alone
    assert alone[0]["errors_total"] >= 2 and alone[1]  # the file has good rows and bad ones
