"""Spectator profiles: one derived row per spectator, rebuilt set-wise in SQL from the pooled data.

A profile holds what the segment rules need, as of one date (``as_of``): only purchases made on
or before that date count, consents are judged at the end of that day. Every row of the table
shares the same ``as_of``: the lifecycle of every spectator moves with the date, so a refresh at
a new date is always a full one (see :func:`refresh_profiles`).

Besides the facts over all purchases, a profile holds a few of them over the usual windows of a
rule (:data:`WINDOW_COLUMNS`: spend and the organisation and discipline sets of the last 365 and 730
days, distinct shows of the life cycle's 548 days), which the rule compiler reads instead of the
transactions when a condition's ``within_days`` is one of them.

Organisation sets are a bit mask with bit ``organisation.id``. A 64-bit signed integer holds bits
0 to 62, so an organisation whose id is above :data:`MAX_MASK_ORGANISATION_ID` is left out of the
mask; the rule compiler (``segments.query``) notices such an organisation in a rule and answers
that condition from the transactions instead.

The SQL here is shared with the rule compiler, which evaluates the same facts at another date
from the transactions (:func:`facts_select`).
"""

from __future__ import annotations

import datetime as dt
from typing import Callable, Iterable

from sqlalchemy import (
    BigInteger,
    Date,
    Float,
    Integer,
    Select,
    String,
    and_,
    case,
    cast,
    delete,
    distinct,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import SelectBase

from core import sql, sql_expressions
from core.models import (
    DISCIPLINES,
    PERSON_ERASED,
    AuditEvent,
    Consent,
    Contact,
    ImportBatch,
    Setting,
    Show,
    Spectator,
    Transaction,
    utcnow,
)
from core.privacy import advance_epoch, fill_cell_keys, instance_secret
from segments import profile_columns
from segments.lifecycle import LAPSE_DAYS, LIFECYCLE_DAYS, SHOW_THRESHOLDS, STAGES, TWO_YEARS_DAYS, YEAR_DAYS
from segments.models import SpectatorProfile

MAX_MASK_ORGANISATION_ID = 62
LIFECYCLE_STAGES = STAGES
CHANNEL_ORDER = ("web", "box_office", "phone")
REFRESHED_AT_SETTING = "profiles_refreshed_at"
# (field, within_days) → the profile column holding that fact over the D days ending with as_of.
WINDOW_COLUMNS = {
    ("shows", LIFECYCLE_DAYS): "shows_548",
    ("spent", YEAR_DAYS): "spent_cents_365",
    ("spent", TWO_YEARS_DAYS): "spent_cents_730",
    ("organisation", YEAR_DAYS): "organisation_mask_365",
    ("organisation", TWO_YEARS_DAYS): "organisation_mask_730",
    ("discipline", YEAR_DAYS): "discipline_mask_365",
    ("discipline", TWO_YEARS_DAYS): "discipline_mask_730",
}
CHUNK = 2000  # spectator ids per statement in an incremental refresh of an explicit id list

T = Transaction.__table__
S = Show.__table__
P = SpectatorProfile.__table__
PROFILE_COLUMNS = tuple(c.name for c in P.columns)


# The windowed columns other than the life cycle's shows_548 (computed with it in one aggregate).
WINDOW_AGGREGATES = tuple(column for column in WINDOW_COLUMNS.values() if column != "shows_548")


# --- portable SQL pieces (shared with segments.query) -------------------------------------------


def day_start(day: dt.date) -> dt.datetime:
    """Midnight at the start of ``day``: purchases on ``day`` are those in [start, start + 1 day)."""
    return dt.datetime.combine(day, dt.time())


def window_bounds(as_of: dt.date, within_days: int | None) -> tuple[dt.datetime | None, dt.datetime]:
    """The purchase-time bounds [low, high) of "the D days ending with as_of" (all days when None).

    DESIGN.md §7: purchase date > as_of − D and ≤ as_of.
    """
    high = day_start(as_of + dt.timedelta(days=1))
    if within_days is None:
        return None, high
    return day_start(as_of - dt.timedelta(days=within_days - 1)), high


def order_key(table=None):
    """An order: (organisation, order id) when the export gave one, else the transaction itself."""
    t = T if table is None else table
    return case(
        (t.c.order_id.is_(None), literal("t", String) + cast(t.c.id, String)),
        else_=cast(t.c.organisation_id, String) + literal(":", String) + t.c.order_id,
    )


def organisation_bit(column=None):
    """``1 << organisation_id`` for ids that fit a signed 64-bit mask, 0 beyond."""
    column = T.c.organisation_id if column is None else column
    return case(
        (column <= MAX_MASK_ORGANISATION_ID, cast(literal(1), BigInteger).op("<<")(column)),
        else_=cast(literal(0), BigInteger),
    )


def discipline_bit(column=None):
    """``1 << DISCIPLINES.index(discipline)``, 0 for a purchase without a (known) discipline."""
    column = S.c.discipline if column is None else column
    return case({key: 1 << i for i, key in enumerate(DISCIPLINES)}, value=column, else_=0)


def channel_rank(column=None):
    column = T.c.channel if column is None else column
    return case({c: i for i, c in enumerate(CHANNEL_ORDER)}, value=column, else_=len(CHANNEL_ORDER))


def lifecycle_case(shows_548, first_purchase, last_purchase, as_of: dt.date):
    """``segments.lifecycle.lifecycle_stage`` as one SQL CASE, from the distinct known shows of the
    548 days ending ``as_of`` and the first and last purchase instants (every purchase up to ``as_of``)."""
    start_548, _ = window_bounds(as_of, LIFECYCLE_DAYS)
    start_1096, _ = window_bounds(as_of, LAPSE_DAYS)
    return case(
        *[(shows_548 >= least, literal(stage)) for least, stage in SHOW_THRESHOLDS],
        (and_(shows_548 == 1, first_purchase < start_548), literal("once_before")),
        (shows_548 == 1, literal("new")),
        (last_purchase >= start_1096, literal("stale")),
        else_=literal("lapsed"),
    )


# --- the facts, as SELECTs ------------------------------------------------------------------------


def _restrict(query: Select, column, spectator_ids) -> Select:
    if spectator_ids is None:
        return query
    return query.where(column.in_(spectator_ids))


def aggregates_select(
    as_of: dt.date, spectator_ids=None, within_days: int | None = None, columns: Iterable[str] | None = None
) -> Select:
    """One row per spectator with purchases in the window: counts, money, dates, masks, shares.

    :param spectator_ids: None (everyone), a list, or a SELECT of ids.
    :param within_days: only the purchases of the D days ending ``as_of`` (all purchases up to
        ``as_of`` when None).
    :param columns: the aggregates wanted (all when None); ``spectator_id`` always comes first.
    """
    low, high = window_bounds(as_of, within_days)
    start_548, _ = window_bounds(as_of, LIFECYCLE_DAYS)
    start_365, _ = window_bounds(as_of, YEAR_DAYS)
    start_730, _ = window_bounds(as_of, TWO_YEARS_DAYS)
    key = order_key()
    orders = func.count(distinct(key))
    promo_orders = func.count(distinct(case((T.c.circumstance == "promotion", key))))
    tickets = func.coalesce(func.sum(T.c.tickets), 0)

    def since(start: dt.datetime, value):
        """``value`` for a purchase made from ``start`` on (within a window), else nothing."""
        return case((T.c.purchased_at >= start, value))

    def mask(bit, type_):
        # Each organisation (discipline) has a bit of its own: the OR of the rows' bits is the set.
        return cast(func.coalesce(sql_expressions.bit_union(bit), 0), type_)

    available = {
        "first_at": lambda: func.min(T.c.purchased_at),
        "last_at": lambda: func.max(T.c.purchased_at),
        "shows": lambda: func.count(distinct(T.c.show_id)),
        "orders": lambda: orders,
        "tickets": lambda: tickets,
        "spent_cents": lambda: func.coalesce(func.sum(T.c.amount_cents), 0),
        "shows_548": lambda: func.count(distinct(case((T.c.purchased_at >= start_548, T.c.show_id)))),
        "spent_cents_365": lambda: func.coalesce(func.sum(since(start_365, T.c.amount_cents)), 0),
        "spent_cents_730": lambda: func.coalesce(func.sum(since(start_730, T.c.amount_cents)), 0),
        "organisation_mask": lambda: mask(organisation_bit(), BigInteger),
        "organisation_mask_365": lambda: mask(since(start_365, organisation_bit()), BigInteger),
        "organisation_mask_730": lambda: mask(since(start_730, organisation_bit()), BigInteger),
        "discipline_mask": lambda: mask(discipline_bit(), Integer),
        "discipline_mask_365": lambda: mask(since(start_365, discipline_bit()), Integer),
        "discipline_mask_730": lambda: mask(since(start_730, discipline_bit()), Integer),
        "subscriber": lambda: func.max(case((T.c.category == "subscription", 1), else_=0)) == 1,
        "promo_share": lambda: cast(promo_orders, Float) / orders,
        "tickets_per_order": lambda: cast(tickets, Float) / orders,
    }
    names = list(available) if columns is None else [n for n in available if n in set(columns)]
    needs_show = any(n.startswith("discipline_mask") for n in names)
    source = T.outerjoin(S, S.c.id == T.c.show_id) if needs_show else T
    query = (
        select(T.c.spectator_id.label("spectator_id"), *(available[n]().label(n) for n in names))
        .select_from(source)
        .where(T.c.purchased_at < high)
        .group_by(T.c.spectator_id)
    )
    if low is not None:
        query = query.where(T.c.purchased_at >= low)
    return _restrict(query, T.c.spectator_id, spectator_ids)


def main_channel_select(as_of: dt.date, spectator_ids=None, within_days: int | None = None) -> Select:
    """(spectator_id, main_channel): the channel of most orders, ties broken web, box office, phone."""
    low, high = window_bounds(as_of, within_days)
    ranked = (
        select(
            T.c.spectator_id,
            T.c.channel,
            func.row_number()
            .over(
                partition_by=T.c.spectator_id,
                order_by=(func.count(distinct(order_key())).desc(), channel_rank(), T.c.channel),
            )
            .label("rank"),
        )
        .where(T.c.channel.in_(CHANNEL_ORDER), T.c.purchased_at < high)
        .group_by(T.c.spectator_id, T.c.channel)
    )
    if low is not None:
        ranked = ranked.where(T.c.purchased_at >= low)
    ranked = _restrict(ranked, T.c.spectator_id, spectator_ids).subquery("channel_ranked")
    return select(ranked.c.spectator_id, ranked.c.channel.label("main_channel")).where(ranked.c.rank == 1)


def lead_select(as_of: dt.date, spectator_ids=None, within_days: int | None = None) -> Select:
    """(spectator_id, lead_days): median days from purchase date to show date, over order lines."""
    low, high = window_bounds(as_of, within_days)
    lead = sql_expressions.days_between(S.c.starts_at, T.c.purchased_at)
    lines = (
        select(
            T.c.spectator_id,
            lead.label("lead"),
            func.row_number().over(partition_by=T.c.spectator_id, order_by=lead).label("n"),
            func.count().over(partition_by=T.c.spectator_id).label("total"),
        )
        .select_from(T.join(S, S.c.id == T.c.show_id))
        .where(T.c.purchased_at < high)
    )
    if low is not None:
        lines = lines.where(T.c.purchased_at >= low)
    lines = _restrict(lines, T.c.spectator_id, spectator_ids).subquery("lead_lines")
    # The median: the middle line, or the mean of the two middle ones (integer division).
    middle = or_(lines.c.n == (lines.c.total + 1) // 2, lines.c.n == (lines.c.total + 2) // 2)
    return (
        select(lines.c.spectator_id, cast(func.avg(lines.c.lead), Float).label("lead_days"))
        .where(middle)
        .group_by(lines.c.spectator_id)
    )


def consent_instant(as_of: dt.date) -> dt.datetime:
    """Consents are judged at the end of the ``as_of`` day (midnight after it)."""
    return day_start(as_of + dt.timedelta(days=1))


def valid_consent(at: dt.datetime, table=None):
    """A consent valid at ``at``: given, not withdrawn, and (when implied) not expired."""
    c = Consent.__table__ if table is None else table
    return and_(
        c.c.basis != "none",
        c.c.given_at <= at,
        or_(c.c.withdrawn_at.is_(None), c.c.withdrawn_at > at),
        or_(c.c.expires_at.is_(None), c.c.expires_at > at),
    )


def consents_select(as_of: dt.date, spectator_ids=None) -> Select:
    """(spectator_id, newsletter, has_valid): valid e-mail consents at the end of ``as_of``."""
    at = consent_instant(as_of)
    c = Consent.__table__
    k = Contact.__table__
    valid = valid_consent(at, c)
    query = (
        select(
            k.c.spectator_id,
            func.max(case((and_(valid, c.c.basis == "express"), 1), else_=0)).label("newsletter"),
            func.max(case((valid, 1), else_=0)).label("has_valid"),
        )
        .select_from(c.join(k, k.c.id == c.c.contact_id))
        .where(c.c.channel == "email")
        .group_by(k.c.spectator_id)
    )
    return _restrict(query, k.c.spectator_id, spectator_ids)


def facts_select(
    as_of: dt.date, spectator_ids=None, columns: Iterable[str] | None = None, consents_on: dt.date | None = None
) -> Select:
    """The profile of every spectator who bought something up to ``as_of``, as one SELECT whose
    columns are those of ``spectator_profile`` (all of them, or only ``columns``).

    The refresh inserts it; the rule compiler reads it as a derived table for a date other than
    the stored profiles' date.

    :param consents_on: the day whose end ``newsletter`` and ``contactable`` are judged at
        (default ``as_of``): the rules treat them as current facts, whatever the rule's date.
    """
    wanted = set(PROFILE_COLUMNS) if columns is None else set(columns)
    consents_on = consents_on or as_of

    def want(*names: str) -> bool:
        return any(n in wanted for n in names)

    agg_columns = set()
    for name in (
        "shows",
        "orders",
        "tickets",
        "spent_cents",
        "shows_548",
        *WINDOW_AGGREGATES,
        "organisation_mask",
        "discipline_mask",
        "subscriber",
        "promo_share",
        "tickets_per_order",
    ):
        if want(name):
            agg_columns.add(name)
    if want("first_purchase_on", "lifecycle"):
        agg_columns.add("first_at")
    if want("last_purchase_on", "lifecycle"):
        agg_columns.add("last_at")
    if want("lifecycle"):
        agg_columns.add("shows_548")
    agg = aggregates_select(as_of, spectator_ids, columns=agg_columns).subquery("agg")
    sp = Spectator.__table__
    source = agg
    if want("fsa", "contactable", "cell_key"):
        source = source.join(sp, sp.c.id == agg.c.spectator_id)
    cols = [agg.c.spectator_id.label("spectator_id")]
    if want("as_of"):
        cols.append(literal(as_of, Date).label("as_of"))
    if want("fsa"):
        cols.append(sp.c.fsa.label("fsa"))
    if want("first_purchase_on"):
        cols.append(sql_expressions.day_of(agg.c.first_at).label("first_purchase_on"))
    if want("last_purchase_on"):
        cols.append(sql_expressions.day_of(agg.c.last_at).label("last_purchase_on"))
    for name in ("shows", "orders", "tickets", "spent_cents", "shows_548", *WINDOW_AGGREGATES):
        if want(name):
            cols.append(agg.c[name].label(name))
    if want("lifecycle"):
        cols.append(lifecycle_case(agg.c.shows_548, agg.c.first_at, agg.c.last_at, as_of).label("lifecycle"))
    for name in ("organisation_mask", "discipline_mask", "subscriber"):
        if want(name):
            cols.append(agg.c[name].label(name))
    if want("cell_key"):
        cols.append(func.coalesce(sp.c.cell_key, 0).label("cell_key"))
    if want("newsletter", "contactable"):
        cons = consents_select(consents_on, spectator_ids).subquery("cons")
        source = source.outerjoin(cons, cons.c.spectator_id == agg.c.spectator_id)
        if want("newsletter"):
            cols.append((func.coalesce(cons.c.newsletter, 0) == 1).label("newsletter"))
        if want("contactable"):
            at = consent_instant(consents_on)
            not_opted_out = or_(sp.c.opted_out_at.is_(None), sp.c.opted_out_at > at)
            cols.append(
                case((and_(func.coalesce(cons.c.has_valid, 0) == 1, not_opted_out), true()), else_=false()).label(
                    "contactable"
                )
            )
    if want("main_channel"):
        chan = main_channel_select(as_of, spectator_ids).subquery("chan")
        source = source.outerjoin(chan, chan.c.spectator_id == agg.c.spectator_id)
        cols.append(chan.c.main_channel.label("main_channel"))
    if want("promo_share"):
        cols.append(agg.c.promo_share.label("promo_share"))
    if want("lead_days"):
        lead = lead_select(as_of, spectator_ids).subquery("lead")
        source = source.outerjoin(lead, lead.c.spectator_id == agg.c.spectator_id)
        cols.append(lead.c.lead_days.label("lead_days"))
    if want("tickets_per_order"):
        cols.append(agg.c.tickets_per_order.label("tickets_per_order"))
    return select(*cols).select_from(source)


# --- refresh --------------------------------------------------------------------------------------


def profiles_as_of(session: Session) -> dt.date | None:
    """The date the stored profiles describe (None when there are none)."""
    return session.scalar(select(SpectatorProfile.as_of).limit(1))


def _insert_profiles(session: Session, as_of: dt.date, spectator_ids) -> int:
    query = facts_select(as_of, spectator_ids)
    if spectator_ids is None and sql.keeps_insert_order(session):
        # A full rebuild writes the rows in FSA order: a rule on a region (``fsa`` starts_with or
        # in) then reads the few pages of its FSAs through ``ix_spectator_profile_fsa`` instead of
        # the whole table (SQLite keeps its rows in spectator order whatever the insert's order).
        query = query.order_by(query.selected_columns.fsa, query.selected_columns.spectator_id)
    names = [column.name for column in query.selected_columns]
    result = session.execute(insert(P).from_select(names, query).execution_options(preserve_rowcount=True))
    return result.rowcount or 0


# How long a full refresh on PostgreSQL waits for readers of the profiles before it deletes the rows
# instead of truncating the table.
TRUNCATE_LOCK_TIMEOUT = "2s"

# Run at the end of every refresh, in its transaction: ``hook(session, spectator_ids, as_of, since)`` with
# the refreshed spectators (a list or a SELECT of ids; None after a full refresh) and the moment after
# which what made them due changed (None when unknown). The insight pages' kept facts are marked
# stale this way (segments.insight_publish, registered by segments.init_app).
_after_refresh: list[Callable] = []


def add_after_refresh(hook: Callable) -> None:
    """Run ``hook`` after every profile refresh (once, however often it is added)."""
    if hook not in _after_refresh:
        _after_refresh.append(hook)


def refresh_profiles(
    session: Session,
    spectator_ids=None,
    as_of: dt.date | None = None,
    secret: str | None = None,
    since: dt.datetime | None = None,
) -> int:
    """(Re)build spectator profiles as of ``as_of`` (default today) in a few set-wise statements.

    :param session: the caller's session; this flushes and never commits.
    :param spectator_ids: None for a full rebuild (delete all, insert all); otherwise the
        spectators to rebuild, as an iterable of ids (processed in chunks) or a SELECT of ids
        (one statement). When the stored profiles describe another date than ``as_of``, the
        refresh is a full one whatever ``spectator_ids`` says, so that every row shares one date.
    :param as_of: the date the profiles describe; purchases after it are ignored.
    :param secret: the district secret that gives spectators still without a cell key theirs
        (default: the application's, when there is one); every refresh advances the data epoch
        (core.privacy), so that the noisy pooled figures are redrawn.
    :param since: what made these spectators due is what changed after this moment (an import's
        start, the last refresh), passed on to the hooks (None: unknown).
    :returns: the number of profile rows written.
    """
    as_of = as_of or dt.date.today()
    session.flush()
    secret = secret or instance_secret()
    if secret:
        fill_cell_keys(session, secret)
    sql.without_jit(session)
    if spectator_ids is not None:
        stored = profiles_as_of(session)
        if stored is not None and stored != as_of:
            spectator_ids = None
    with profile_columns.refreshing(session):  # these writes keep the columns below
        if spectator_ids is None:
            sql.empty_table_for_rebuild(session, P, TRUNCATE_LOCK_TIMEOUT)
            written = _insert_profiles(session, as_of, None)
        elif isinstance(spectator_ids, SelectBase):
            ids = spectator_ids
            session.execute(delete(P).where(P.c.spectator_id.in_(ids)))
            written = _insert_profiles(session, as_of, ids)
        else:
            unique = sorted(set(int(i) for i in spectator_ids))
            spectator_ids = unique  # what the hooks receive (an iterator would be spent)
            written = 0
            for start in range(0, len(unique), CHUNK):
                chunk = unique[start : start + CHUNK]
                session.execute(delete(P).where(P.c.spectator_id.in_(chunk)))
                written += _insert_profiles(session, as_of, chunk)
    _set_refreshed_at(session, utcnow())
    # The epoch's row, locked until the commit, also queues concurrent refreshes here: each keeps the
    # profiles as columns (segments.profile_columns) from what the one before it committed.
    advance_epoch(session)
    profile_columns.keep_after_refresh(session, spectator_ids, as_of)
    for hook in _after_refresh:
        hook(session, spectator_ids, as_of, since)
    session.flush()
    # the rewritten pages all-visible (index-only scans of a rule on a region stay index-only)
    sql.vacuum_after_commit(session, P)
    # The rows changed under the ORM's feet: profiles loaded in this session reload when read.
    for instance in list(session.identity_map.values()):
        if isinstance(instance, SpectatorProfile):
            session.expire(instance)
    return written


def _set_refreshed_at(session: Session, when: dt.datetime) -> None:
    setting = session.get(Setting, REFRESHED_AT_SETTING)
    if setting is None:
        session.add(Setting(name=REFRESHED_AT_SETTING, value=when.isoformat()))
    else:
        setting.value = when.isoformat()


def last_refreshed_at(session: Session) -> dt.datetime | None:
    value = session.scalar(select(Setting.value).where(Setting.name == REFRESHED_AT_SETTING))
    try:
        return dt.datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def changed_since(since: dt.datetime) -> Select:
    """SELECT of the spectators whose purchases or consents changed after ``since``: transactions
    of batches created after it, contacts updated after it, consents given or withdrawn after it,
    district-wide opt-outs, postal areas learnt and erasures (:func:`erased_since`) after it."""
    b = ImportBatch.__table__
    k = Contact.__table__
    c = Consent.__table__
    sp = Spectator.__table__
    from_batches = select(T.c.spectator_id).where(T.c.batch_id.in_(select(b.c.id).where(b.c.created_at >= since)))
    from_contacts = select(k.c.spectator_id).where(k.c.updated_at >= since)
    from_consents = (
        select(k.c.spectator_id)
        .select_from(c.join(k, k.c.id == c.c.contact_id))
        .where(or_(c.c.given_at >= since, c.c.withdrawn_at >= since))
    )
    from_opt_outs = select(sp.c.id).where(or_(sp.c.opted_out_at >= since, sp.c.fsa_changed_at >= since))
    return from_batches.union(from_contacts, from_consents, from_opt_outs, erased_since(since))


def erased_since(since: dt.datetime) -> Select:
    """SELECT of the spectators erased on request after ``since``, read from the audit log: an
    erasure deletes their contact records and leaves an earlier opt-out's date as it was, so
    nothing else on their rows says that they changed."""
    return select(cast(AuditEvent.object_id, Integer)).where(
        AuditEvent.action == PERSON_ERASED,
        AuditEvent.object_type == "spectator",
        AuditEvent.object_id.is_not(None),
        AuditEvent.at >= since,
    )


def refresh_changed(session: Session, as_of: dt.date | None = None, full: bool = False) -> tuple[str, int]:
    """What ``pilot profiles refresh`` does: a full rebuild when asked, when never refreshed or
    when the date changed; otherwise the spectators changed since the last refresh.

    :returns: ("full" | "incremental", rows written).
    """
    as_of = as_of or dt.date.today()
    since = last_refreshed_at(session)
    stored = profiles_as_of(session)
    if full or since is None or stored is None or stored != as_of:
        return "full", refresh_profiles(session, None, as_of)
    ids = [row[0] for row in session.execute(changed_since(since))]
    if not ids:
        _set_refreshed_at(session, utcnow())
        session.flush()
        return "incremental", 0
    return "incremental", refresh_profiles(session, ids, as_of, since=since)


def refresh_after_import(session: Session, batch_id: int, as_of: dt.date | None = None) -> int:
    """Hook for the importer: refresh the profiles of the spectators a batch touched.

    A sales batch touches the buyers of its transactions; an unsubscribe batch the contacts of its
    organisation whose consent was withdrawn, or who opted out, since the batch started. When the
    stored profiles describe another date (or there are none yet), this is a full refresh.
    Flushes, never commits.
    """
    batch = session.get(ImportBatch, batch_id)
    if batch is None:
        return 0
    session.flush()
    if batch.kind == "sales":
        ids = select(T.c.spectator_id).where(T.c.batch_id == batch_id).distinct()
    else:
        k = Contact.__table__
        c = Consent.__table__
        sp = Spectator.__table__
        ids = (
            select(k.c.spectator_id)
            .select_from(c.join(k, k.c.id == c.c.contact_id))
            .where(k.c.organisation_id == batch.organisation_id, c.c.withdrawn_at >= batch.created_at)
            .union(select(sp.c.id).where(sp.c.opted_out_at >= batch.created_at))
        )
    as_of = as_of or dt.date.today()
    if profiles_as_of(session) != as_of:
        return refresh_profiles(session, None, as_of)
    return refresh_profiles(session, ids, as_of, since=batch.created_at)
