"""Validating rows in batches of columns: sales and unsubscribes, each error with its line and column."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import itertools
from dataclasses import dataclass
from typing import Any

from core.identity import (
    fsa_of,
    identity_basis,
    is_plausible_email,
    is_plausible_postal_code,
    normalise_email,
    normalise_postal_code,
    spectator_key,
)
from core.importing.batches import ColumnRecords
from core.importing.columns import SALES_COLUMNS, UNSUBSCRIBE_COLUMNS, _Header
from core.importing.common import MAX_UNKNOWN_DISCIPLINES, _
from core.importing.result import ImportResult
from core.importing.values import (
    MAX_CAPACITY,
    MAX_DURATION,
    MAX_TICKETS,
    _whole_number,
    category_key,
    channel_key,
    circumstance_key,
    discipline_key,
    is_yes,
    parse_amount,
    parse_datetime,
    parse_duration,
    parse_time,
)
from core.models import utcnow

# --- parsing rows --------------------------------------------------------------------------------

ANONYMOUS = object()


class _Sale:
    __slots__ = (
        "line",
        "key",
        "fsa",
        "last_name",
        "first_name",
        "address",
        "postal_code",
        "email",
        "phone",
        "customer_id",
        "amount",
        "tickets",
        "circumstance",
        "category",
        "channel",
        "promo_code",
        "order_id",
        "purchased_at",
        "show_key",
        "title",
        "company",
        "venue",
        "capacity",
        "duration",
        "discipline",
        "starts_at",
        "newsletter",
        "external_id",
    )


# Column lengths of the models: longer values are errors rather than database failures.
_LIMITS = {
    "last_name": 200,
    "first_name": 200,
    "address": 400,
    "phone": 40,
    "customer_id": 100,
    "show_title": 300,
    "company": 200,
    "venue": 200,
    "promo_code": 60,
    "order_id": 100,
}


_BAD = object()  # a value the fast path does not vouch for: the row goes through the row-by-row parser


CACHE_KEEP = 1 << 12  # entries a cache may carry from one batch to the next


class _Cache(dict):
    """``function`` memoised per distinct argument; ``list(map(cache.__getitem__, values))`` runs at C
    speed on the many repeats of an export (dates, amounts, titles, labels, buyers).

    Between batches :meth:`trim` forgets everything once past ``limit`` entries: the few-valued
    columns (labels, titles, prices) stay memoised for the whole file, the many-valued ones (buyers,
    moments) are memoised within a batch only. Either way a cache holds at most one batch's distinct
    values plus ``limit``, reached on the first batch: memory does not grow with the file."""

    __slots__ = ("function", "limit")

    def __init__(self, function, limit: int = CACHE_KEEP):
        super().__init__()
        self.function, self.limit = function, limit

    def __missing__(self, key):
        value = self[key] = self.function(key)
        return value

    def trim(self) -> None:
        """Forget everything past ``limit`` entries (between batches): memory stays flat."""
        if len(self) > self.limit:
            self.clear()


class _SaleColumns:
    """A batch of good sales, one list per field of :class:`_Sale`, in file order."""

    __slots__ = tuple(name for name in _Sale.__slots__ if name != "line")

    def __len__(self) -> int:
        return len(self.external_id)

    def with_sales(self, good: list[bool], sales: dict[int, "_Sale"]) -> "_SaleColumns":
        """These columns with ``sales`` (batch index → sale) put back in their places."""
        merged, names = _SaleColumns(), self.__slots__
        sources = [iter(getattr(self, name)) for name in names]
        targets = [[] for _name in names]
        for index, ok in enumerate(good):
            if ok:
                for source, target in zip(sources, targets):
                    target.append(next(source))
            elif index in sales:
                for name, target in zip(names, targets):
                    target.append(getattr(sales[index], name))
        for name, target in zip(names, targets):
            setattr(merged, name, target)
        return merged


@dataclass
class _Vouched:
    """What :meth:`_SalesParser.vouch` makes of a batch, before its suspects are parsed."""

    columns: _SaleColumns  # the rows vouched for, in file order
    good: list[bool]  # per record of the batch: vouched for
    suspects: list[int]  # batch indices of the records left to :meth:`_SalesParser.parse`, in order
    anonymous: int  # anonymous sales among the rows vouched for
    unknown: list[str]  # discipline labels of the vouched rows that are not known


@dataclass
class _Parsed:
    bad: list[tuple[int, list[tuple[str, str]]]]  # (index in the batch, problems), in file order
    anonymous: int
    good: Any  # what the writer takes: _SaleColumns, or a list of _Unsubscribe


class _SalesParser:
    """Turns one CSV record into a :class:`_Sale`, ``ANONYMOUS``, or a list of (column, reason)."""

    def __init__(self, header: _Header, organisation_id: int, secret: str, result: ImportResult):
        self.header, self.organisation_id, self.result = header, organisation_id, result
        self.width = len(header.fields)
        # Positions in SALES_COLUMNS order; -1 reads the "" appended to each record.
        self.order = [header.index.get(name, -1) for name in SALES_COLUMNS]
        self.prefix = f"{organisation_id}|"
        # The buyers' keys, the costliest value of a row (an HMAC): kept across batches for repeat
        # buyers, within a bound reached long before a file's size shows.
        self.key_of = functools.lru_cache(maxsize=1 << 13)(functools.partial(spectator_key, secret))
        self.unknown: set[str] = set()  # the labels of result.unknown_disciplines: at most 100
        self.positions = {name: header.index.get(name, -1) for name in SALES_COLUMNS}
        # A sale cannot be dated after the day it is imported (a wrong year or a show date in the
        # purchase column): it would count as an outcome that has not happened yet.
        self.latest = dt.datetime.combine(utcnow().date() + dt.timedelta(days=1), dt.time.min)
        self.memo = self._memo()

    def _column(self, name: str) -> str:
        return self.header.column(name)

    def _too_long(self, values: dict[str, str]) -> list[tuple[str, str]]:
        return [
            (self._column(name), _("Too long: at most %(n)d characters.", n=limit))
            for name, limit in _LIMITS.items()
            if len(values[name]) > limit
        ]

    def _date(self, name: str, text: str, problems: list) -> tuple[dt.datetime, bool] | None:
        if not text:
            problems.append((self._column(name), _("A value is required.")))
            return None
        parsed = parse_datetime(text)
        if parsed is None:
            problems.append(
                (self._column(name), _("Not a date (expected 2017-03-15, 2017-03-15 19:30 or 15/03/2017)."))
            )
        return parsed

    def parse(self, cells: list[str], line: int):
        if problems := _width_problems(cells, self.width):
            return problems
        cells.append("")
        (
            last_name,
            first_name,
            address,
            raw_postal,
            raw_email,
            phone,
            amount_text,
            tickets_text,
            circumstance_text,
            purchased_text,
            show_date_text,
            title,
            show_time_text,
            company,
            venue,
            capacity_text,
            duration_text,
            discipline_text,
            category_text,
            channel_text,
            newsletter_text,
            promo_code,
            order_id,
            customer_id,
        ) = [cells[i].strip() for i in self.order]
        cells.pop()
        problems: list[tuple[str, str]] = []
        if (
            len(last_name) > 200
            or len(first_name) > 200
            or len(address) > 400
            or len(phone) > 40
            or len(customer_id) > 100
            or len(title) > 300
            or len(company) > 200
            or len(venue) > 200
            or len(promo_code) > 60
            or len(order_id) > 100
        ):
            problems.extend(
                self._too_long(
                    {
                        "last_name": last_name,
                        "first_name": first_name,
                        "address": address,
                        "phone": phone,
                        "customer_id": customer_id,
                        "show_title": title,
                        "company": company,
                        "venue": venue,
                        "promo_code": promo_code,
                        "order_id": order_id,
                    }
                )
            )
        amount = parse_amount(amount_text) if amount_text else None
        if amount is None or amount >= 10**11:
            if not amount_text:
                reason = _("A value is required.")
            elif amount is None:
                reason = _("Not an amount (expected e.g. 12,50 $ or 12.50).")
            else:
                reason = _("The amount is too large.")
            problems.append((self._column("amount"), reason))
        tickets = _whole_number(tickets_text)
        if tickets is None or not 0 < tickets <= MAX_TICKETS:
            problems.append(
                (
                    self._column("tickets"),
                    _("A value is required.")
                    if not tickets_text
                    else _("The number of tickets must be a positive whole number."),
                )
            )
        purchased = self._date("purchased_at", purchased_text, problems)
        if purchased is not None and purchased[0] >= self.latest:
            problems.append(
                (
                    self._column("purchased_at"),
                    _("The purchase date is after the day of the import: a sale cannot be dated in the future."),
                )
            )
        shown = self._date("show_date", show_date_text, problems)
        starts_at = None
        if shown is not None:
            starts_at, has_time = shown
            if show_time_text and not has_time:
                clock = parse_time(show_time_text)
                if clock is None:
                    problems.append((self._column("show_time"), _("Not a time (expected 19:30).")))
                else:
                    starts_at = dt.datetime.combine(starts_at.date(), clock)
        if not title:
            problems.append((self._column("show_title"), _("A value is required.")))
        capacity = duration = None
        if capacity_text:
            capacity = _whole_number(capacity_text)
            if capacity is None or not 0 < capacity <= MAX_CAPACITY:
                problems.append((self._column("capacity"), _("The capacity must be a positive whole number.")))
        if duration_text:
            duration = parse_duration(duration_text)
            if duration is None or duration > MAX_DURATION:
                problems.append((self._column("duration"), _("Not a duration in minutes.")))
        email = normalise_email(raw_email) if raw_email else None
        if raw_email and not is_plausible_email(email):
            problems.append((self._column("email"), email_problem()))
        postal = normalise_postal_code(raw_postal) if raw_postal else None
        if postal and not is_plausible_postal_code(postal):
            problems.append((self._column("postal_code"), postal_code_problem()))
        if problems:
            return problems

        basis = identity_basis(email, last_name, first_name, postal, phone)
        if basis is None:
            return ANONYMOUS
        sale = _Sale()
        sale.line = line
        sale.key = key = self.key_of(basis)
        sale.fsa = fsa_of(postal)
        sale.email, sale.postal_code = email, postal
        sale.last_name, sale.first_name = last_name or None, first_name or None
        sale.address, sale.phone, sale.customer_id = address or None, phone or None, customer_id or None
        sale.title = title = _squeeze(title)
        sale.company, sale.venue = _squeeze(company) or None, _squeeze(venue) or None
        sale.promo_code, sale.order_id = promo_code or None, order_id or None
        sale.amount, sale.tickets, sale.capacity, sale.duration = amount, tickets, capacity, duration
        sale.purchased_at = purchased_at = purchased[0]
        sale.starts_at = starts_at
        discipline, known = discipline_key(discipline_text)
        if not known:
            self._unknown(discipline_text)
        sale.discipline = discipline
        sale.circumstance = circumstance = circumstance_key(circumstance_text)
        sale.category = category = category_key(category_text)
        sale.channel = channel = channel_key(channel_text)
        sale.newsletter = is_yes(newsletter_text)
        sale.show_key = show_key = show_natural_key(title, starts_at, sale.venue)
        sale.external_id = hashlib.sha256(
            f"{self.prefix}{key}|{show_key}|{purchased_at.isoformat()}|{amount}|"
            f"{tickets}|{circumstance}|{category}|{channel or ''}|{promo_code}|"
            f"{order_id}".encode()
        ).hexdigest()
        return sale

    def _unknown(self, label: str) -> None:
        """Report an unknown discipline label once, the first MAX_UNKNOWN_DISCIPLINES of them."""
        if label not in self.unknown and len(self.unknown) < MAX_UNKNOWN_DISCIPLINES:
            self.unknown.add(label)
            self.result.unknown_disciplines.append(label)

    def parse_batch(self, records: list[tuple[list[str], int]]) -> "_Parsed":
        """``records``: (cells, line) in file order → bad rows (with their problems), the count of
        anonymous sales, and the good rows as columns (:class:`_SaleColumns`)."""
        return self.settle(self.vouch(records), records)

    # The fast path: a whole batch at once, column by column, each distinct text parsed once. A row
    # it cannot vouch for goes through :meth:`parse`, which words the errors; both agree on the rest.
    # It needs no application (no message is worded): core.importing.ahead runs it in a process of
    # its own, a batch ahead of the writer.
    def vouch(self, records: "ColumnRecords | list[tuple[list[str], int]]") -> "_Vouched":
        """The rows of ``records`` the fast path vouches for, as columns, and the indices of the others
        (the suspects), which :meth:`settle` parses one by one."""
        width, memo = self.width, self.memo
        n = len(records)
        suspect: set[int] = set()
        if isinstance(records, ColumnRecords):  # read column by column, each record as wide as the header
            transposed = records.columns
        else:
            transposed = _transposed(records, width, suspect)
        blank = [""] * n

        def column(name: str) -> list[str]:
            position = self.positions[name]
            return list(map(str.strip, transposed[position])) if position >= 0 else blank

        text = {name: column(name) for name in SALES_COLUMNS}
        transposed = None  # the batch's cells live on in ``records`` only

        def converted(kind: str, values) -> list:
            """One column through its memoised converter; rows whose cell failed become suspects."""
            out = list(map(memo[kind].__getitem__, values))
            if _BAD in out:
                suspect.update(i for i, v in enumerate(out) if v is _BAD)
            return out

        for name, limit in _LIMITS.items():
            values = text[name]
            if values is not blank and max(map(len, values), default=0) > limit:
                suspect.update(i for i, v in enumerate(values) if len(v) > limit)
        amounts = converted("amount", text["amount"])
        tickets = converted("tickets", text["tickets"])
        purchased = converted("purchased", text["purchased_at"])
        starts = converted("starts", zip(text["show_date"], text["show_time"]))
        titles = converted("title", text["show_title"])
        capacities = converted("capacity", text["capacity"])
        durations = converted("duration", text["duration"])
        emails = converted("email", text["email"])
        postals = converted("postal", text["postal_code"])
        last_names, first_names, phones = text["last_name"], text["first_name"], text["phone"]
        keys = list(map(memo["identity"].__getitem__, zip(emails, last_names, first_names, postals, phones)))

        anonymous = keys.count(None)
        good = [key is not None for key in keys]
        suspects = sorted(suspect)
        for index in suspects:
            if keys[index] is None:
                anonymous -= 1
            good[index] = False
        keep = None if all(good) else good

        def pick(values: list) -> list:
            return values if keep is None else list(itertools.compress(values, good))

        columns = _SaleColumns()
        columns.key = pick(keys)
        columns.fsa = list(map(memo["fsa"].__getitem__, pick(postals)))
        columns.email, columns.postal_code = pick(emails), pick(postals)
        columns.last_name = [v or None for v in pick(last_names)]
        columns.first_name = [v or None for v in pick(first_names)]
        columns.address = [v or None for v in pick(text["address"])]
        columns.phone = [v or None for v in pick(phones)]
        columns.customer_id = [v or None for v in pick(text["customer_id"])]
        columns.title = pick(titles)
        columns.company = list(map(memo["squeeze"].__getitem__, pick(text["company"])))
        columns.venue = venues = list(map(memo["squeeze"].__getitem__, pick(text["venue"])))
        promo_codes, order_ids = pick(text["promo_code"]), pick(text["order_id"])
        columns.promo_code = [v or None for v in promo_codes]
        columns.order_id = [v or None for v in order_ids]
        columns.amount, columns.tickets = pick(amounts), pick(tickets)
        columns.capacity, columns.duration = pick(capacities), pick(durations)
        columns.purchased_at = pick(purchased)
        columns.starts_at = pick(starts)
        disciplines = pick(text["discipline"])
        unknown = [label for label in dict.fromkeys(disciplines) if not discipline_key(label)[1]]
        columns.discipline = list(map(memo["discipline"].__getitem__, disciplines))
        columns.circumstance = list(map(memo["circumstance"].__getitem__, pick(text["circumstance"])))
        columns.category = list(map(memo["category"].__getitem__, pick(text["category"])))
        columns.channel = list(map(memo["channel"].__getitem__, pick(text["channel"])))
        columns.newsletter = list(map(memo["newsletter"].__getitem__, pick(text["newsletter"])))
        columns.show_key = list(map(memo["show"].__getitem__, zip(columns.title, columns.starts_at, venues)))
        iso = memo["iso"].__getitem__
        prefix, sha256 = self.prefix, hashlib.sha256
        columns.external_id = [
            sha256(
                f"{prefix}{key}|{show_key}|{iso(purchased_at)}|{amount}|{tickets}|{circumstance}|{category}|"
                f"{channel or ''}|{promo_code}|{order_id}".encode()
            ).hexdigest()
            for key, show_key, purchased_at, amount, tickets, circumstance, category, channel, promo_code, order_id in zip(
                columns.key,
                columns.show_key,
                columns.purchased_at,
                columns.amount,
                columns.tickets,
                columns.circumstance,
                columns.category,
                columns.channel,
                promo_codes,
                order_ids,
            )
        ]
        for cache in memo.values():
            cache.trim()
        return _Vouched(columns, good, suspects, anonymous, unknown)

    def settle(self, vouched: "_Vouched", records) -> "_Parsed":
        """A vouched batch made whole: each suspect of ``records`` (by batch index → (cells, line))
        parsed by :meth:`parse`, bad or anonymous, or put back among the good rows (``parse`` has the
        last word), and the unknown disciplines reported."""
        bad: list[tuple[int, list[tuple[str, str]]]] = []
        anonymous = vouched.anonymous
        rescued: dict[int, _Sale] = {}
        for index in vouched.suspects:
            cells, line = records[index]
            parsed = self.parse(cells, line)
            if isinstance(parsed, list):
                bad.append((index, parsed))
            elif parsed is ANONYMOUS:
                anonymous += 1
            else:  # not expected: the checks of vouch are the same as parse's
                rescued[index] = parsed
        for label in vouched.unknown:
            self._unknown(label)
        columns = vouched.columns
        if rescued:
            columns = columns.with_sales(vouched.good, rescued)
        return _Parsed(bad, anonymous, columns)

    def _memo(self) -> dict[str, "_Cache"]:
        def amount(text: str):
            value = parse_amount(text) if text else None
            return _BAD if value is None or value >= 10**11 else value

        def tickets(text: str):
            value = _whole_number(text)
            return _BAD if value is None or not 0 < value <= MAX_TICKETS else value

        def purchased(text: str):
            parsed = parse_datetime(text) if text else None
            return _BAD if parsed is None or parsed[0] >= self.latest else parsed[0]

        def starts(pair: tuple[str, str]):
            date_text, time_text = pair
            parsed = parse_datetime(date_text) if date_text else None
            if parsed is None:
                return _BAD
            moment, has_time = parsed
            if time_text and not has_time:
                clock = parse_time(time_text)
                if clock is None:
                    return _BAD
                moment = dt.datetime.combine(moment.date(), clock)
            return moment

        def title(text: str):
            return _squeeze(text) if text else _BAD

        def capacity(text: str):
            if not text:
                return None
            value = _whole_number(text)
            return _BAD if value is None or not 0 < value <= MAX_CAPACITY else value

        def duration(text: str):
            if not text:
                return None
            value = parse_duration(text)
            return _BAD if value is None or value > MAX_DURATION else value

        def email(text: str):
            if not text:
                return None
            value = normalise_email(text)
            return value if is_plausible_email(value) else _BAD

        def postal(text: str):
            value = normalise_postal_code(text) if text else None
            return _BAD if value and not is_plausible_postal_code(value) else value

        def identity(values: tuple):
            if values[0] is _BAD or values[3] is _BAD:  # a suspect row: parse() decides
                return _BAD
            basis = identity_basis(*values)
            return None if basis is None else self.key_of(basis)

        return {
            "amount": _Cache(amount),
            "tickets": _Cache(tickets),
            "purchased": _Cache(purchased),
            "starts": _Cache(starts),
            "title": _Cache(title),
            "capacity": _Cache(capacity),
            "email": _Cache(email),
            "postal": _Cache(postal),
            "identity": _Cache(identity),
            "fsa": _Cache(fsa_of),
            "duration": _Cache(duration),
            "squeeze": _Cache(lambda t: _squeeze(t) or None),
            "discipline": _Cache(lambda t: discipline_key(t)[0]),
            "circumstance": _Cache(circumstance_key),
            "category": _Cache(category_key),
            "channel": _Cache(channel_key),
            "newsletter": _Cache(is_yes),
            "show": _Cache(lambda args: show_natural_key(*args)),
            "iso": _Cache(dt.datetime.isoformat),
        }


def _transposed(records: list[tuple[list[str], int]], width: int, suspect: set[int]) -> list:
    """The cells of ``records`` column by column; a record of another width than the header's (but
    for blank trailing cells) becomes a suspect, blank here."""
    rows = []
    for index, (cells, _line) in enumerate(records):
        if len(cells) != width:
            if len(cells) > width and not any(c.strip() for c in cells[width:]):
                cells = cells[:width]
            else:
                suspect.add(index)
                cells = [""] * width
        rows.append(cells)
    return list(zip(*rows)) if rows else [()] * width


def _width_problems(cells: list[str], width: int) -> list[tuple[str, str]]:
    """The problem of a row whose number of fields is not the header's (empty trailing fields
    past the header's width are no problem); none when it fits."""
    if len(cells) == width or (len(cells) > width and not any(c.strip() for c in cells[width:])):
        return []
    return [
        ("", _("This row has %(found)d fields where the header has %(expected)d.", found=len(cells), expected=width))
    ]


def email_problem() -> str:
    """Why an e-mail cell is refused (its value is not repeated: the summary is shown to staff too)."""
    return _("Not a valid e-mail address: expected one @ and a domain, such as name@example.ca.")


def postal_code_problem() -> str:
    """Why a postal-code cell is refused (its value is not repeated, as for e-mails)."""
    return _(
        "Not a postal code: expected a Canadian code such as H2X 1Y4, or a foreign one "
        "such as 10001, 75001 or SW1A 1AA."
    )


def _squeeze(text: str) -> str:
    return " ".join(text.split()) if "  " in text or "\t" in text or "\n" in text else text


@functools.lru_cache(maxsize=1 << 12)
def show_natural_key(title: str, starts_at: dt.datetime, venue: str | None) -> str:
    """sha256 of title | starts_at | venue (case and spacing ignored): one row per performance."""
    venue_name = " ".join((venue or "").split()).casefold()
    text = f"{' '.join(title.split()).casefold()}|{starts_at.isoformat(sep=' ')}|{venue_name}"
    return hashlib.sha256(text.encode()).hexdigest()


class _Unsubscribe:
    __slots__ = ("line", "email", "key", "customer_id", "at")


class _UnsubscribeParser:
    """Turns one CSV record of an unsubscribe list into an :class:`_Unsubscribe` or a list of (column, reason)."""

    def __init__(self, header: _Header, secret: str, now: dt.datetime):
        self.header, self.secret, self.now = header, secret, now
        self.width = len(header.fields)
        self.positions = {name: header.index.get(name) for name in UNSUBSCRIBE_COLUMNS}

    def parse(self, cells: list[str], line: int):
        if problems := _width_problems(cells, self.width):
            return problems

        def get(name: str) -> str:
            position = self.positions[name]
            return cells[position].strip() if position is not None else ""

        problems = []
        row = _Unsubscribe()
        row.line = line
        raw_email, row.customer_id = get("email"), get("customer_id") or None
        row.email = normalise_email(raw_email)
        if raw_email and not is_plausible_email(row.email):
            problems.append((self.header.column("email"), email_problem()))
        if row.customer_id and len(row.customer_id) > 100:
            problems.append((self.header.column("customer_id"), _("Too long: at most %(n)d characters.", n=100)))
        if not raw_email and not row.customer_id:
            name = "email" if self.positions["email"] is not None else "customer_id"
            problems.append((self.header.column(name), _("An e-mail address or a customer ID is required.")))
        text = get("date")
        row.at = self.now
        if text:
            parsed = parse_datetime(text)
            if parsed is None:
                problems.append(
                    (self.header.column("date"), _("Not a date (expected 2017-03-15, 2017-03-15 19:30 or 15/03/2017)."))
                )
            else:
                row.at = parsed[0]
        if problems:
            return problems
        basis = identity_basis(row.email, None, None, None, None)
        row.key = spectator_key(self.secret, basis) if basis else None
        return row

    def parse_batch(self, records: list[tuple[list[str], int]]) -> _Parsed:
        bad, good = [], []
        for index, (cells, line) in enumerate(records):
            parsed = self.parse(cells, line)
            if isinstance(parsed, list):
                bad.append((index, parsed))
            else:
                good.append(parsed)
        return _Parsed(bad, 0, good)
