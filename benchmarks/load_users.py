"""The load test's simulated users: staff, venues and evaluators browsing over HTTP, with their latencies.

:mod:`benchmarks.load` prepares the district and the server, runs these users and checks what they saw.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlencode

import numpy as np

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
HOST = "127.0.0.1"
MAX_REQUESTS_PER_USER = 20_000  # a bound whatever the speed
REQUEST_TIMEOUT = 60
PREVIEW_RULES = [
    {"field": "shows", "op": ">=", "value": 2},
    {
        "all": [
            {"field": "discipline", "op": "any", "value": ["theatre"]},
            {"field": "discipline", "op": "none", "value": ["dance"]},
        ]
    },
    {
        "all": [
            {"field": "lifecycle", "op": "in", "value": ["stale", "lapsed"]},
            {"field": "shows", "op": ">=", "value": 3},
        ]
    },
    {"any": [{"field": "fsa", "op": "starts_with", "value": ["H2"]}, {"field": "spent", "op": ">", "value": 300}]},
    {
        "all": [
            {"field": "subscriber", "op": "is", "value": False},
            {"field": "shows", "op": ">=", "value": 3, "within_days": 548},
        ]
    },
]
INSIGHT_TABLES = ("lifecycle", "regions", "seasonality", "channels", "disciplines")


def log(message: str) -> None:
    print(f"[load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Setup:
    password: str
    staff: list[str]
    evaluators: list[str]
    venues: dict[str, str]  # e-mail → organisation slug
    approvals: dict[str, int]  # organisation slug → approval id (the awaiting campaign)
    awaiting_campaign: int
    experiment: int | None
    import_org: str
    disciplines: list[str]


# --- the simulated users -------------------------------------------------------------------------


@dataclass
class Stats:
    latencies: dict = field(default_factory=lambda: defaultdict(list))
    errors: dict = field(default_factory=lambda: defaultdict(int))
    statuses: dict = field(default_factory=lambda: defaultdict(int))
    decisions_seen: dict = field(default_factory=lambda: defaultdict(int))  # approval id → answers recorded
    decisions_refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float, status: int | None) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)
            self.statuses[status or 0] += 1
            if status is None or not 200 <= status < 400:
                self.errors[kind] += 1


class Browser:
    """One user: its own connection and cookies, the CSRF token of its session."""

    def __init__(self, port: int, stats: Stats):
        self.port = port
        self.stats = stats
        self.cookies: dict[str, str] = {}
        self.conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
        self.token: str | None = None
        self.requests = 0

    def request(
        self, kind: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int | None, dict, bytes]:
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        began = time.perf_counter()
        status, response_headers, data = None, {}, b""
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                status = response.status
                response_headers = {k.lower(): v for k, v in response.getheaders()}
                for raw in response.headers.get_all("Set-Cookie") or []:
                    name, _, rest = raw.partition("=")
                    value = rest.split(";", 1)[0]
                    if "expires=Thu, 01 Jan 1970" in raw or not value:
                        self.cookies.pop(name.strip(), None)
                    else:
                        self.cookies[name.strip()] = value
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self.conn.close()  # a worker closed the kept-alive connection: once more on a new one
                if attempt:
                    log(f"{kind} {path}: {exc!r}")
            except (OSError, http.client.HTTPException) as exc:
                self.conn.close()
                log(f"{kind} {path}: {exc!r}")
                break
        self.requests += 1
        self.stats.record(kind, time.perf_counter() - began, status)
        return status, response_headers, data

    def get(self, kind: str, path: str):
        return self.request(kind, "GET", path)

    def post_form(self, kind: str, path: str, fields: dict):
        return self.request(
            kind, "POST", path, urlencode(fields).encode(), {"Content-Type": "application/x-www-form-urlencoded"}
        )

    def scrape_token(self, html: bytes) -> None:
        match = CSRF.search(html.decode("utf-8", "replace"))
        if match:
            self.token = match.group(1)

    def login(self, email: str, password: str) -> bool:
        status, _h, html = self.get("login", "/login")
        self.scrape_token(html)
        status, headers, _ = self.post_form(
            "login", "/login", {"email": email, "password": password, "csrf_token": self.token or ""}
        )
        ok = status == 302 and not headers.get("location", "").startswith("/login")
        if ok:
            # the token is bound to the session, which the login renewed
            self.scrape_token(self.get("page", "/")[2])
        return ok


def staff_step(b: Browser, rng: random.Random, setup: Setup) -> None:
    choice = rng.random()
    if choice < 0.30:
        path = rng.choice(["/segments/insights"] + [f"/segments/insights/discipline/{d}" for d in setup.disciplines])
        b.get("insights", path)
    elif choice < 0.45:
        b.get("insights_csv", f"/segments/insights/{rng.choice(INSIGHT_TABLES)}.csv")
    elif choice < 0.80:
        if b.token is None or rng.random() < 0.1:
            b.scrape_token(b.get("builder", "/segments/new")[2])
        body = json.dumps({"rule": rng.choice(PREVIEW_RULES)}).encode()
        b.request(
            "preview",
            "POST",
            "/segments/preview",
            body,
            {"Content-Type": "application/json", "X-CSRFToken": b.token or ""},
        )
    elif choice < 0.9 and setup.experiment:
        b.get("report", f"/experiments/{setup.experiment}")
    else:
        b.get("page", rng.choice(["/", "/campaigns/", f"/campaigns/{setup.awaiting_campaign}"]))


def evaluator_step(b: Browser, rng: random.Random, setup: Setup) -> None:
    choice = rng.random()
    if choice < 0.45 and setup.experiment:
        b.get("report", f"/experiments/{setup.experiment}")
    elif choice < 0.65 and setup.experiment:
        b.get("report_csv", f"/experiments/{setup.experiment}/report.csv")
    elif choice < 0.75:
        b.get("page", "/experiments/")
    else:
        b.get("insights", "/segments/insights")


def venue_step(b: Browser, rng: random.Random, setup: Setup, slug: str) -> None:
    approval = setup.approvals[slug]
    choice = rng.random()
    if choice < 0.35:
        status, _h, html = b.get("approval_page", f"/campaigns/approvals/{approval}")
        if status == 200:
            b.scrape_token(html)
    elif choice < 0.70:
        decision = rng.choice(["approve", "decline"])
        fields = {"decision": decision, "csrf_token": b.token or "", "contacted_days": "30"}
        if decision == "approve" and rng.random() < 0.3:
            fields["exclude_subscribers"] = "y"
        if decision == "decline":  # a decline gives its reason
            fields["decline_reason"] = rng.choice(["contact_pressure", "offer", "timing"])
        status, headers, _ = b.post_form("approval_decision", f"/campaigns/approvals/{approval}/decision", fields)
        if status == 302:
            # the answer is confirmed by the flash message on the page the redirect leads to
            status, _h, html = b.get("approval_page", headers.get("location", f"/campaigns/approvals/{approval}"))
            text = html.decode("utf-8", "replace")
            if "flash-success" in text:
                with b.stats.lock:
                    b.stats.decisions_seen[approval] += 1
            else:
                with b.stats.lock:
                    b.stats.decisions_refused += 1
            b.scrape_token(html)
    elif choice < 0.85:
        b.get("insights", f"/segments/insights/organisation/{slug}")
    else:
        b.get("page", rng.choice(["/", "/campaigns/"]))


def simulate(port: int, setup: Setup, users: int, seconds: float, think: float, seed: int, stats: Stats) -> dict:
    roles = []
    venue_emails = sorted(setup.venues)
    for i in range(users):
        slot = i % 5
        if slot in (0, 1):
            roles.append(("staff", setup.staff[i % len(setup.staff)]))
        elif slot in (2, 3) and venue_emails:
            roles.append(("venue", venue_emails[i % len(venue_emails)]))
        else:
            roles.append(("evaluator", setup.evaluators[i % len(setup.evaluators)]))
    deadline = time.monotonic() + seconds
    failures: list[str] = []

    def user(index: int, role: str, email: str) -> None:
        rng = random.Random(seed * 1000 + index)
        b = Browser(port, stats)
        time.sleep(rng.random() * min(2.0, seconds / 10))  # users arrive over the first seconds
        if not b.login(email, setup.password):
            failures.append(f"user {index} ({role}) could not log in")
            return
        while time.monotonic() < deadline and b.requests < MAX_REQUESTS_PER_USER:
            if role == "staff":
                staff_step(b, rng, setup)
            elif role == "venue":
                venue_step(b, rng, setup, setup.venues[email])
            else:
                evaluator_step(b, rng, setup)
            if think:
                time.sleep(rng.random() * think)
        b.conn.close()

    threads = [threading.Thread(target=user, args=(i, r, e), daemon=True) for i, (r, e) in enumerate(roles)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.monotonic()) + REQUEST_TIMEOUT + 5)
    elapsed = time.monotonic() - began
    mix: dict[str, int] = defaultdict(int)
    for role, _e in roles:
        mix[role] += 1
    return {
        "elapsed_s": round(elapsed, 1),
        "users": dict(mix),
        "login_failures": failures,
        "stuck_threads": sum(t.is_alive() for t in threads),
    }


def idle_latencies(port: int, setup: Setup, repeats: int = 3) -> dict:
    """Each kind of request alone, before the load and the import: what a user waits on an idle server."""
    stats = Stats()
    staff, evaluator, venue = Browser(port, stats), Browser(port, stats), Browser(port, stats)
    venue_email = sorted(setup.venues)[0] if setup.venues else None
    if not (staff.login(setup.staff[0], setup.password) and evaluator.login(setup.evaluators[0], setup.password)):
        return {}
    staff.scrape_token(staff.get("builder", "/segments/new")[2])
    for _ in range(repeats):
        staff.get("page", "/")
        staff.get("insights", "/segments/insights")
        staff.get("insights_csv", f"/segments/insights/{INSIGHT_TABLES[0]}.csv")
        for rule in PREVIEW_RULES[:3]:
            staff.request(
                "preview",
                "POST",
                "/segments/preview",
                json.dumps({"rule": rule}).encode(),
                {"Content-Type": "application/json", "X-CSRFToken": staff.token or ""},
            )
        if setup.experiment:
            evaluator.get("report", f"/experiments/{setup.experiment}")
            evaluator.get("report_csv", f"/experiments/{setup.experiment}/report.csv")
    if venue_email and venue.login(venue_email, setup.password):
        for _ in range(repeats):
            venue.get("approval_page", f"/campaigns/approvals/{setup.approvals[setup.venues[venue_email]]}")
    for b in (staff, evaluator, venue):
        b.conn.close()
    return {kind: round(percentile(values, 0.5) * 1000, 1) for kind, values in stats.latencies.items()}


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0 to 1) interpolated linearly between the closest ranks (numpy's default
    method); 0 for no values."""
    return float(np.percentile(values, q * 100)) if values else 0.0


def summarise(stats: Stats, elapsed: float) -> dict:
    kinds = {}
    for kind, values in sorted(stats.latencies.items()):
        kinds[kind] = {
            "requests": len(values),
            "errors": stats.errors.get(kind, 0),
            "p50_ms": round(percentile(values, 0.50) * 1000, 1),
            "p95_ms": round(percentile(values, 0.95) * 1000, 1),
            "p99_ms": round(percentile(values, 0.99) * 1000, 1),
        }
    total = sum(k["requests"] for k in kinds.values())
    return {
        "requests": total,
        "errors": sum(k["errors"] for k in kinds.values()),
        "requests_per_s": round(total / elapsed, 1) if elapsed else 0.0,
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "kinds": kinds,
    }
