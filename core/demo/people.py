"""The demo's spectators and their purchases, contacts and consents, generated in chunks of vectors."""

from __future__ import annotations

import numpy as np

from core.demo.catalogue import Catalogue, _seconds
from core.demo.district import (
    _EN_FIRST,
    _EN_FIRST_A,
    _EN_LAST,
    _EN_LAST_A,
    _FARTHER_AREA,
    _FR_FIRST,
    _FR_FIRST_A,
    _FR_LAST,
    _FR_LAST_A,
    _FSA_REGION,
    _LDU_LETTERS,
    _STREETS,
    CHANNEL_P,
    DAY,
    EPOCH,
    FSA_P,
    FSAS,
    HOUR,
    ORGANISATIONS,
    P_FAVOURITE,
    P_SAME_DISCIPLINE,
    PARTY_P,
    PLAN_END,
    PLAN_START,
    PROMO_KINDS,
    SALES_END,
    SEASON_STARTS,
    SUBSCRIPTION_DISCOUNT,
    _ascii_slug,
)
from core.identity import identity_basis, spectator_key

# --- spectators and their purchases ---------------------------------------------------------


def _plus_two_years(seconds: np.ndarray) -> np.ndarray:
    """The same calendar date and time two years later (29 February → 28 February)."""
    t = EPOCH + seconds.astype("timedelta64[s]")
    days = t.astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    day_in_month = (days - months.astype("datetime64[D]")).astype(np.int64)
    target_month = months + 24
    month_len = ((target_month + 1).astype("datetime64[D]") - target_month.astype("datetime64[D]")).astype(np.int64)
    target_day = target_month.astype("datetime64[D]") + np.minimum(day_in_month, month_len - 1)
    time_of_day = (t - days.astype("datetime64[s]")).astype(np.int64)
    return (target_day.astype("datetime64[s]") - EPOCH).astype(np.int64) + time_of_day


def _hours(rng: np.random.Generator, channel: np.ndarray) -> np.ndarray:
    """Seconds after midnight of a purchase, by channel: web in the evening and at lunch, the box
    office in its opening hours, the phone line in office hours."""
    n = len(channel)
    u = rng.random(n)
    web = np.where(
        u < 0.15,
        rng.normal(9.5, 1.5, n),
        np.where(
            u < 0.42, rng.normal(12.5, 1.2, n), np.where(u < 0.95, rng.normal(20.5, 1.6, n), rng.uniform(0, 24, n))
        ),
    )
    box = rng.uniform(12, 20, n)
    phone = rng.uniform(10, 17, n)
    hours = np.select([channel == 0, channel == 1], [web, box], phone)
    return (np.clip(hours, 0, 23.99) * HOUR).astype(np.int64)


def _pick(rng: np.random.Generator, p: np.ndarray, n: int) -> np.ndarray:
    return np.searchsorted(np.cumsum(p) / np.sum(p), rng.random(n), side="right").clip(0, len(p) - 1)


def _choose_shows(rng: np.random.Generator, cat: Catalogue, group: np.ndarray, when: np.ndarray) -> np.ndarray:
    """A performance of ``group`` around ``when``: the nearest one, then any within six weeks of it."""
    keys = group * (1 << 34) + when
    idx = np.searchsorted(cat.group_keys, keys)
    lo, hi = cat.group_lo[group], cat.group_hi[group]
    after = np.minimum(idx, hi - 1)
    before = np.maximum(np.minimum(idx - 1, hi - 1), lo)
    nearest = np.where(np.abs(cat.group_keys[after] - keys) <= np.abs(cat.group_keys[before] - keys), after, before)
    centre = cat.group_keys[nearest]
    w_lo = np.searchsorted(cat.group_keys, centre - 42 * DAY, "left")
    w_hi = np.searchsorted(cat.group_keys, centre + 42 * DAY, "right")
    chosen = w_lo + (rng.random(len(group)) * (w_hi - w_lo)).astype(np.int64)
    return cat.group_shows[np.clip(chosen, lo, hi - 1)]


def generate_chunk(cat: Catalogue, seed: int, chunk: int, n: int, first_number: int) -> dict:
    """Spectators ``first_number .. first_number + n - 1`` and their purchases, as arrays.

    Deterministic in (seed, chunk, n). Spectator positions are local to the chunk (0..n-1).
    """
    rng = np.random.default_rng([seed, 2, chunk])

    # Activity: most come once; a loyal minority (heavy tail) buys most of the tickets.
    repeat = rng.random(n) >= 0.58
    n_orders = np.where(repeat, 1 + np.ceil(rng.lognormal(1.9, 1.4, n)), 1).astype(np.int64)
    n_orders = np.minimum(n_orders, 160)
    span_total = _seconds(PLAN_END) - _seconds(PLAN_START)
    early = np.where(repeat, rng.random(n) * 0.9 / (1 + n_orders / 12), rng.random(n))
    t0 = _seconds(PLAN_START) + (early * span_total).astype(np.int64)
    keeps_going = rng.random(n) >= 0.3
    tlast = np.where(
        repeat & keeps_going, _seconds(PLAN_END), t0 + ((_seconds(PLAN_END) - t0) * rng.random(n)).astype(np.int64)
    )
    tlast = np.where(repeat, tlast, t0)

    favourite = _pick(rng, cat.group_weight, n)
    pref_channel = _pick(rng, CHANNEL_P, n)
    base_party = 1 + _pick(rng, PARTY_P, n)
    promo_taste = rng.beta(0.7, 3.3, n)

    # Orders, each planned for a date between the spectator's first and last outing.
    total = int(n_orders.sum())
    spec = np.repeat(np.arange(n), n_orders)
    starts = np.cumsum(n_orders) - n_orders
    position = np.arange(total) - np.repeat(starts, n_orders)
    frac = rng.random(total)
    frac[position == 0] = 0.0
    plan = t0[spec] + (frac * (tlast - t0)[spec]).astype(np.int64)

    group = favourite[spec].copy()
    r = rng.random(total)
    same = (position > 0) & (r >= P_FAVOURITE) & (r < P_FAVOURITE + P_SAME_DISCIPLINE)
    cross = (position > 0) & (r >= P_FAVOURITE + P_SAME_DISCIPLINE)
    fav_disc = cat.group_disc[group]
    for d in np.unique(cat.group_disc):
        members = np.flatnonzero(cat.group_disc == d)
        mask = same & (fav_disc == d)
        group[mask] = members[_pick(rng, cat.group_weight[members], int(mask.sum()))]
    group[cross] = _pick(rng, cat.group_weight, int(cross.sum()))

    show = _choose_shows(rng, cat, group, plan)
    show_start = cat.show_start[show]

    channel = np.where(rng.random(total) < 0.75, pref_channel[spec], _pick(rng, CHANNEL_P, total))
    party = np.where(rng.random(total) < 0.8, base_party[spec], 1 + _pick(rng, PARTY_P, total))
    u = rng.random(total)
    circumstance = np.where(u < promo_taste[spec], 1, 0)
    u2 = rng.random(total)
    circumstance = np.where(u2 < 0.02, 2, np.where(u2 < 0.03, 3, circumstance))
    channel = np.where(circumstance == 2, 1, channel)
    party = np.where(circumstance == 2, np.minimum(party, 2), party)
    party = np.where(circumstance == 3, rng.integers(6, 16, total), party)

    # Lead time: log-normal, median about three weeks; a third of box-office sales on the day.
    lead = np.minimum(rng.lognormal(np.log(20), 1.05, total), 270) * DAY
    same_day = (channel == 1) & (rng.random(total) < 0.35)
    lead = np.where(same_day, 0, lead).astype(np.int64)
    day = (show_start - lead) // DAY * DAY
    purchased = day + _hours(rng, channel)
    # The phone line is closed on Sundays: those calls come in on the Saturday.
    weekday = ((purchased // DAY) + 2) % 7  # EPOCH (2020-01-01) was a Wednesday; 0 = Monday
    purchased = np.where((channel == 2) & (weekday == 6), purchased - DAY, purchased)
    too_late = purchased > show_start - 900
    purchased = np.where(too_late, show_start - rng.integers(900, 3 * HOUR, total), purchased)
    # Nothing is recorded after the end of sales: later plans were bought in the weeks before.
    end = _seconds(SALES_END)
    late = purchased >= end
    purchased = np.where(late, end - rng.integers(1, 22, total) * DAY + purchased % DAY, purchased)

    tier = np.array([0.75, 1.0, 1.35])[_pick(rng, np.array([0.3, 0.5, 0.2]), total)]
    unit = np.rint(cat.show_price[show] * tier / 50) * 50
    promo_kind = _pick(rng, np.array([0.55, 0.25, 0.20]), total)
    factor = np.where(
        circumstance == 1, np.array([k[1] for k in PROMO_KINDS])[promo_kind], np.where(circumstance == 3, 0.85, 1.0)
    )
    factor = np.where(circumstance == 2, 0.0, factor)
    amount = np.rint(unit * party * factor).astype(np.int64)
    org = cat.group_org[group]
    promo = np.where(circumstance == 1, cat.promo_codes[org, promo_kind, cat.show_season[show]], None)
    order = np.arange(total)

    # Some orders take a second show of the same organisation and discipline, later on.
    extra = (circumstance != 2) & (rng.random(total) < 0.08)
    e = np.flatnonzero(extra)
    e_show = _choose_shows(rng, cat, group[e], show_start[e] + rng.integers(7, 60, len(e)) * DAY)
    ok = cat.show_start[e_show] > show_start[e]
    e, e_show = e[ok], e_show[ok]
    e_amount = np.rint(np.rint(cat.show_price[e_show] * tier[e] / 50) * 50 * party[e] * factor[e]).astype(np.int64)

    # Subscriptions: a third of the loyal buy a series of their favourite organisation's season.
    fav_org = cat.group_org[favourite]
    subscriber = (n_orders >= 4) & (rng.random(n) < 0.33)
    sub_spec, sub_season = [], []
    for s, season_start in enumerate(SEASON_STARTS):
        sale = _seconds(season_start) - 60 * DAY
        has = (
            cat.orgseason_offsets[fav_org * len(SEASON_STARTS) + s + 1]
            - cat.orgseason_offsets[fav_org * len(SEASON_STARTS) + s]
        )
        take = subscriber & (has >= 3) & (t0 - 90 * DAY <= sale) & (sale <= tlast) & (rng.random(n) < 0.8)
        sub_spec.append(np.flatnonzero(take))
        sub_season.append(np.full(int(take.sum()), s))
    sub_spec = np.concatenate(sub_spec)
    sub_season = np.concatenate(sub_season)
    sub_org = fav_org[sub_spec]
    os_index = sub_org * len(SEASON_STARTS) + sub_season
    p_lo = cat.orgseason_offsets[os_index]
    p_count = cat.orgseason_offsets[os_index + 1] - p_lo
    k = np.minimum(rng.integers(3, 9, len(sub_spec)), p_count)
    sub_day = (
        np.array([_seconds(SEASON_STARTS[s]) for s in range(len(SEASON_STARTS))])[sub_season]
        - rng.integers(7, 150, len(sub_spec)) * DAY
    )
    sub_channel = _pick(rng, np.array([0.5, 0.2, 0.3]), len(sub_spec))
    sub_time = sub_day + _hours(rng, sub_channel)
    sub_party = np.minimum(base_party[sub_spec], 2)
    # Distinct productions spread over the season (stratified), one performance of each.
    sub_row_order = np.repeat(np.arange(len(sub_spec)), k)
    j = np.arange(len(sub_row_order)) - np.repeat(np.cumsum(k) - k, k)
    kk = k[sub_row_order]
    prod = p_lo[sub_row_order] + ((j + rng.random(len(j))) / kk * p_count[sub_row_order]).astype(np.int64)
    perf_lo = cat.prod_offsets[prod]
    perf_n = cat.prod_offsets[prod + 1] - perf_lo
    sub_show = cat.prod_shows[perf_lo + (rng.random(len(j)) * perf_n).astype(np.int64)]
    sub_amount = np.rint(
        np.rint(cat.show_price[sub_show] / 50) * 50 * sub_party[sub_row_order] * SUBSCRIPTION_DISCOUNT
    ).astype(np.int64)

    n_single, n_extra, n_sub = total, len(e), len(sub_row_order)
    tx = {
        "spec": np.concatenate([spec, spec[e], sub_spec[sub_row_order]]),
        "org": np.concatenate([org, org[e], sub_org[sub_row_order]]),
        "show": np.concatenate([show, e_show, sub_show]),
        "purchased": np.concatenate([purchased, purchased[e], sub_time[sub_row_order]]),
        "amount": np.concatenate([amount, e_amount, sub_amount]),
        "tickets": np.concatenate([party, party[e], sub_party[sub_row_order]]),
        "circumstance": np.concatenate([circumstance, circumstance[e], np.zeros(n_sub, np.int64)]),
        "subscription": np.concatenate([np.zeros(n_single + n_extra, bool), np.ones(n_sub, bool)]),
        "channel": np.concatenate([channel, channel[e], sub_channel[sub_row_order]]),
        "promo": np.concatenate([promo, promo[e], np.full(n_sub, None, dtype=object)]),
        "order": np.concatenate([order, order[e], total + sub_row_order]),
    }
    # Chronological within each spectator; orders numbered in that order.
    sort = np.lexsort((tx["show"], tx["order"], tx["purchased"], tx["spec"]))
    tx = {name: values[sort] for name, values in tx.items()}
    first_of_order = np.concatenate([[True], tx["order"][1:] != tx["order"][:-1]])
    tx["order"] = np.cumsum(first_of_order) - 1

    people = _people(rng, n, first_number)

    # Contacts: one per (spectator, organisation), with consents derived as the importer does.
    n_orgs = len(ORGANISATIONS)
    pair = tx["spec"] * n_orgs + tx["org"]
    by_pair = np.argsort(pair, kind="stable")
    pair_sorted = pair[by_pair]
    first = np.concatenate([[True], pair_sorted[1:] != pair_sorted[:-1]])
    starts_idx = np.flatnonzero(first)
    contact_pair = pair_sorted[starts_idx]
    p_purchased = tx["purchased"][by_pair]
    first_purchase = np.minimum.reduceat(p_purchased, starts_idx)
    last_purchase = np.maximum.reduceat(p_purchased, starts_idx)
    rows_at_org = np.diff(np.concatenate([starts_idx, [len(pair_sorted)]]))
    is_sub = tx["subscription"][by_pair]
    big = np.iinfo(np.int64).max
    sub_first = np.minimum.reduceat(np.where(is_sub, p_purchased, big), starts_idx)
    sub_last_show = np.maximum.reduceat(np.where(is_sub, cat.show_start[tx["show"][by_pair]], -big), starts_idx)
    n_contacts = len(contact_pair)
    newsletter = rng.random(n_contacts) < np.where(rows_at_org >= 3, 0.5, 0.3)
    # A few unsubscribe through one of their organisations: that organisation's consents are
    # withdrawn and the spectator is opted out district-wide, as an unsubscribe import does.
    contact_spec = contact_pair // n_orgs
    spec_lo = np.searchsorted(contact_spec, np.arange(n), "left")
    spec_hi = np.searchsorted(contact_spec, np.arange(n), "right")
    unsubscribed = np.flatnonzero(rng.random(n) < 0.02)
    via = spec_lo[unsubscribed] + (rng.random(len(unsubscribed)) * (spec_hi - spec_lo)[unsubscribed]).astype(np.int64)
    opted_out_at = np.full(n, -1, np.int64)
    opted_out_at[unsubscribed] = first_purchase[via] + ((end - first_purchase[via]) * rng.random(len(via))).astype(
        np.int64
    )
    withdrawn_at = np.full(n_contacts, -1, np.int64)
    withdrawn_at[via] = opted_out_at[unsubscribed]

    contacts = {"spec": contact_spec, "org": contact_pair % n_orgs}
    # consent rows: implied_purchase for all, express for newsletter, implied_subscription for subscribers
    has_sub = sub_first != big
    c_contact = np.concatenate([np.arange(n_contacts), np.flatnonzero(newsletter), np.flatnonzero(has_sub)])
    c_basis = np.concatenate(
        [np.full(n_contacts, 1), np.full(int(newsletter.sum()), 0), np.full(int(has_sub.sum()), 2)]
    )
    c_given = np.concatenate([first_purchase, first_purchase[newsletter], sub_first[has_sub]])
    never = np.full(int(newsletter.sum()), -1)
    c_expires = np.concatenate([_plus_two_years(last_purchase), never, _plus_two_years(sub_last_show[has_sub])])
    c_withdrawn = withdrawn_at[c_contact]
    by_contact = np.lexsort((c_basis, c_contact))
    consents = {
        "contact": c_contact[by_contact],
        "basis": c_basis[by_contact],
        "given": c_given[by_contact],
        "expires": c_expires[by_contact],
        "withdrawn": c_withdrawn[by_contact],
    }
    return {
        "people": people,
        "tx": tx,
        "contacts": contacts,
        "consents": consents,
        "first_number": first_number,
        "opted_out_at": opted_out_at,
    }


def _people(rng: np.random.Generator, n: int, first_number: int) -> dict:
    """Names, addresses and ways to reach each spectator (fictional; e-mails at example.net)."""
    english = rng.random(n) < 0.25
    mixed = rng.random(n) < 0.12  # Montreal: many a francophone with an English name, and the reverse
    fsa = _pick(rng, FSA_P, n)
    first_fr = rng.integers(len(_FR_FIRST), size=n)
    first_en = rng.integers(len(_EN_FIRST), size=n)
    last_fr = rng.integers(len(_FR_LAST), size=n)
    last_en = rng.integers(len(_EN_LAST), size=n)
    last_english = english ^ mixed
    digits = rng.integers(0, 10, size=(n, 2))
    letters = _LDU_LETTERS[rng.integers(len(_LDU_LETTERS), size=n)]
    civic = rng.integers(10, 9900, size=n)
    street = rng.integers(0, 100, size=n)
    region = _FSA_REGION[fsa]
    has_address = rng.random(n) < 0.82
    has_phone = rng.random(n) < 0.7
    has_email = rng.random(n) >= 0.04
    phone_tail = rng.integers(0, 100, size=n)
    area_choice = rng.random(n) < 0.5

    first_names, last_names, emails, postals, phones, addresses, fsas, languages = [], [], [], [], [], [], [], []
    for i in range(n):
        en = bool(english[i])
        first = _EN_FIRST[first_en[i]] if en else _FR_FIRST[first_fr[i]]
        first_a = _EN_FIRST_A[first_en[i]] if en else _FR_FIRST_A[first_fr[i]]
        if last_english[i]:
            last, last_a = _EN_LAST[last_en[i]], _EN_LAST_A[last_en[i]]
        else:
            last, last_a = _FR_LAST[last_fr[i]], _FR_LAST_A[last_fr[i]]
        code = FSAS[fsa[i]]
        postal = f"{code}{digits[i, 0]}{letters[i]}{digits[i, 1]}"
        reg = region[i]
        if reg == 0:
            area = "514" if area_choice[i] else "438"
        elif reg in (1, 2):
            area = "450" if area_choice[i] else "579"
        else:
            area = _FARTHER_AREA[code]
        streets = _STREETS[reg]
        first_names.append(first)
        last_names.append(last)
        emails.append(f"{first_a}.{last_a}.{first_number + i}@example.net" if has_email[i] else None)
        postals.append(postal)
        phones.append(f"{area} 555-01{phone_tail[i]:02d}" if has_phone[i] or not has_email[i] else None)
        addresses.append(f"{civic[i]}, {streets[street[i] % len(streets)]}" if has_address[i] else None)
        fsas.append(code)
        languages.append("en" if en else "fr")
    return {
        "first": first_names,
        "last": last_names,
        "email": emails,
        "postal": postals,
        "phone": phones,
        "address": addresses,
        "fsa": fsas,
        "language": languages,
    }


def _keys(people: dict, secret: str, seen_name_keys: set, first_number: int) -> list[str]:
    """Each spectator's pseudonymous key, exactly as an import of the same person computes it.

    A spectator without an e-mail is keyed on name and postal code; should two of those coincide,
    the later one is given an e-mail so that every demo spectator is a distinct person.
    """
    keys = []
    for i in range(len(people["first"])):
        basis = identity_basis(
            people["email"][i], people["last"][i], people["first"][i], people["postal"][i], people["phone"][i]
        )
        if basis is not None and not basis.startswith("e:"):
            if basis in seen_name_keys:
                people["email"][i] = (
                    f"{_ascii_slug(people['first'][i])}.{_ascii_slug(people['last'][i])}.{first_number + i}@example.net"
                )
                basis = identity_basis(people["email"][i], None, None, None, None)
            else:
                seen_name_keys.add(basis)
        keys.append(spectator_key(secret, basis))
    return keys
