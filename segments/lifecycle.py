"""The spectator life cycle of DESIGN.md §7, defined once: its windows, stages and thresholds.

Standard library only, like the rule evaluator that reads it; ``segments.profiles.lifecycle_case``
writes the same thresholds as SQL."""

from __future__ import annotations

import datetime as dt

# The windows every rule and page reads, in days ending with ``as_of`` (purchase date > as_of − D
# and ≤ as_of): a year, the life cycle's 18 months, two years, and the three years after which a
# spectator is lapsed.
YEAR_DAYS = 365
LIFECYCLE_DAYS = 548
TWO_YEARS_DAYS = 730
LAPSE_DAYS = 1096

STAGES = ("new", "once_before", "convertee", "active", "super_active", "stale", "lapsed")
# Distinct known shows in the 548 days → stage, highest first; 1 show is new (or once_before with
# earlier history) and 0 shows is stale or lapsed.
SHOW_THRESHOLDS = ((11, "super_active"), (4, "active"), (3, "convertee"), (2, "once_before"))


def window_start(as_of: dt.date, days: int) -> dt.datetime:
    """The first instant of "the ``days`` days ending with ``as_of``"."""
    return dt.datetime.combine(as_of - dt.timedelta(days=days - 1), dt.time())


def lifecycle_stage(shows_548: int, purchase_before_548: bool, purchase_in_1096: bool) -> str:
    """The life-cycle stage of §7 (after TRG Arts' tiers), the reference for :func:`lifecycle_case`.

    ``shows_548``: distinct known shows bought in the 548 days ending with as_of (a purchase whose
    show is unknown names no performance, so it counts for no show); ``purchase_before_548``: any
    purchase dated ≤ as_of − 548; ``purchase_in_1096``: any purchase dated > as_of − 1096 and ≤ as_of.

    Thresholds on ``shows_548``: 0 → ``stale`` if ``purchase_in_1096`` else ``lapsed``;
    1 → ``new``, or ``once_before`` with an earlier purchase; 2 → ``once_before``;
    3 → ``convertee``; 4 to 10 → ``active``; 11 and more → ``super_active``.
    """
    if shows_548 < 0:
        raise ValueError("shows_548 cannot be negative")
    for least, stage in SHOW_THRESHOLDS:
        if shows_548 >= least:
            return stage
    if shows_548 == 1:
        return "once_before" if purchase_before_548 else "new"
    return "stale" if purchase_in_1096 else "lapsed"
