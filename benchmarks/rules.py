"""The five standard rules of the benchmark: as the application's rule JSON and as DuckDB SQL on raw transactions.

Both forms say the same thing under the definitions of DESIGN.md §7 (``segments.rules.evaluate``):
only purchases dated on or before ``as_of`` count; ``within_days`` D keeps the purchases dated
after ``as_of − D``; the spectators a rule can select are those who bought something on or before
``as_of``. The DuckDB side reads the raw tables loaded by :mod:`benchmarks.duck`:
``tx`` (transactions), ``shows``, ``spectators`` and ``orgs``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# The two organisations of the geography rule (slugs of core.demo's district).
GEOGRAPHY_BOUGHT = "theatre-du-faubourg"
GEOGRAPHY_NEVER = "theatre-marquette"


@dataclass(frozen=True)
class BenchRule:
    name: str
    description: str
    rule: dict


RULES: tuple[BenchRule, ...] = (
    BenchRule(
        "cross_sell",
        "theatre in the last year, never dance",
        {
            "all": [
                {"field": "discipline", "op": "any", "value": ["theatre"], "within_days": 365},
                {"field": "discipline", "op": "none", "value": ["dance"]},
            ]
        },
    ),
    BenchRule(
        "lapsed",
        "last purchase 18 to 36 months ago, three or more shows",
        {
            "all": [
                {"field": "days_since_last", "op": "between", "value": [548, 1096]},
                {"field": "shows", "op": ">=", "value": 3},
            ]
        },
    ),
    BenchRule(
        "upsell",
        "single tickets only, three or more shows in 18 months, no subscription",
        {
            "all": [
                {"field": "shows", "op": ">=", "value": 3, "within_days": 548},
                {"field": "subscriber", "op": "is", "value": False},
            ]
        },
    ),
    BenchRule(
        "geography",
        f"FSA starting with H2, bought at {GEOGRAPHY_BOUGHT}, never at {GEOGRAPHY_NEVER}",
        {
            "all": [
                {"field": "fsa", "op": "starts_with", "value": ["H2"]},
                {"field": "organisation", "op": "any", "value": [GEOGRAPHY_BOUGHT]},
                {"field": "organisation", "op": "none", "value": [GEOGRAPHY_NEVER]},
            ]
        },
    ),
    BenchRule(
        "value",
        "spent $500 or more in 24 months, at least half of the orders on promotion",
        {
            "all": [
                {"field": "spent", "op": ">=", "value": 500, "within_days": 730},
                {"field": "promo_share", "op": ">=", "value": 0.5},
            ]
        },
    ),
)

RULE_NAMES = tuple(r.name for r in RULES)


def _midnight(day: dt.date) -> str:
    return f"TIMESTAMP '{day.isoformat()} 00:00:00'"


def window_low(as_of: dt.date, days: int) -> str:
    """Start of "the D days ending with as_of" (purchase date > as_of − D): midnight of as_of − D + 1."""
    return _midnight(as_of - dt.timedelta(days=days - 1))


def duckdb_sql(name: str, as_of: dt.date, org_ids: dict[str, int]) -> str:
    """The SELECT of the member ids (``spectator_id``) of rule ``name`` on ``as_of``, over the raw
    tables. Values are the benchmark's own constants (no user text reaches this SQL)."""
    high = _midnight(as_of + dt.timedelta(days=1))
    upto = f"SELECT * FROM tx WHERE purchased_at < {high}"
    if name == "cross_sell":
        return (
            f"SELECT u.spectator_id FROM ({upto}) u LEFT JOIN shows s ON s.id = u.show_id "
            f"GROUP BY u.spectator_id "
            f"HAVING count(*) FILTER (WHERE s.discipline = 'theatre' AND u.purchased_at >= {window_low(as_of, 365)}) > 0 "
            f"AND count(*) FILTER (WHERE s.discipline = 'dance') = 0"
        )
    if name == "lapsed":
        return (
            f"SELECT spectator_id FROM ({upto}) u GROUP BY spectator_id "
            f"HAVING date_diff('day', CAST(max(purchased_at) AS DATE), DATE '{as_of.isoformat()}') "
            f"BETWEEN 548 AND 1096 AND count(DISTINCT show_id) >= 3"
        )
    if name == "upsell":
        return (
            f"SELECT spectator_id FROM ({upto}) u GROUP BY spectator_id "
            f"HAVING count(DISTINCT show_id) FILTER (WHERE purchased_at >= {window_low(as_of, 548)}) >= 3 "
            f"AND count(*) FILTER (WHERE category = 'subscription') = 0"
        )
    if name == "geography":
        bought, never = org_ids[GEOGRAPHY_BOUGHT], org_ids[GEOGRAPHY_NEVER]
        return (
            f"SELECT u.spectator_id FROM ({upto}) u JOIN spectators sp ON sp.id = u.spectator_id "
            f"WHERE sp.fsa LIKE 'H2%' GROUP BY u.spectator_id "
            f"HAVING count(*) FILTER (WHERE u.organisation_id = {int(bought)}) > 0 "
            f"AND count(*) FILTER (WHERE u.organisation_id = {int(never)}) = 0"
        )
    if name == "value":
        # An order: (organisation, order id) when the export gave one, else the row itself (§7).
        order = "CASE WHEN order_id IS NULL THEN 't' || id ELSE organisation_id || ':' || order_id END"
        return (
            f"SELECT spectator_id FROM ({upto}) u GROUP BY spectator_id "
            f"HAVING coalesce(sum(amount_cents) FILTER (WHERE purchased_at >= {window_low(as_of, 730)}), 0) >= 50000 "
            f"AND 2 * count(DISTINCT CASE WHEN circumstance = 'promotion' THEN {order} END) "
            f">= count(DISTINCT {order})"
        )
    raise KeyError(name)


def duckdb_counts_sql(as_of: dt.date) -> str:
    """Members per organisation they bought from up to ``as_of`` (members in the table ``m``)."""
    high = _midnight(as_of + dt.timedelta(days=1))
    return (
        f"SELECT organisation_id, count(DISTINCT spectator_id) FROM tx "
        f"WHERE purchased_at < {high} AND spectator_id IN (SELECT spectator_id FROM m) GROUP BY organisation_id"
    )
