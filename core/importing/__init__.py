"""Importing ticketing exports (sales and unsubscribes), DESIGN.md §6: one pipeline of named stages.

``reading`` (encoding, delimiter, refused rows, progress) → ``columns`` (headers to fields) →
``validate`` (batches of columns, each error with its line and column; ``values`` reads one value)
→ ``write`` (identities resolved in sets, rows loaded through ``core.sql``), driven by
``pipeline.import_file`` for the web page, the command line and the inbox alike.
"""

from core.importing.common import BATCH_SIZE, KINDS
from core.importing.pipeline import import_file, record_refused_import
from core.importing.reading import rejects_encoding
from core.importing.result import ImportRefused, ImportResult
from core.importing.validate import email_problem, postal_code_problem, show_natural_key
from core.importing.values import (
    category_key,
    channel_key,
    circumstance_key,
    discipline_key,
    is_yes,
    parse_amount,
    parse_datetime,
    parse_duration,
    parse_time,
    plus_two_years,
)

__all__ = [
    "BATCH_SIZE",
    "KINDS",
    "ImportRefused",
    "ImportResult",
    "category_key",
    "channel_key",
    "circumstance_key",
    "discipline_key",
    "email_problem",
    "import_file",
    "is_yes",
    "parse_amount",
    "parse_datetime",
    "parse_duration",
    "parse_time",
    "plus_two_years",
    "postal_code_problem",
    "record_refused_import",
    "rejects_encoding",
    "show_natural_key",
]
