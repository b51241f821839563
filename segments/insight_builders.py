"""The insight tables of a scope, built from its raw facts with suppression at each request."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l

from core.models import DISCIPLINES
from core.privacy import is_small
from core.vocabulary import DISCIPLINE_LABELS
from segments.insight_tables import (
    CATEGORY_KEYS,
    CATEGORY_LABELS,
    CHANNEL_KEYS,
    CHANNEL_LABELS,
    CIRCUMSTANCE_KEYS,
    CIRCUMSTANCE_LABELS,
    FREQUENCY_BUCKETS,
    LEAD_BUCKETS,
    LEAD_LABELS,
    LIFECYCLE_STAGES,
    PARTY_BUCKETS,
    REGION_LABELS,
    REGIONS,
    STAGE_LABELS,
    TOP_FSAS,
    WEEK,
    Column,
    InsightTable,
    Scope,
    day_label,
    matrix_with_margins,
    month_label,
    one_way,
    range_label,
    region_of,
)

# The tables of a page, in the order of the questions.
TABLES = (
    "lifecycle",
    "frequency",
    "party_size",
    "regions",
    "fsas",
    "lead_time",
    "day_hour",
    "seasonality",
    "disciplines",
    "crossover",
    "channels",
    "categories",
    "circumstances",
)


class InsightTables:
    """The insight tables of one scope, each built from the scope's raw facts (``facts``) with
    suppression at ``k`` (``k_district`` for the tables that read every organisation).

    A missing fact is computed by the subclass's ``_compute_<name>``, which stores it in ``facts``
    (``segments.insights.InsightQuery``, from the transactions).
    """

    scope: Scope
    k: int
    k_district: int
    facts: dict[str, Any]

    def _fact(self, name: str) -> Any:
        if name not in self.facts:
            getattr(self, f"_compute_{name}")()
        return self.facts[name]

    def population(self) -> int:
        """Distinct spectators with a purchase in the scope up to ``as_of``."""
        return self._fact("spectators")["population"]

    # -- who --

    def lifecycle(self) -> InsightTable:
        stages = self._fact("spectators")["stages"]
        items: list[tuple] = [(s, STAGE_LABELS[s], stages[s], {}) for s in LIFECYCLE_STAGES]
        return one_way(
            "lifecycle",
            "who",
            _l("Life-cycle stage"),
            Column("label", _l("Stage"), "label"),
            items,
            self.population(),
            self.k,
            unit=_l("spectators"),
            note=_l(
                "Distinct performances bought in the 18 months up to today: new = 1 and nothing "
                "earlier, once before = 2 (or 1 with earlier purchases), convertee = 3, active = 4 to "
                "10, super active = 11 or more; stale = nothing in 18 months but something in 36; "
                "lapsed = nothing in 36 months. Purchases in this scope only."
            ),
        )

    def frequency(self) -> InsightTable:
        counts = self._fact("spectators")["frequency"]
        items: list[tuple] = [
            (i, range_label(low, high), counts[i], {}) for i, (low, high) in enumerate(FREQUENCY_BUCKETS)
        ]
        return one_way(
            "frequency",
            "who",
            _l("Frequency: purchases per spectator"),
            Column("label", _l("Purchases"), "label"),
            items,
            self.population(),
            self.k,
            chart="vbar",
            unit=_l("spectators"),
            note=_l("All purchases on record in this scope; a purchase is tickets for one performance."),
        )

    def _sum_by(self, position: int, size: int) -> tuple[list[int], list[int], list[int]]:
        """Purchases, tickets and cents per value of one column of the sums (an index 0..size-1)."""
        purchases, tickets, cents = [0] * size, [0] * size, [0] * size
        for row in self._fact("sums"):
            i = row[position]
            if 0 <= i < size:
                purchases[i] += row[6]
                tickets[i] += row[7]
                cents[i] += row[8]
        return purchases, tickets, cents

    def party_size(self) -> InsightTable:
        people = self._fact("spectators")["bits"]["party"]
        purchases, _tickets, _cents = self._sum_by(3, len(PARTY_BUCKETS))
        items = [
            (i, range_label(low, high), people[i], {"purchases": purchases[i]})
            for i, (low, high) in enumerate(PARTY_BUCKETS)
        ]
        return self._bars(
            "party_size",
            "who",
            _l("Party size: tickets per purchase"),
            _l("Tickets"),
            items,
            "purchases",
            _l("purchases"),
            _l(
                "A purchase is one line of an order: tickets for one performance. Spectators: those "
                "who made at least one such purchase."
            ),
        )

    def _bars(self, key: str, question: str, title, label, items: list[tuple], measure: str, unit, note):
        """Buckets in their order as vertical bars of ``measure`` (purchases or tickets, with its
        share): per bucket the spectators who bought so (one may count in several) and their ``measure``."""
        return one_way(
            key,
            question,
            title,
            Column("label", label, "label"),
            items,
            self.population(),
            self.k,
            measures=[measure],
            share_of=measure,
            overlapping=True,
            chart="vbar",
            measure=measure,
            unit=unit,
            note=note,
        )

    # -- where --

    def _fsa_counts(self) -> dict:
        counts: dict = {}
        for fsa, n in self._fact("fsa"):
            counts[fsa] = counts.get(fsa, 0) + n
        return counts

    def regions(self) -> InsightTable:
        counts = dict.fromkeys(REGIONS, 0)
        for fsa, n in self._fsa_counts().items():
            counts[region_of(fsa)] += n
        items: list[tuple] = [(r, REGION_LABELS[r], counts[r], {}) for r in REGIONS]
        table = one_way(
            "regions",
            "where",
            _l("Regions"),
            Column("label", _l("Region"), "label"),
            items,
            self.population(),
            self.k,
            unit=_l("spectators"),
            note=_l("From the first three characters of the postal code (FSA); Laval is H7."),
        )
        # The share from outside the island, among spectators whose region is known: only from
        # figures that are shown, so it reveals nothing the table does not.
        by_key = dict(zip(table.row_keys, table.rows))
        at = table.index("spectators")
        assert table.total is not None  # one_way always gives a total row, its figures maybe hidden
        island, unknown, total = by_key["island"][at], by_key["unknown"][at], table.total[at]
        known = None if total is None or unknown is None else total - unknown
        table.summary["outside_share"] = None if island is None or not known else (known - island) / known
        return table

    def fsas(self) -> InsightTable:
        counts = self._fsa_counts()
        unknown = counts.pop(None, 0)
        ranked = sorted(((n, fsa) for fsa, n in counts.items() if n >= self.k), key=lambda t: (-t[0], t[1]))
        top = [fsa for _n, fsa in ranked[:TOP_FSAS]]
        other = sum(n for fsa, n in counts.items() if fsa not in top)
        items: list[tuple] = [(f"fsa:{fsa}", fsa, counts[fsa], {}) for fsa in top]
        items += [("other", _l("Other FSAs"), other, {}), ("unknown", _l("Unknown"), unknown, {})]
        return one_way(
            "fsas",
            "where",
            _l("Top forward sortation areas (FSA)"),
            Column("label", _l("FSA"), "label"),
            items,
            self.population(),
            self.k,
            unit=_l("spectators"),
            note=_l("The %(n)d areas with the most spectators; the others are grouped.", n=TOP_FSAS),
        )

    # -- when --

    def lead_time(self) -> InsightTable:
        people = self._fact("spectators")["bits"]["lead"]
        _purchases, tickets, _cents = self._sum_by(5, len(LEAD_LABELS))
        items = [(i, LEAD_LABELS[i], people[i], {"tickets": tickets[i]}) for i in range(len(LEAD_LABELS))]
        table = self._bars(
            "lead_time",
            "when",
            _l("Lead time: days between purchase and performance"),
            _l("Bought before the performance"),
            items,
            "tickets",
            _l("tickets"),
            _l("Unknown: no performance date, or a purchase recorded after the performance."),
        )
        table.chart_labels = [range_label(low, high) for low, high in LEAD_BUCKETS] + ["?"]
        table.axis_label = _l("Days before the performance")
        return table

    def day_hour(self) -> InsightTable:
        bits = self._fact("spectators")["bits"]
        # Rows: the 24 hours; columns: Monday to Sunday (a tall table reads better than a wide one).
        spectators = [[0] * 7 for _ in range(24)]
        values = [[0] * 7 for _ in range(24)]
        for dow, hour, n, people in self._fact("cells"):
            if 0 <= hour < 24 and 0 <= dow < 7:
                spectators[hour][WEEK.index(dow)] = people
                values[hour][WEEK.index(dow)] = n
        return matrix_with_margins(
            "day_hour",
            "when",
            _l("Day of week and hour of purchase"),
            [f"{h:02d}:00" for h in range(24)],
            [day_label(d, "abbreviated") for d in WEEK],
            spectators,
            bits["hour"],
            [bits["dow"][d] for d in WEEK],
            self.population(),
            values,
            self.k,
            corner_label=_l("Hour"),
            unit=_l("purchases"),
            note=_l("Purchases by the local time of purchase recorded in the exports."),
        )

    def seasonality(self) -> InsightTable:
        people = self._fact("spectators")["bits"]["month"]
        _purchases, tickets, _cents = self._sum_by(4, 13)
        items = [(m, month_label(m), people[m - 1], {"tickets": tickets[m]}) for m in range(1, 13)]
        table = self._bars(
            "seasonality",
            "when",
            _l("Seasonality: month of purchase"),
            _l("Month"),
            items,
            "tickets",
            _l("tickets"),
            _l("All years together."),
        )
        table.chart_labels = [month_label(m, "abbreviated") for m in range(1, 13)]
        return table

    # -- what --

    def disciplines(self) -> InsightTable:
        facts = self._fact("disciplines")
        items: list[tuple] = [
            (d, DISCIPLINE_LABELS[d], facts["single"][i], {}) for i, d in enumerate(DISCIPLINES) if facts["single"][i]
        ]
        note = (
            _l("Every discipline these spectators bought in the district (a spectator counts in each).")
            if self.scope.kind != "district"
            else _l("A spectator counts in each discipline bought.")
        )
        return one_way(
            "disciplines",
            "what",
            _l("Disciplines bought"),
            Column("label", _l("Discipline"), "label"),
            items,
            facts["population"],
            self.k_district,
            overlapping=True,
            sort=True,
            unit=_l("spectators"),
            note=note,
        )

    def crossover(self) -> InsightTable:
        """Spectators who bought both the row's and the column's discipline (the diagonal: the row's)."""
        facts = self._fact("disciplines")
        present = [(i, d) for i, d in enumerate(DISCIPLINES) if facts["single"][i]]
        both = [[facts["pairs"][i][j] for j, _ in present] for i, _ in present]
        k = self.k_district
        # The diagonal shows what the disciplines table shows, hidden where it hides.
        shown = self.disciplines()
        at = shown.index("spectators")
        diagonal = {key: row[at] for key, row in zip(shown.row_keys, shown.rows)}
        size = len(present)
        grid: list[list[int | None]] = [[None] * size for _ in range(size)]
        for a in range(size):
            for b in range(size):
                n = both[a][b]
                if a == b:
                    grid[a][b] = diagonal[present[a][1]]
                elif not (
                    is_small(n, k)
                    or is_small(both[a][a] - n, k)
                    or is_small(both[b][b] - n, k)
                    or is_small(facts["population"] - both[a][a] - both[b][b] + n, k)
                ):
                    # also hidden: a small "bought A but not B" (the diagonal minus the cell) or
                    # "bought neither" (the population minus both diagonals plus the cell)
                    grid[a][b] = n
        labels = [DISCIPLINE_LABELS[d] for _i, d in present]
        columns = [Column("label", _l("Bought"), "label")]
        columns += [Column(d, DISCIPLINE_LABELS[d], "spectators") for _i, d in present]
        return InsightTable(
            key="crossover",
            question="what",
            title=_l("Discipline crossover"),
            columns=columns,
            rows=[[labels[a]] + grid[a] for a in range(size)],
            total=None,
            k=k,
            chart="heatmap",
            measure="spectators",
            unit=_l("spectators"),
            matrix=True,
            row_keys=[d for _i, d in present],
            note=_l(
                "Spectators who bought both the row's and the column's discipline; on the diagonal, those who "
                "bought the discipline."
            ),
        )

    def _mix_table(self, key: str, title, label, dimension: str, keys: tuple, labels: dict) -> InsightTable:
        people = self._fact("spectators")["bits"][dimension]
        position = ("channel", "category", "circumstance").index(dimension)
        _purchases, tickets, cents = self._sum_by(position, len(keys))
        items: list[tuple] = [
            (value, labels[value], people[i], {"tickets": tickets[i], "revenue": cents[i]})
            for i, value in enumerate(keys)
            if people[i] or tickets[i]
        ]
        return one_way(
            key,
            "what",
            title,
            Column("label", label, "label"),
            items,
            self.population(),
            self.k,
            measures=["tickets", "revenue"],
            share_of="tickets",
            overlapping=True,
            measure="tickets",
            unit=_l("tickets"),
            note=_l(
                "Spectators who bought this way at least once (a spectator may count in several "
                "rows); tickets and revenue are hidden with them."
            ),
        )

    def channels(self) -> InsightTable:
        return self._mix_table(
            "channels", _l("Purchase channels"), _l("Channel"), "channel", CHANNEL_KEYS, CHANNEL_LABELS
        )

    def categories(self) -> InsightTable:
        return self._mix_table(
            "categories",
            _l("Single tickets or subscription"),
            _l("Purchase"),
            "category",
            CATEGORY_KEYS,
            CATEGORY_LABELS,
        )

    def circumstances(self) -> InsightTable:
        return self._mix_table(
            "circumstances",
            _l("Promotion or regular price"),
            _l("Price"),
            "circumstance",
            CIRCUMSTANCE_KEYS,
            CIRCUMSTANCE_LABELS,
        )

    def tables(self) -> dict[str, InsightTable]:
        return {name: getattr(self, name)() for name in TABLES}
