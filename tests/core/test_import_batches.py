"""The two readers of an export (core.importing.batches) give the same records with the same line
numbers, and an import through either gives the same result, errors and rows, on messy files:
quoted delimiters, quotes and line breaks inside cells, blank lines and blank rows, CRLF and bare CR
line ends, rows too short or too long, trailing delimiters, a byte-order mark, a last line without
its line feed. pyarrow reads what it can vouch for; the csv module the rest, from the first block
of lines pyarrow cannot vouch for. A large export is read in a process of its own
(core.importing.ahead): the same result again."""

from __future__ import annotations

import csv
import datetime as dt
import io
import multiprocessing
import os
import signal
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

import core.importing.common
from core.importing import ImportRefused, ahead, import_file, pipeline
from core.importing.batches import ColumnRecords, arrow_batches, csv_batches, line_start
from core.importing.columns import _Header
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


def _import(session, org, path, vector: bool, monkeypatch, ahead_bytes: int = ahead.AHEAD_BYTES):
    monkeypatch.setattr(pipeline, "VECTOR_READ", vector)
    monkeypatch.setattr(ahead, "AHEAD_BYTES", ahead_bytes)
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


def test_an_import_read_ahead_in_a_child_process_gives_the_same_result(make_org, session, tmp_path, monkeypatch):
    """A file read and vouched for by core.importing.ahead's child (every file, here) gives the same
    rows, errors, rejects and unknown disciplines as one read in the writer's process; the child has
    the whole file past its first odd line read by the csv module, and its end unreadable."""
    monkeypatch.setattr(core.importing.common, "BATCH_SIZE", 3)
    org = make_org("lecture-devant")
    bad_amount = list(FR_ROWS[1])
    bad_amount[FR_HEADER.index("Valeur de l'achat")] = "douze"
    odd_discipline = list(FR_ROWS[0])
    odd_discipline[FR_HEADER.index("Type de spectacle")] = "Art lyrique baroque"
    lines = [GOOD, _line(FR_ROWS[1]), _line(bad_amount), _line(odd_discipline), "\n", "a;b\n", GOOD, GOOD]
    lines += [_line(["Côté", "Luc\nJean", *FR_ROWS[1][2:]]), _line(FR_ROWS[1])]
    started = []
    real_start = ahead.start
    monkeypatch.setattr(ahead, "start", lambda plan: started.append(real_start(plan)) or started[-1])
    for name, tail in (("messy.csv", ""), ("unreadable.csv", '"')):
        path = tmp_path / name
        _write(path, HEADER + "".join(lines) + tail, bom=True)
        alone = _import(session, org, path, False, monkeypatch)
        read_ahead = _import(session, org, path, True, monkeypatch, ahead_bytes=0)
        assert read_ahead == alone
        assert len(started) == 1 and started.pop() is not None  # a reading process did read it
        assert alone[0]["errors_total"] >= 2 and alone[1]
        assert alone[0]["unknown_disciplines"] == ["Art lyrique baroque"]
    assert not multiprocessing.active_children()


def _plan(path, **changes) -> ahead.Plan:
    values = dict(
        path=str(path),
        offset=0,
        first_line=2,
        delimiter=";",
        header=_Header(fields=FR_HEADER, index={}, language="fr", line=1),
        organisation_id=1,
        secret=SECRET,
        latest=dt.datetime(2100, 1, 1),
        batch_size=2,
    )
    return ahead.Plan(**{**values, **changes})


def test_a_failing_reader_process_is_an_error_of_the_import(tmp_path):
    """The child's own error reaches the writer as an exception carrying its traceback (not a hang,
    not a silent end of the file)."""
    reader = ahead.start(_plan(tmp_path / "gone.csv"))
    try:
        with pytest.raises(ahead.ChildFailed, match="FileNotFoundError"):
            list(reader)
    finally:
        reader.close()
    assert not multiprocessing.active_children()


def test_a_reader_process_killed_midway_is_an_error_not_a_hang(tmp_path):
    """A child that dies without a word (killed, out of memory), perhaps halfway through sending a
    batch, ends the writer's wait with ChildFailed: its write end was the pipe's last."""
    path = tmp_path / "long.csv"
    path.write_text("".join(_line(FR_ROWS[0]) for _ in range(20_000)), encoding="utf-8")
    reader = ahead.start(_plan(path, batch_size=5_000))
    batches = iter(reader)
    next(batches)
    os.kill(reader.child.pid, signal.SIGKILL)
    outcome: list = []

    def drain():
        try:
            for _batch in batches:
                pass
            outcome.append("ended")
        except ahead.ChildFailed as failure:
            outcome.append(failure)

    waiting = threading.Thread(target=drain, daemon=True)
    waiting.start()
    waiting.join(timeout=60)
    assert not waiting.is_alive(), "the writer still waits for a dead reader"
    assert isinstance(outcome[0], ahead.ChildFailed) and "-9" in str(outcome[0])
    reader.close()
    assert not multiprocessing.active_children()


def test_a_writer_that_stops_early_stops_the_reader_process(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("".join(_line(FR_ROWS[0]) for _ in range(200)), encoding="utf-8")
    reader = ahead.start(_plan(path))
    count, _suspects, vouched, _position, unreadable = next(iter(reader))
    assert count == 2 and unreadable is None and vouched is not None
    assert reader.child.is_alive()  # blocked on the full pipe, a batch ahead
    reader.close()  # as when the writer fails
    assert not multiprocessing.active_children()


def test_a_reader_process_whose_writer_is_gone_ends(tmp_path):
    """The writer's end closed without a word (its process killed): the child's next send breaks and
    it ends by itself, rather than holding its memory and the file for ever."""
    path = tmp_path / "long.csv"
    path.write_text("".join(_line(FR_ROWS[0]) for _ in range(2_000)), encoding="utf-8")  # more than a pipe holds
    reader = ahead.start(_plan(path))
    next(iter(reader))
    reader.connection.close()  # what the writer's death does to its end of the pipe
    reader.child.join(timeout=60)
    assert reader.child.exitcode == 0


def test_a_host_without_processes_reads_in_the_writers_process(make_org, session, tmp_path, monkeypatch):
    """Where no child process can be started, a large file is read as a small one is, to the same result."""
    monkeypatch.setattr(core.importing.common, "BATCH_SIZE", 3)
    org = make_org("sans-processus")
    path = tmp_path / "export.csv"
    _write(path, HEADER + GOOD + _line(FR_ROWS[1]) + GOOD, bom=True)
    alone = _import(session, org, path, False, monkeypatch)

    class NoProcesses:
        def __init__(self, *args, **kwargs):
            raise OSError("no process may be created here")

    monkeypatch.setattr(multiprocessing.get_context("spawn"), "Process", NoProcesses)
    assert ahead.start(_plan(path)) is None
    assert _import(session, org, path, True, monkeypatch, ahead_bytes=0) == alone


def test_read_ahead_switched_off_reads_in_the_writers_process(app, make_org, session, tmp_path, monkeypatch):
    """``PILOT_IMPORT_READ_AHEAD=off`` (IMPORT_READ_AHEAD): no reading process is even tried."""
    monkeypatch.setattr(core.importing.common, "BATCH_SIZE", 3)
    org = make_org("sans-lecture-devant")
    path = tmp_path / "export.csv"
    _write(path, HEADER + GOOD + _line(FR_ROWS[1]) + GOOD, bom=True)
    alone = _import(session, org, path, False, monkeypatch)

    class Tried(BaseException):
        pass

    def refuse(*args, **kwargs):
        raise Tried

    monkeypatch.setattr(multiprocessing.get_context("spawn"), "Process", refuse)
    monkeypatch.setitem(app.config, "IMPORT_READ_AHEAD", True)
    with app.app_context(), pytest.raises(Tried):  # on: a process is asked for
        _import(session, org, path, True, monkeypatch, ahead_bytes=0)
    session.rollback()
    monkeypatch.setitem(app.config, "IMPORT_READ_AHEAD", False)
    with app.app_context():  # as on the command line, in a page or a job
        assert _import(session, org, path, True, monkeypatch, ahead_bytes=0) == alone
