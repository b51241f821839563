"""The result of an import and the refusal of a whole file."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.importing.common import MAX_ERRORS

# --- the result ----------------------------------------------------------------------------------


@dataclass
class ImportResult:
    """What came of one import. ``rows = imported + duplicates + rejected + anonymous`` always holds.

    When the file is refused whole, nothing was written: ``imported``, ``duplicates`` and
    ``anonymous`` are 0 and every row counts as ``rejected``; ``invalid_rows`` says how many rows
    had errors themselves.
    """

    kind: str = "sales"
    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    rejected: int = 0
    anonymous: int = 0
    spectators_new: int = 0
    errors: list[dict] = field(default_factory=list)
    errors_total: int = 0
    invalid_rows: int = 0
    unknown_disciplines: list[str] = field(default_factory=list)
    rejects_file: str | None = None
    batch_id: int | None = None
    refused: bool = False
    filename: str = ""
    checksum: str = ""
    encoding: str | None = None
    delimiter: str | None = None
    format: str = "csv"  # or "workbook" (.xlsx, .xls, .ods)

    def add_error(self, line: int, column: str, reason: str) -> None:
        self.errors_total += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"line": line, "column": column, "reason": reason})

    def to_json(self) -> dict:
        return {
            "rows": self.rows,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "anonymous": self.anonymous,
            "spectators_new": self.spectators_new,
            "errors": list(self.errors),
            "errors_total": self.errors_total,
            "invalid_rows": self.invalid_rows,
            "unknown_disciplines": list(self.unknown_disciplines),
            "rejects_file": self.rejects_file,
            "batch_id": self.batch_id,
            "kind": self.kind,
            "refused": self.refused,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "format": self.format,
        }


class ImportRefused(Exception):
    """The file is refused whole; ``result`` lists why. The caller must roll back its session."""

    def __init__(self, result: ImportResult):
        super().__init__(f"import refused: {result.errors_total} error(s)")
        self.result = result
