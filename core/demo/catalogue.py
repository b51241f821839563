"""The demo's catalogue: every organisation's shows over four seasons, drawn in vectors."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from core.demo.district import (
    _COMPANIES,
    _FR_FIRST,
    _FR_LAST,
    _TITLE_WORDS,
    CATALOGUE_END,
    DISCIPLINE_PROFILE,
    EPOCH,
    HOUR,
    ORGANISATIONS,
    PROMO_KINDS,
    SEASON_STARTS,
    OrgSpec,
)
from core.importing import show_natural_key
from core.models import DISCIPLINES

# --- the catalogue ---------------------------------------------------------------------------


@dataclass
class Catalogue:
    """Organisations, halls, productions and performances, as plain arrays."""

    venue_org: np.ndarray
    venue_name: list[str]
    venue_capacity: np.ndarray
    # performances, sorted by start time (index = id − first id)
    show_org: np.ndarray
    show_venue: np.ndarray
    show_disc: np.ndarray
    show_start: np.ndarray  # seconds since EPOCH
    show_duration: np.ndarray
    show_price: np.ndarray  # cents per ticket
    show_season: np.ndarray
    show_title: list[str]
    show_company: list[str | None]
    show_key: list[str]
    # productions: CSR lists of their performances, grouped by (organisation, season)
    prod_shows: np.ndarray
    prod_offsets: np.ndarray
    orgseason_offsets: np.ndarray  # productions of (org, season) = [offsets[o*S+s], offsets[o*S+s+1])
    # demand groups (organisation, discipline) and their performances sorted by (group, start)
    group_org: np.ndarray
    group_disc: np.ndarray
    group_weight: np.ndarray
    group_keys: np.ndarray
    group_shows: np.ndarray
    group_lo: np.ndarray
    group_hi: np.ndarray
    promo_codes: np.ndarray  # [org, kind, season] → code


def _seconds(value: np.datetime64) -> int:
    return int((value.astype("datetime64[s]") - EPOCH).astype(np.int64))


def _title(rng: np.random.Generator, disc: str, org: OrgSpec) -> tuple[str, str | None]:
    heads, tails = _TITLE_WORDS[disc]
    head = heads[rng.integers(len(heads))]
    if disc == "music":
        if rng.random() < 0.4:
            first = _FR_FIRST[rng.integers(len(_FR_FIRST))]
            last = _FR_LAST[rng.integers(len(_FR_LAST))]
            head = f"{first} {last}" + ("" if rng.random() < 0.6 else " Quartet")
        tail = tails[rng.integers(len(tails))]
        return f"{head} {tail}".strip(), None
    if disc == "humour":
        first = _FR_FIRST[rng.integers(len(_FR_FIRST))]
        last = _FR_LAST[rng.integers(len(_FR_LAST))]
        return f"{first} {last} – {head}", None
    if disc == "festival":
        return f"{org.name} – {head}", org.name
    title = head if not tails else f"{head} {tails[rng.integers(len(tails))]}".strip()
    if org.kind == "venue" and disc in ("theatre", "dance", "circus"):
        return title, _COMPANIES[rng.integers(len(_COMPANIES))]
    return title, org.name if org.kind == "company" else None


def build_catalogue(seed: int) -> Catalogue:
    """The district's organisations, halls and three and a bit seasons of shows for ``seed``."""
    rng = np.random.default_rng([seed, 1])
    n_orgs, n_seasons = len(ORGANISATIONS), len(SEASON_STARTS)
    venue_org, venue_name, venue_capacity, org_venues = [], [], [], []
    for o, spec in enumerate(ORGANISATIONS):
        org_venues.append([])
        for name, capacity in spec.venues:
            org_venues[o].append(len(venue_name))
            venue_org.append(o)
            venue_name.append(name)
            venue_capacity.append(capacity)

    shows: list[tuple] = []  # (start_s, org, venue, disc, duration, price, season, title, company, production)
    productions: list[tuple[int, int]] = []  # (org, season) of each production
    for o, spec in enumerate(ORGANISATIONS):
        for s, season_start in enumerate(SEASON_STARTS):
            season_days = 290 if s < n_seasons - 1 else int((CATALOGUE_END - season_start).astype(int)) - 10
            fraction = season_days / 290
            for disc, per_season in spec.programme:
                profile = DISCIPLINE_PROFILE[disc]
                count = int(round(per_season * fraction * rng.uniform(0.85, 1.15)))
                in_festival = spec.festival_window is not None
                if in_festival:
                    month, day, length = spec.festival_window
                    year = int(str(season_start)[:4]) + (1 if month < 9 else 0)
                    window_start = np.datetime64(f"{year}-{month:02d}-{day:02d}")
                    if window_start > CATALOGUE_END:
                        continue
                    count = int(round(per_season * rng.uniform(0.85, 1.15)))
                for _ in range(max(count, 1)):
                    p = len(productions)
                    productions.append((o, s))
                    title, company = _title(rng, disc, spec)
                    runs_lo, runs_hi = profile["runs"]
                    n_perf = int(rng.integers(runs_lo, runs_hi + 1))
                    if in_festival:
                        first_day = window_start + int(rng.integers(0, length))
                        n_perf = 1 if rng.random() < 0.7 else 2
                    else:
                        first_day = season_start + 9 + int(rng.integers(0, max(season_days - 10, 1)))
                    venue = (
                        org_venues[o][0]
                        if len(org_venues[o]) == 1 or rng.random() < 0.65
                        else org_venues[o][1 + int(rng.integers(len(org_venues[o]) - 1))]
                    )
                    duration = int(profile["duration"] * rng.uniform(0.85, 1.2)) // 5 * 5
                    if title.startswith(("Verdi", "Puccini", "Bizet", "Mozart – Don")):
                        duration = 180
                    price = int(np.rint(profile["price"] * rng.lognormal(0, 0.25) * 2)) * 50
                    curtain = profile["curtain"][rng.integers(len(profile["curtain"]))]
                    day = first_day
                    for k in range(n_perf):
                        if in_festival and k:
                            day = day + 1
                        # Runs skip Mondays (the theatres' day off).
                        while not in_festival and (day.astype("datetime64[D]").astype(np.int64) - 4) % 7 == 0:
                            day = day + 1
                        weekday = int((day.astype("datetime64[D]").astype(np.int64) - 4) % 7)  # 0 = Monday
                        at = curtain
                        if weekday >= 5 and rng.random() < profile["matinee"]:
                            at = "14:00"
                        if in_festival:
                            at = profile["curtain"][rng.integers(len(profile["curtain"]))]
                        hh, mm = map(int, at.split(":"))
                        start = _seconds(day) + hh * HOUR + mm * 60
                        if day <= CATALOGUE_END:
                            shows.append(
                                (start, o, venue, DISCIPLINES.index(disc), duration, price, s, title, company, p)
                            )
                        day = day + 1

    # One performance per (organisation, title, start, hall): the importer's natural key.
    shows.sort(key=lambda r: (r[0], r[1], r[2], r[9]))
    seen, kept = set(), []
    for row in shows:
        starts = dt.datetime(2020, 1, 1) + dt.timedelta(seconds=row[0])
        key = show_natural_key(row[7], starts, venue_name[row[2]])
        if (row[1], key) in seen:
            continue
        seen.add((row[1], key))
        kept.append(row + (key,))
    shows = kept
    arr = lambda i, dtype=np.int64: np.array([r[i] for r in shows], dtype=dtype)  # noqa: E731
    show_start, show_org, show_venue, show_disc = arr(0), arr(1), arr(2), arr(3)
    show_season, show_prod = arr(6), arr(9)

    # Productions, grouped by (organisation, season), each with its performances.
    prod_org = np.array([p[0] for p in productions])
    prod_season = np.array([p[1] for p in productions])
    prod_order = np.lexsort((np.arange(len(productions)), prod_season, prod_org))
    has_show = np.zeros(len(productions), bool)
    has_show[show_prod] = True
    prod_order = prod_order[has_show[prod_order]]
    new_index = np.full(len(productions), -1)
    new_index[prod_order] = np.arange(len(prod_order))
    sp = new_index[show_prod]
    by_prod = np.lexsort((show_start, sp))
    prod_offsets = np.concatenate([[0], np.cumsum(np.bincount(sp, minlength=len(prod_order)))])
    orgseason = prod_org[prod_order] * n_seasons + prod_season[prod_order]
    orgseason_offsets = np.searchsorted(orgseason, np.arange(n_orgs * n_seasons + 1))

    # Demand groups: each organisation's disciplines, weighted by its share and its programme.
    g_org, g_disc, g_weight = [], [], []
    for o, spec in enumerate(ORGANISATIONS):
        total = sum(n for _, n in spec.programme)
        for disc, n in spec.programme:
            g_org.append(o)
            g_disc.append(DISCIPLINES.index(disc))
            # Festivals are sold on their headline: the festival label carries most demand.
            share = (n / total) ** 0.7
            g_weight.append(spec.weight * share)
    g_org, g_disc, g_weight = np.array(g_org), np.array(g_disc), np.array(g_weight, float)
    g_weight /= g_weight.sum()
    group_of = {(o, d): g for g, (o, d) in enumerate(zip(g_org.tolist(), g_disc.tolist()))}
    show_group = np.array([group_of[(o, d)] for o, d in zip(show_org.tolist(), show_disc.tolist())])
    by_group = np.lexsort((show_start, show_group))
    group_keys = show_group[by_group] * (1 << 34) + show_start[by_group]
    group_lo = np.searchsorted(show_group[by_group], np.arange(len(g_org)), "left")
    group_hi = np.searchsorted(show_group[by_group], np.arange(len(g_org)), "right")
    if np.any(group_hi <= group_lo):
        raise RuntimeError("a demand group has no performance")

    codes = np.empty((n_orgs, len(PROMO_KINDS), n_seasons), dtype=object)
    for o, spec in enumerate(ORGANISATIONS):
        for k, (pattern, _) in enumerate(PROMO_KINDS):
            for s, season_start in enumerate(SEASON_STARTS):
                codes[o, k, s] = pattern.format(code=spec.code, yy=str(season_start)[2:4])

    return Catalogue(
        venue_org=np.array(venue_org),
        venue_name=venue_name,
        venue_capacity=np.array(venue_capacity),
        show_org=show_org,
        show_venue=show_venue,
        show_disc=show_disc,
        show_start=show_start,
        show_duration=arr(4),
        show_price=arr(5),
        show_season=show_season,
        show_title=[r[7] for r in shows],
        show_company=[r[8] for r in shows],
        show_key=[r[10] for r in shows],
        prod_shows=by_prod,
        prod_offsets=prod_offsets,
        orgseason_offsets=orgseason_offsets,
        group_org=g_org,
        group_disc=g_disc,
        group_weight=g_weight,
        group_keys=group_keys,
        group_shows=by_group,
        group_lo=group_lo,
        group_hi=group_hi,
        promo_codes=codes,
    )
