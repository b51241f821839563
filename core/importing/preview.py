"""A preview of an export before anything is written: its columns and its first rows as they will be read."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

from core.identity import normalise_email, normalise_postal_code
from core.importing.columns import canonical_header
from core.importing.mapping import columns_of, is_known, unmapped_headers
from core.importing.opening import open_export
from core.importing.result import ImportResult
from core.importing.validate import ANONYMOUS, _SalesParser, _UnsubscribeParser
from core.importing.values import (
    category_key,
    channel_key,
    circumstance_key,
    discipline_key,
    is_yes,
    parse_amount,
    parse_datetime,
    parse_time,
)
from core.models import utcnow

PREVIEW_ROWS = 10
SAMPLES = 3  # values shown beside each column of the mapping screen


@dataclass
class PreviewColumn:
    """One column of the file: its header, the field it feeds (None: not read) and how that was decided."""

    position: int
    label: str
    field: str | None
    how: str  # "known" (the format's own name), "saved" (the organisation's mapping),
    # "ignored" (mapped to nothing) or "unknown" (never mapped yet)
    samples: list[str] = dataclass_field(default_factory=list)


@dataclass
class PreviewRow:
    """One data row: its line, each field's value as it will be read, and its problems."""

    line: int
    values: dict[str, object]
    problems: list[tuple[str, str]]
    anonymous: bool = False


@dataclass
class Preview:
    """What :func:`preview_file` found: the file's reading, its columns, the first rows."""

    result: ImportResult  # encoding, delimiter, format, header errors
    columns: list[PreviewColumn]
    unknown: list[str]  # headers never mapped, in file order
    missing: list[str]  # required fields without a column
    rows: list[PreviewRow]
    more: bool  # rows beyond those shown

    @property
    def fields(self) -> list[str]:
        """The fields the file feeds, in the format's order."""
        present = {c.field for c in self.columns if c.field}
        return [name for name in self.result_columns if name in present]

    @property
    def result_columns(self) -> list[str]:
        return list(columns_of(self.result.kind))


def _value(name: str, text: str, show_time: str = ""):
    """One cell as the importer will read it; the raw text when it cannot be read (the row's
    problems say why)."""
    if not text:
        return None
    if name == "amount":
        cents = parse_amount(text)
        return cents if cents is not None else text
    if name in ("purchased_at", "show_date", "date"):
        parsed = parse_datetime(text)
        if parsed is None:
            return text
        moment, has_time = parsed
        if name == "show_date" and not has_time and show_time:
            clock = parse_time(show_time)
            if clock is not None:
                return dt.datetime.combine(moment.date(), clock)
        return moment if has_time else moment.date()
    if name == "postal_code":
        return normalise_postal_code(text)
    if name == "email":
        return normalise_email(text) or text
    if name == "discipline":
        return discipline_key(text)[0]
    if name == "circumstance":
        return circumstance_key(text)
    if name == "category":
        return category_key(text)
    if name == "channel":
        return channel_key(text) or text
    if name == "newsletter":
        return is_yes(text)
    return " ".join(text.split())


def preview_file(
    path: Path, organisation_id: int, kind: str, mapping: dict[str, str], secret: str, rows: int = PREVIEW_ROWS
) -> Preview:
    """Read the header and the first ``rows`` rows of the export at ``path`` as :func:`import_file`
    would with ``mapping``, writing nothing.

    :raises ImportRefused: the file cannot be read at all (empty, not CSV, a damaged workbook).
    """
    result = ImportResult(kind=kind, filename=path.name)
    with open_export(path, kind, result, mapping) as export:
        header = export.header
        by_position = {position: name for name, position in header.index.items()}
        columns = []
        for position, cell in enumerate(export.header_cells):
            canon = canonical_header(cell)
            name = by_position.get(position)
            if not canon:
                continue
            if is_known(cell, kind):
                how = "known"
            elif canon in mapping:
                how = "saved" if mapping[canon] else "ignored"
            else:
                how = "unknown"
            columns.append(PreviewColumn(position, cell.strip(), name, how))
        if kind == "sales":
            parser: object = _SalesParser(header, organisation_id, secret, result)
        else:
            parser = _UnsubscribeParser(header, secret, utcnow())
        shown: list[PreviewRow] = []
        more = False
        previous = export.reader.line_num  # type: ignore[attr-defined]
        for cells in export.reader:  # type: ignore[attr-defined]
            line, previous = previous + 1, export.reader.line_num  # type: ignore[attr-defined]
            if not "".join(cells).strip():
                continue
            if len(shown) == rows:
                more = True
                break
            for column in columns:
                if len(column.samples) < SAMPLES and column.position < len(cells) and cells[column.position].strip():
                    column.samples.append(cells[column.position].strip()[:60])
            # A file without a required column is refused whole: its rows are shown, not checked.
            parsed = [] if export.missing else parser.parse(list(cells), line)  # type: ignore[attr-defined]
            get = {
                name: (cells[position].strip() if position < len(cells) else "")
                for name, position in header.index.items()
            }
            values = {name: _value(name, text, get.get("show_time", "")) for name, text in get.items()}
            shown.append(
                PreviewRow(line, values, parsed if isinstance(parsed, list) else [], anonymous=parsed is ANONYMOUS)
            )
    return Preview(
        result=result,
        columns=columns,
        unknown=unmapped_headers(export.header_cells, kind, mapping),
        missing=list(export.missing),
        rows=shown,
        more=more,
    )
