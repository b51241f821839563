"""The attacker reads the lift report (page, CSV, JSON) with a staff or evaluator login and tries to
recover a hidden count, or one recipient's outcome, from the shown cells and totals: it must fail."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from html import unescape
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import select

from campaigns import services as campaign_services
from campaigns.services import make_arms
from core.models import utcnow
from experiments import outcomes, services
from experiments.models import Outcome, Recipient, ReportSnapshot
from tests.campaigns.helpers import (
    new_campaign,
    new_contact,
    new_org,
    new_promotion,
    new_purchase,
    new_segment,
    new_spectator,
)
from tests.core.test_privacy import published_bounds
from tests.experiments.test_reports import set_k, simulate

K = 10
# one organisation sends a handful of recipients: alone under k in its column, its count and its
# buyers are what "arm total minus the shown organisations" used to give away
SCENARIOS = {
    "small_organisation": (
        {"Grande Salle": 70, "Salle Moyenne": 45, "Studio Est": 30, "Cabaret Minuscule": 3},
        make_arms(50, [50]),
    ),
    # a small arm: "recipients minus the other arms" gave it away
    "small_arm": ({"Grande Salle": 70, "Salle Moyenne": 45, "Studio Est": 30}, make_arms(48, [48, 4])),
}


def _launched(session, sizes: dict[str, int], arms) -> tuple:
    now = utcnow() - dt.timedelta(days=40)
    orgs, spectators = [], []
    for index, (name, size) in enumerate(sizes.items()):
        org = new_org(session, f"attaque-{index}", name)
        orgs.append(org)
        for n in range(size):
            email = f"cible{index}x{n}@exemple.qc.ca"
            spectator = new_spectator(session, email)
            spectators.append(spectator)
            new_contact(
                session,
                org,
                spectator,
                email=email,
                consents=[{"basis": "express", "given_at": now - dt.timedelta(days=400)}],
            )
            new_purchase(session, org, spectator, now - dt.timedelta(days=30 + n % 40))
    segment, snapshot = new_segment(
        session, [s.id for s in spectators], rule={"field": "orders", "op": ">=", "value": 1}
    )
    promotion = new_promotion(
        session, [o.id for o in orgs], valid_from=now.date(), valid_until=now.date() + dt.timedelta(days=90)
    )
    campaign = new_campaign(session, segment, promotion, now=now, arms=arms)
    campaign_services.submit_for_approval(session, campaign, snapshot=snapshot, now=now)
    for approval in campaign.approvals:
        campaign_services.decide_approval(session, approval, "approve", now=now)
    campaign_services.mark_ready(session, campaign, now=now)
    experiment = services.launch(session, campaign, now=now, seed=11)
    simulate(session, experiment, {arm["name"]: 0.25 if arm["name"] == "control" else 0.5 for arm in arms}, seed=3)
    outcomes.match_outcomes(session, experiment)
    set_k(session, K)
    session.commit()
    return orgs, experiment


def _truth(session, experiment, orgs) -> tuple[dict, dict]:
    """(recipients, buyers) per (organisation id, arm) as held in the database."""
    n, buyers = {}, {}
    for org_id, arm in session.execute(
        select(Recipient.organisation_id, Recipient.arm).where(Recipient.experiment_id == experiment.id)
    ):
        n[(org_id, arm)] = n.get((org_id, arm), 0) + 1
    for org_id, arm, converted in session.execute(
        select(Outcome.organisation_id, Outcome.arm, Outcome.converted).where(Outcome.experiment_id == experiment.id)
    ):
        buyers[(org_id, arm)] = buyers.get((org_id, arm), 0) + int(converted)
    return n, buyers


def _published(report: dict) -> tuple[list, list, SimpleNamespace, SimpleNamespace]:
    """The two tables a reader can rebuild from the JSON: recipients and buyers per organisation
    (rows) and arm (columns), each with its column totals and grand total as published."""
    arms = [a["name"] for a in report["arms"]]
    orgs = [o["organisation_id"] for o in report["organisations"]]
    n_cells = [[o["n"].get(a) for a in arms] for o in report["organisations"]]
    n_columns = [a["n"] for a in report["arms"]]
    overall = {c["arm"]: c for c in report["comparisons"] if c["metric"] == "conversion"}

    def bought(mean, size):
        return None if mean is None or size is None else round(mean * size)

    b_columns = [
        bought(overall.get(a, {}).get("arm_mean"), n_columns[i])
        if a != "control"
        else bought(
            next((c.get("control_mean") for c in overall.values() if c.get("control_mean") is not None), None),
            n_columns[i],
        )
        for i, a in enumerate(arms)
    ]
    b_cells = []
    for o, row in zip(report["organisations"], n_cells):
        by_arm = {c["arm"]: c for c in o["comparisons"]}
        cells = []
        for i, a in enumerate(arms):
            if a == "control":
                mean = next((c.get("control_mean") for c in by_arm.values() if c.get("control_mean") is not None), None)
            else:
                mean = by_arm.get(a, {}).get("arm_mean")
            cells.append(bought(mean, row[i]))
        b_cells.append(cells)
    recipients = SimpleNamespace(cells=n_cells, row_totals=None, column_totals=n_columns, total=report["recipients"])
    buyers = SimpleNamespace(cells=b_cells, row_totals=None, column_totals=b_columns, total=None)
    return arms, orgs, recipients, buyers


def _bounds(table) -> dict:
    try:
        return published_bounds(table, lowest=1)  # the reader knows that 0 is shown: hidden means 1 or more
    except AssertionError:
        return published_bounds(table, lowest=0)


def balanced_accuracy(truth: list[bool], guess: list[bool]) -> float:
    """Mean of the true-positive and true-negative rates (0.5 by chance or by a constant guess)."""
    rates = []
    for label in (True, False):
        picked = [g == label for t, g in zip(truth, guess) if t == label]
        if picked:
            rates.append(sum(picked) / len(picked))
    return sum(rates) / len(rates) if rates else 0.5


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_report_sums_recover_no_hidden_cell_and_no_recipient_outcome(session, login_as, scenario):
    orgs, experiment = _launched(session, *SCENARIOS[scenario])
    n_true, buyers_true = _truth(session, experiment, orgs)
    evaluator = login_as("evaluator")
    report = json.loads(evaluator.get(f"/experiments/{experiment.id}/report.json").data)
    assert json.loads(login_as("staff").get(f"/experiments/{experiment.id}/report.json").data) == report
    arms, org_ids, recipients, buyers = _published(report)
    hidden = [(r, c) for r, row in enumerate(recipients.cells) for c, v in enumerate(row) if v is None]
    assert hidden, "the district has cells under k: something must be hidden"
    # every shown figure is exact
    for r, org_id in enumerate(org_ids):
        for c, arm in enumerate(arms):
            if recipients.cells[r][c] is not None:
                assert recipients.cells[r][c] == n_true.get((org_id, arm), 0)
            if buyers.cells[r][c] is not None:
                assert buyers.cells[r][c] == buyers_true.get((org_id, arm), 0)

    # attack 1: row and column totals minus shown cells (linear programming over everything published)
    recovered = []
    for name, table in (("recipients", recipients), ("buyers", buyers)):
        for (kind, r, c), (low, high) in _bounds(table).items():
            if kind in ("cell", "column") and high - low < 1 - 1e-6:
                recovered.append((name, kind, r, c, low))
    assert not recovered, f"hidden figures recovered exactly from the report's sums: {recovered}"

    # attack 2: one recipient's outcome. In a hidden cell whose size and buyers the sums pin down,
    # 0 buyers (or all) says what each recipient did; elsewhere the reader guesses the majority.
    n_bounds, b_bounds = _bounds(recipients), _bounds(buyers)
    truth, guess = [], []
    for r, c in hidden:
        size = n_true.get((org_ids[r], arms[c]), 0)
        bought = buyers_true.get((org_ids[r], arms[c]), 0)
        n_lo, n_hi = n_bounds.get(("cell", r, c), (0, np.inf))
        b_lo, b_hi = b_bounds.get(("cell", r, c), (0, np.inf))
        pinned = n_hi - n_lo < 1 and b_hi - b_lo < 1
        rate = b_lo / n_lo if pinned and n_lo else 0.0
        truth += [True] * bought + [False] * (size - bought)
        guess += [rate >= 0.5] * size
    accuracy = balanced_accuracy(truth, guess)
    print(
        f"report sums ({scenario}): hidden figures recovered {len(recovered)}, one recipient's outcome "
        f"{accuracy:.3f} over {len(truth)} recipients of hidden cells"
    )
    assert accuracy <= 0.65, f"one recipient's outcome read from the sums (balanced accuracy {accuracy:.2f})"

    # attack 3: the stratified estimates leave out an organisation where an arm has 0 or 1
    # recipient: naming one whose count is hidden says it is 1; their recipients add hidden cells
    for c in report["comparisons"]:
        stratified = c.get("stratified") or {}
        columns = (arms.index("control"), arms.index(c["arm"]))
        named = [org_ids.index(int(label)) for label in stratified.get("left_out_strata") or []]
        for r in named:
            assert all(recipients.cells[r][col] is not None for col in columns), "a hidden count named as 0 or 1"
        if stratified.get("left_out") is not None:
            assert stratified["left_out"] == sum(recipients.cells[r][col] for r in named for col in columns)
    assert report["health"]["left_out"] in (None, 0) or report["health"]["left_out"] >= K

    # the same cells hidden on the CSV and on the page (which is also the print view)
    rows = list(
        csv.DictReader(io.StringIO(evaluator.get(f"/experiments/{experiment.id}/report.csv").data.decode("utf-8-sig")))
    )
    slugs = {o["organisation_id"]: o["slug"] for o in report["organisations"]}
    names = {o["organisation_id"]: o["name"] for o in report["organisations"]}
    html = unescape(evaluator.get(f"/experiments/{experiment.id}?lang=en").data.decode())
    for r, org_id in enumerate(org_ids):
        for c, arm in enumerate(arms):
            if arm == "control":
                continue
            shown_c, shown_a = (
                recipients.cells[r][0 if arms[0] == "control" else arms.index("control")],
                recipients.cells[r][c],
            )
            line = next(
                row
                for row in rows
                if row["section"] == "organisation" and row["organisation"] == slugs[org_id] and row["arm"] == arm
            )
            assert (line["n_control"] or None) == (str(shown_c) if shown_c is not None else None)
            assert (line["n_arm"] or None) == (str(shown_a) if shown_a is not None else None)
            if shown_c is None or shown_a is None:
                assert not line["arm_mean"] and not line["control_mean"], "a hidden cell's rate is hidden too"
            cell = re.search(re.escape(names[org_id]) + r"</th><td>[^(<]*\(([^)]*) / ([^)]*)\)", html)
            assert cell, "the page shows the organisation's row"
    for r, org_id in enumerate(org_ids):
        shown = re.findall(re.escape(names[org_id]) + r"</th><td>[^(<]*\(([^)]*) / ([^)]*)\)", html)
        control = recipients.cells[r][arms.index("control")]
        for (page_c, page_a), arm in zip(shown, [a for a in arms if a != "control"]):
            assert page_c.replace(",", "") == ("<k" if control is None else str(control))
            value = recipients.cells[r][arms.index(arm)]
            assert page_a.replace(",", "") == ("<k" if value is None else str(value))
    # the arms as the page lists them
    for a in report["arms"]:
        if a["n"] is None:
            assert report["recipients"] is None or sum(1 for b in report["arms"] if b["n"] is None) >= 2


def test_a_report_stored_before_secondary_suppression_is_rebuilt_before_anyone_reads_it(session, login_as):
    orgs, experiment = _launched(session, *SCENARIOS["small_organisation"])
    evaluator = login_as("evaluator")
    fresh = json.loads(evaluator.get(f"/experiments/{experiment.id}/report.json").data)
    snapshot = session.scalars(select(ReportSnapshot).where(ReportSnapshot.experiment_id == experiment.id)).one()
    old = dict(snapshot.data)
    old["version"] = 1
    for org in old["organisations"]:  # version 1 showed every count of k or more
        org["n"] = {arm: 20 for arm in org["n"]}
    snapshot.data = old
    session.commit()
    again = json.loads(evaluator.get(f"/experiments/{experiment.id}/report.json").data)
    assert again["version"] == fresh["version"] > 1
    assert again["organisations"] == fresh["organisations"] and again["recipients"] == fresh["recipients"]
