"""Reading a spreadsheet workbook (.xlsx, .xls, .ods) with python-calamine: its first sheet as CSV."""

from __future__ import annotations

import csv
import datetime as dt
import os
import tempfile
from pathlib import Path


class WorkbookError(Exception):
    """The workbook cannot be read (damaged, protected by a password, or no sheet with data)."""


def cell_text(value) -> str:
    """One cell as the importer reads text: dates ``2024-03-15`` (``2024-03-15 19:30`` with a time),
    times ``19:30``, whole numbers without ``.0`` (a phone, a count), other numbers as written
    (``12.5``), durations in minutes, booleans ``1``/``0``, line breaks as spaces."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dt.datetime):
        if value.time() == dt.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="minutes" if not value.second else "seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat(timespec="minutes" if not value.second else "seconds")
    if isinstance(value, dt.timedelta):
        return str(int(value.total_seconds() // 60))
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return " ".join(str(value).splitlines()).replace("\x00", "")


def _first_sheet_with_data(workbook):
    """The first visible worksheet that holds a cell; None when the workbook is empty."""
    for meta in workbook.sheets_metadata:
        if str(getattr(meta, "visible", "")).lower().endswith("hidden"):
            continue
        sheet = workbook.get_sheet_by_name(meta.name)
        rows = sheet.to_python(skip_empty_area=False)
        if any(any(cell not in (None, "") for cell in row) for row in rows):
            return rows
    return None


def workbook_to_csv(path: Path) -> Path:
    """Write the first sheet with data of the workbook at ``path`` to a temporary UTF-8 CSV (comma,
    one line per row: line N of the CSV is row N of the sheet, so that errors name the row Excel
    shows) and return its path; the caller deletes it.

    :raises WorkbookError: the workbook cannot be read or holds no data.
    """
    from python_calamine import CalamineError, load_workbook

    try:
        workbook = load_workbook(str(path))
        rows = _first_sheet_with_data(workbook)
    except (CalamineError, ValueError, OSError) as exc:
        raise WorkbookError(str(exc) or type(exc).__name__) from exc
    except Exception as exc:  # calamine's own errors (a zip or XML error, a password)
        raise WorkbookError(str(exc) or type(exc).__name__) from exc
    if rows is None:
        raise WorkbookError("no sheet holds any data")
    fd, name = tempfile.mkstemp(suffix=".csv", prefix="workbook-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, lineterminator="\n")
            for row in rows:
                cells = [cell_text(cell) for cell in row]
                writer.writerow(cells if any(cells) else [])  # an empty row stays a line
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)
