"""The experiments pages: launch with confirmation, contact lists per venue, reports and exports, power."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from html import unescape

import pytest
from sqlalchemy import delete, event, func, select

from campaigns.eligibility import eligible_count, eligible_select
from campaigns.funnel_store import kept_funnel
from campaigns.services import make_arms
from core.models import AuditEvent, Consent, Contact, Organisation, Setting, utcnow
from core.privacy import advance_epoch, data_epoch, fill_cell_keys
from core.scheduler import run_job
from experiments import outcomes, power_report, report_words, services
from experiments.models import ContactList, Experiment, Recipient, ReportSnapshot
from experiments.outcomes import promotion_scope
from segments.models import SnapshotMember
from tests.campaigns.helpers import new_purchase
from tests.experiments.test_reports import add_sale, set_k, simulate
from tests.experiments.test_services import ready_campaign


@pytest.fixture
def ready(session):
    # built five days ago: an experiment launched then has five days of sales that have happened
    # (a sale dated after "now" never counts)
    district = ready_campaign(
        session, per_org=20, shared=4, arms=make_arms(50, [50]), now=utcnow() - dt.timedelta(days=5)
    )
    session.commit()
    return district


@pytest.fixture
def launched(session, ready):
    set_k(session, 2)
    experiment = services.launch(session, ready.campaign, now=ready.now, seed=31)
    simulate(session, experiment, {"control": 0.2, "A": 0.5}, seed=4)
    session.commit()
    return ready, experiment


def events(session, action):
    session.expire_all()
    return session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()


def test_launch_needs_the_confirmation_box(session, ready, login_as):
    staff = login_as("staff")
    url = f"/experiments/campaign/{ready.campaign.id}/launch?lang=en"
    page = staff.get(url)
    assert page.status_code == 200 and b"irreversible" in page.data
    refused = staff.post(url, data={})
    assert refused.status_code == 200 and b"Tick the box to confirm." in refused.data
    assert session.scalar(select(func.count()).select_from(Experiment)) == 0
    done = staff.post(url, data={"confirm": "y"})
    assert done.status_code == 302
    experiment = session.scalar(select(Experiment))
    assert done.headers["Location"].endswith(f"/experiments/{experiment.id}")
    session.refresh(ready.campaign)
    assert ready.campaign.status == "launched"
    assert events(session, "experiment.launch")[0].actor == staff.user.email
    # launching again is refused; the page says so
    again = staff.post(url, data={"confirm": "y"}, follow_redirects=True)
    assert b"already launched" in again.data
    assert session.scalar(select(func.count()).select_from(Experiment)) == 1


def test_a_refused_launch_says_why_and_writes_nothing(session, ready, login_as):
    staff = login_as("staff")
    ready.campaign.promotion_id = None  # no promotion: services.launch refuses
    session.commit()
    url = f"/experiments/campaign/{ready.campaign.id}/launch?lang=en"
    answer = staff.post(url, data={"confirm": "y"})
    assert answer.status_code == 302 and answer.headers["Location"].endswith(f"/campaigns/{ready.campaign.id}")
    page = staff.get(answer.headers["Location"] + "?lang=en")
    assert b"Launch refused: The campaign has no promotion." in page.data
    assert session.scalar(select(func.count()).select_from(Experiment)) == 0
    assert events(session, "experiment.launch") == []
    session.refresh(ready.campaign)
    assert ready.campaign.status == "ready"


def test_only_staff_launch(ready, login_as):
    for role in ("evaluator", "venue"):
        client = login_as(role, ready.orgs[0]) if role == "venue" else login_as(role)
        assert (
            client.post(f"/experiments/campaign/{ready.campaign.id}/launch", data={"confirm": "y"}).status_code == 403
        )


def _read_csv(response) -> list[dict]:
    text = response.data.decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def test_venue_downloads_its_own_test_arm_only(session, launched, login_as):
    district, experiment = launched
    alpha, beta, _gamma = district.orgs
    own = session.scalars(
        select(Recipient).where(Recipient.experiment_id == experiment.id, Recipient.organisation_id == alpha.id)
    ).all()
    test_recipients = {r.spectator_id: r for r in own if r.arm == "A"}
    control = {r.spectator_id for r in own if r.arm == "control"}
    # a contact whose name would be a spreadsheet formula
    first = sorted(test_recipients)[0]
    contact = session.scalar(select(Contact).where(Contact.organisation_id == alpha.id, Contact.spectator_id == first))
    contact.last_name = '=HYPERLINK("http://evil.example","x")'
    session.commit()

    venue = login_as("venue", alpha)
    response = venue.get(f"/experiments/{experiment.id}/contacts.csv?lang=en")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert f"contacts-{experiment.id}-{alpha.slug}" in response.headers["Content-Disposition"]
    rows = _read_csv(response)
    assert len(rows) == len(test_recipients)
    emails = {r["E-mail"] for r in rows}
    expected = {district.contacts[(0, s)].email for s in test_recipients}
    assert emails == expected
    assert not emails & {district.contacts[(0, s)].email for s in control}
    assert {r["Arm"] for r in rows} == {"A"}
    assert {r["Promotion code"] for r in rows} == {r.code for r in test_recipients.values()}
    assert {r["Message"] for r in rows} == {district.campaign.promotion.message_fr}
    assert any(r["Last name"] == '\'=HYPERLINK("http://evil.example","x")' for r in rows)
    # logged, counted
    (event,) = events(session, "contact_list.download")
    assert event.organisation_id == alpha.id and event.details["rows"] == len(rows)
    assert session.scalar(select(ContactList.downloads).where(ContactList.organisation_id == alpha.id)) == 1


def test_contact_lists_are_for_their_venue_only(session, launched, login_as, make_org):
    district, experiment = launched
    url = f"/experiments/{experiment.id}/contacts.csv"
    outsider = login_as("venue", make_org("ailleurs"))
    assert outsider.get(url).status_code == 404
    assert outsider.get(f"/experiments/{experiment.id + 99}/contacts.csv").status_code == 404
    for role in ("staff", "admin", "evaluator"):
        assert login_as(role).get(url).status_code == 403
    assert not events(session, "contact_list.download")


def test_an_expired_list_is_refused_with_a_message(session, launched, login_as):
    district, experiment = launched
    alpha = district.orgs[0]
    item = session.scalar(select(ContactList).where(ContactList.organisation_id == alpha.id))
    item.expires_at = utcnow() - dt.timedelta(minutes=1)
    session.commit()
    venue = login_as("venue", alpha)
    response = venue.get(f"/experiments/{experiment.id}/contacts.csv?lang=en", follow_redirects=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert b"can no longer be downloaded" in response.data
    assert len(events(session, "contact_list.refused")) == 1


def test_unsubscribed_since_launch_are_left_out(session, launched, login_as):
    district, experiment = launched
    alpha = district.orgs[0]
    test_ids = list(
        session.scalars(
            select(Recipient.spectator_id).where(
                Recipient.experiment_id == experiment.id, Recipient.organisation_id == alpha.id, Recipient.arm == "A"
            )
        )
    )
    contact = district.contacts[(0, test_ids[0])]
    for consent in contact.consents:
        consent.withdrawn_at = utcnow()
    session.merge(contact)
    session.commit()
    rows = _read_csv(login_as("venue", alpha).get(f"/experiments/{experiment.id}/contacts.csv?lang=en"))
    assert len(rows) == len(test_ids) - 1 and contact.email not in {r["E-mail"] for r in rows}


def test_evaluator_reads_and_exports_the_report(session, launched, login_as):
    district, experiment = launched
    evaluator = login_as("evaluator")
    page = evaluator.get(f"/experiments/{experiment.id}?lang=en")
    assert page.status_code == 200
    html = page.data.decode()
    assert "Lift report" in html and "interim" in html
    assert "always-valid" in html  # the window is still open
    assert "<svg" in html and "Cumulative conversion by arm" in html
    assert not [value for value in district.personal if value in html]
    # the report was matched and stored on first reading
    assert session.scalar(select(func.count()).select_from(ReportSnapshot)) == 1
    data = json.loads(evaluator.get(f"/experiments/{experiment.id}/report.json").data)
    assert data["experiment_id"] == experiment.id and {o["organisation_id"] for o in data["organisations"]} == {
        o.id for o in district.orgs
    }
    rows = list(
        csv.reader(io.StringIO(evaluator.get(f"/experiments/{experiment.id}/report.csv").data.decode("utf-8-sig")))
    )
    assert rows[0][0] == "section" and any(r[0] == "metric" and r[2] == "conversion" for r in rows)
    # matching again is for staff: not offered to the evaluator, refused if posted anyway
    assert f"/experiments/{experiment.id}/refresh" not in html
    assert evaluator.post(f"/experiments/{experiment.id}/refresh", data={}).status_code == 403
    assert session.scalar(select(func.count()).select_from(ReportSnapshot).where(ReportSnapshot.kind == "manual")) == 0
    refreshed = login_as("staff").post(f"/experiments/{experiment.id}/refresh", data={})
    assert refreshed.status_code == 302
    assert session.scalar(select(func.count()).select_from(ReportSnapshot).where(ReportSnapshot.kind == "manual")) == 1


def test_french_report_reads_in_french(launched, login_as):
    district, experiment = launched
    html = login_as("evaluator").get(f"/experiments/{experiment.id}?lang=fr").data.decode()
    assert "Rapport de lift" in html or "Rapport d" in html
    assert "Groupe témoin" in html or "groupe témoin" in html


def test_venue_sees_its_own_breakdown_row_only(session, launched, login_as, make_org):
    district, experiment = launched
    alpha, beta, gamma = district.orgs
    html = login_as("venue", alpha).get(f"/experiments/{experiment.id}?lang=en").data.decode()
    breakdown = html.split('id="h-orgs"')[1].split("</section>")[0]
    assert alpha.name in breakdown and beta.name not in breakdown and gamma.name not in breakdown
    data = json.loads(login_as("venue", beta).get(f"/experiments/{experiment.id}/report.json").data)
    assert [o["organisation_id"] for o in data["organisations"]] == [beta.id]
    outsider = login_as("venue", make_org("hors-campagne"))
    assert outsider.get(f"/experiments/{experiment.id}").status_code == 404
    assert outsider.get(f"/experiments/{experiment.id}/report.json").status_code == 404


def pending_notice(html: str) -> str:
    return html.split('id="matching-pending"', 1)[1].split("</p>", 1)[0]


def test_sales_imported_since_are_matched_by_the_job_and_the_page_says_so_meanwhile(session, launched, login_as, app):
    """A page never matches outcomes (at a district's scale that takes longer than a page may): it
    shows the last report with a notice until the ``experiments.after_imports`` job has matched."""
    district, experiment = launched
    evaluator, staff = login_as("evaluator"), login_as("staff")
    url = f"/experiments/{experiment.id}"
    first = evaluator.get(f"{url}?lang=en").data.decode()
    assert 'id="matching-pending"' not in first
    session.expire_all()
    before = session.get(Experiment, experiment.id).outcomes_watermark
    simulate(session, experiment, {"control": 0.0, "A": 0.3}, seed=9)
    session.commit()

    html = evaluator.get(f"{url}?lang=en").data.decode()
    notice = plain(pending_notice(html))
    assert "Sales were imported since this report was computed" in notice and "every minute" in notice
    assert "Match outcomes again" not in notice  # evaluators cannot ask for it
    assert "Match outcomes again" in plain(pending_notice(staff.get(f"{url}?lang=en").data.decode()))
    french = plain(pending_notice(evaluator.get(f"{url}?lang=fr").data.decode()))
    assert "Des ventes ont été importées depuis le calcul de ce rapport" in french and "chaque minute" in french
    assert json.loads(evaluator.get(f"{url}/report.json").data)["outcomes_pending"] is True
    session.expire_all()
    assert session.get(Experiment, experiment.id).outcomes_watermark == before  # reading matched nothing
    assert session.scalar(select(func.count()).select_from(ReportSnapshot)) == 1

    run = run_job(app, "experiments.after_imports", runner="cli")
    assert run.status == "success" and run.summary["refreshed"] == 1
    session.expire_all()
    assert session.get(Experiment, experiment.id).outcomes_watermark > before
    assert session.scalar(select(func.count()).select_from(ReportSnapshot)) == 2
    assert 'id="matching-pending"' not in evaluator.get(f"{url}?lang=en").data.decode()
    assert json.loads(evaluator.get(f"{url}/report.json").data)["outcomes_pending"] is False
    assert not outcomes.is_stale(session, session.get(Experiment, experiment.id))


def test_index_pages(session, launched, login_as):
    district, experiment = launched
    staff_page = login_as("staff").get("/experiments/?lang=en").data.decode()
    assert district.campaign.name in staff_page and "Lift report" in staff_page
    venue = login_as("venue", district.orgs[0])
    assert "Download the list (CSV)" in venue.get("/experiments/?lang=en").data.decode()
    assert "Contact lists to download" in venue.get("/?lang=en").data.decode()
    evaluator = login_as("evaluator")
    assert evaluator.get("/experiments/").status_code == 200
    assert "Latest lift reports" in evaluator.get("/?lang=en").data.decode()


def give_baseline_buyers(session, ready) -> None:
    """Enough buyers in the power page's baseline window that its noisy count never falls under k
    (the page would then, rightly, refuse to compute a baseline and show no sizes)."""
    for spectator in ready.spectators[:40]:
        new_purchase(session, ready.orgs[0], spectator, ready.now - dt.timedelta(days=12))


def test_power_page_before_launch(app, session, ready, login_as):
    # the page's working, not its noise (tested below): with σ = 14 on a district of 64 the noisy
    # baseline is, rightly, anything from "too few buyers" to a rate near 100 %
    app.config["PRIVACY_SIGMA"] = 1e-6
    set_k(session, 2)
    session.commit()
    staff = login_as("staff")
    page = staff.get(f"/experiments/campaign/{ready.campaign.id}/power?lang=en&alpha=0.05&power=0.8&target=20")
    assert page.status_code == 200
    html = page.data.decode()
    assert "Minimum detectable effect" in html and "recipients are needed" in html
    # the page says which estimate its sensitivity is for (CUPED with history, the raw one without)
    assert "Variance removed by the adjustment for the period before (CUPED)" in html
    assert "that of the estimate the report's verdict will read" in html
    french = staff.get(f"/experiments/campaign/{ready.campaign.id}/power?lang=fr").data.decode()
    assert "Variance retirée par l'ajustement sur la période précédente (CUPED)" in french.replace("&#39;", "'")
    assert (
        staff.get(f"/experiments/campaign/{ready.campaign.id}")
        .headers["Location"]
        .endswith(f"/experiments/campaign/{ready.campaign.id}/power")
    )
    assert login_as("venue", ready.orgs[0]).get(f"/experiments/campaign/{ready.campaign.id}/power").status_code == 403
    # the campaign page links to it
    detail = staff.get(f"/campaigns/{ready.campaign.id}?lang=en").data.decode()
    assert f"/experiments/campaign/{ready.campaign.id}/power" in detail


def test_the_launched_campaign_s_power_page_reads_the_baseline_the_job_kept_before_the_launch(session, ready, login_as):
    """Issue 18: the ``experiments.power`` job keeps the default baseline window of a ready campaign
    before any page asks; the launch changes none of the window's state, so the launched campaign's
    page reads that window (equal to a fresh count) instead of counting it in its first request."""
    set_k(session, 2)
    give_baseline_buyers(session, ready)
    session.commit()
    campaign = ready.campaign
    assert power_report.refresh_windows(session, commit=session.commit)["counted"] == 1
    staff = login_as("staff")
    assert staff.post(f"/experiments/campaign/{campaign.id}/launch", data={"confirm": "y"}).status_code == 302
    session.expire_all()
    assert campaign.status == "launched"
    kept = _kept_power_windows(session, campaign)
    _kind, start, end = power_report.baseline_window(session, campaign, None, utcnow())
    (window,) = kept.values()
    assert (window["start"], window["end"], window["epoch"]) == (
        start.isoformat(),
        end.isoformat(),
        data_epoch(session),
    )
    population, _source = power_report._population(session, campaign)
    fresh = power_report.window_values(session, population, start, end, promotion_scope(session, campaign.promotion))
    assert [window["sums"], window["sets"]] == list(fresh)
    assert power_report.refresh_windows(session, commit=session.commit)["counted"] == 0  # still the launched one's
    assert staff.get(f"/experiments/campaign/{campaign.id}/power?lang=en").status_code == 200
    assert _kept_power_windows(session, campaign) == kept  # read, not counted again


def _kept_power_windows(session, campaign) -> dict:
    """The power windows kept for ``campaign``: their values by name."""
    session.expire_all()
    named = session.scalars(select(Setting).where(Setting.name.startswith(f"power:{campaign.id}:"))).all()
    return {setting.name: json.loads(setting.value) for setting in named}


def test_the_power_page_reads_the_eligible_count_kept_with_the_funnel(app, session, ready):
    """Issue 18: the power page's sizes are the eligible count of the campaign's funnel, kept at
    approval time (campaigns.funnel_store), not a count over every candidate in its request; after a
    data change it reads the kept figure until the ``campaigns.funnels`` job counts it again."""
    set_k(session, 2)
    give_baseline_buyers(session, ready)
    session.commit()
    campaign = ready.campaign
    before = eligible_count(session, campaign)
    assert power_report.power_report(session, campaign)["n_total"] == before > 0
    session.commit()
    chosen = eligible_select(session, campaign).subquery()
    leaving = session.scalars(select(chosen.c.spectator_id).order_by(chosen.c.spectator_id)).first()
    contacts = select(Contact.id).where(Contact.spectator_id == leaving)
    session.execute(delete(Consent).where(Consent.contact_id.in_(contacts)))  # no longer reachable
    advance_epoch(session)
    session.commit()
    assert eligible_count(session, campaign) == before - 1
    assert power_report.power_report(session, campaign)["n_total"] == before  # the kept figure
    assert run_job(app, "campaigns.funnels", runner="cli").status == "success"
    session.expire_all()
    assert power_report.power_report(session, campaign)["n_total"] == before - 1


def test_the_power_page_reads_the_segment_size_kept_with_the_funnel(session, ready):
    """Issue 18: the power page's population is the funnel's segment total, kept with the funnel
    (the campaign page's figure), not a count over the snapshot's members in each request: half a
    million rows at a million spectators; the kept funnel is read once."""
    set_k(session, 2)
    give_baseline_buyers(session, ready)
    session.commit()
    campaign = ready.campaign
    power_report.power_report(session, campaign)  # keeps the funnel and the baseline window
    session.commit()
    counts: list[str] = []
    funnel_reads: list[str] = []

    def listen(_conn, _cursor, statement, parameters, *_args):
        if "snapshot_member" in statement and "count(" in statement.lower():
            counts.append(statement)
        if "FROM setting" in statement and f"funnel:{campaign.id}" in str(parameters):
            funnel_reads.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", listen)
    try:
        result = power_report.power_report(session, campaign)
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    members = session.scalar(
        select(func.count()).select_from(SnapshotMember).where(SnapshotMember.snapshot_id == campaign.snapshot_id)
    )
    assert counts == [] and result["population"] == kept_funnel(session, campaign).total.segment == members > 0
    # the population, the eligible total and the name keying their noise: one reading of the kept funnel
    assert len(funnel_reads) == 1


def test_power_page_mde_and_sizes_use_the_protected_eligible_count(session, ready, login_as):
    """The power page's readers own none of the pooled data: its sizes, and the minimum detectable
    effects computed from them, come from the noisy eligible figure the campaign page shows, so
    that an MDE cannot be inverted to the exact count. The operator's report keeps it exact."""
    set_k(session, 2)
    give_baseline_buyers(session, ready)
    fill_cell_keys(session, "test-district-secret")  # as the importer does for every new spectator
    session.commit()
    exact = power_report.power_report(session, ready.campaign)["n_total"]
    session.commit()  # the report keeps its baseline window (experiments.power_report.kept_window)
    assert exact == 3 * 20 + 4
    staff = login_as("staff")
    html = staff.get(f"/experiments/campaign/{ready.campaign.id}/power?lang=en").data.decode()
    detail = staff.get(f"/campaigns/{ready.campaign.id}?lang=en").data.decode()
    funnel = detail[detail.index("Eligibility funnel") :]
    total = re.findall(r'<td class="num">(.*?)</td>', re.search(r"<tfoot>(.*?)</tfoot>", funnel, re.S).group(1))
    shown = int(re.sub(r"<[^>]+>|,", "", total[4]))
    sizes = re.search(r"Planned sizes: ([0-9,]+) in the test arm, ([0-9,]+) in the control group", html)
    assert sizes and (int(sizes.group(1)), int(sizes.group(2))) == (int(shown * 0.5), int(shown * 0.5))
    assert f"Sizes</th><td>{shown} ·" in html
    assert "Minimum detectable effect" in html


# --- p-values, matching again, the final report, launch day --------------------------------------


def plain(html: str) -> str:
    """The text of a page or of a piece of one, spaces normalised (no-break and narrow ones too)."""
    text = unescape(re.sub(r"<[^>]+>", " ", html)).replace("\u00a0", " ").replace("\u202f", " ")
    return re.sub(r"\s+", " ", text)


def section(html: str, heading_id: str) -> str:
    return html.split(f'id="{heading_id}"', 1)[1].split("</section>", 1)[0]


@pytest.fixture
def finished(session):
    """A campaign launched 60 days ago with a strong effect: its 30-day window is over."""
    set_k(session, 2)
    past = utcnow().replace(microsecond=0) - dt.timedelta(days=60)
    district = ready_campaign(session, per_org=40, shared=6, now=past, arms=make_arms(50, [50]))
    experiment = services.launch(session, district.campaign, now=past, seed=17)
    simulate(session, experiment, {"control": 0.05, "A": 0.6}, seed=2)
    session.commit()
    return district, experiment


def test_an_organisation_with_too_few_recipients_in_an_arm_reads_too_few(session, finished, login_as):
    """An organisation whose control or test arm holds fewer than two recipients has no comparison
    (``experiments.report_tables``: only ``error`` "too_few", no means): its row says so. The demo's
    report showed an error page for it (Ballet Saint-Urbain: no control recipient)."""
    from experiments import reports

    district, experiment = finished
    outcomes.match_outcomes(session, experiment)
    snapshot = reports.refresh_report(session, experiment)
    data = json.loads(json.dumps(snapshot.data, default=str))
    first = data["organisations"][0]
    # the row experiments.report_tables writes for such an arm, as stored
    first["comparisons"] = [{"arm": "A", "hidden": False, "p_value": None, "p_bh": None, "error": "too_few"}]
    snapshot.data = data
    session.commit()
    for lang, words in (("en", "too few recipients to estimate"), ("fr", "trop peu")):
        response = login_as("evaluator").get(f"/experiments/{experiment.id}?lang={lang}")
        assert response.status_code == 200
        row = plain(section(response.data.decode(), "h-orgs"))
        assert first["name"] in row and words in row.lower()


@pytest.mark.parametrize("lang, below, usual", [("en", "p < 0.001", "p = 0.042"), ("fr", "p < 0,001", "p = 0,042")])
def test_p_value_formats(app, lang, below, usual):
    with app.test_request_context(f"/?lang={lang}"):
        assert plain(report_words.fmt_p_equals(0.0004)) == below
        assert plain(report_words.fmt_p_equals(1e-300)) == below
        assert plain(report_words.fmt_p_equals(0.0421)) == usual
        assert plain(report_words.fmt_p_equals(0.001)) == usual.replace("042", "001")  # 0.001 itself is not below
        assert plain(report_words.fmt_p_equals(None)) == "p = —"
        assert plain(report_words.fmt_p(0.0004)) == below[2:]  # alone in a table cell: "< 0.001"
        assert plain(report_words.fmt_p_equals(0.0004, "always-valid p")) == "always-valid " + below


@pytest.mark.parametrize(
    "lang, below, excludes",
    [
        ("en", "p < 0.001", "The interval excludes zero (p < 0.001)"),
        ("fr", "p < 0,001", "L'intervalle exclut zéro (p < 0,001)"),
    ],
)
def test_a_tiny_p_value_reads_p_less_than_everywhere(session, finished, login_as, lang, below, excludes):
    district, experiment = finished
    evaluator = login_as("evaluator")
    html = evaluator.get(f"/experiments/{experiment.id}?lang={lang}").data.decode()
    text = plain(html)
    assert excludes in plain(section(html, "h-headline"))
    assert "= <" not in text and "=  <" not in text
    # the table cell under its "p" heading: the value alone
    metrics = plain(section(html, "h-metrics"))
    assert below[2:] in metrics and "= <" not in metrics
    # the CSV keeps the raw number
    rows = list(
        csv.DictReader(io.StringIO(evaluator.get(f"/experiments/{experiment.id}/report.csv").data.decode("utf-8-sig")))
    )
    conversion = next(r for r in rows if r["section"] == "metric" and r["metric"] == "conversion")
    assert 0 < float(conversion["p_value"]) < 0.001


def test_only_staff_match_outcomes_again(session, launched, login_as):
    district, experiment = launched
    url = f"/experiments/{experiment.id}/refresh"
    for client in (login_as("evaluator"), login_as("venue", district.orgs[0])):
        page = client.get(f"/experiments/{experiment.id}?lang=en")
        assert page.status_code == 200
        assert url not in page.data.decode() and "Match outcomes again" not in page.data.decode()
        assert client.post(url, data={}).status_code == 403
    assert session.scalar(select(func.count()).select_from(ReportSnapshot).where(ReportSnapshot.kind == "manual")) == 0
    for role in ("staff", "admin"):
        client = login_as(role)
        assert url in client.get(f"/experiments/{experiment.id}?lang=en").data.decode()
        done = client.post(url, data={}, follow_redirects=True)
        assert done.status_code == 200 and "Outcomes matched again and report refreshed." in plain(done.data.decode())
    assert session.scalar(select(func.count()).select_from(ReportSnapshot).where(ReportSnapshot.kind == "manual")) == 2


def test_the_final_report_is_frozen_at_close(session, finished, login_as):
    district, experiment = finished
    closing = experiment.window_end + dt.timedelta(days=services.DEFAULT_CLOSE_AFTER_DAYS)
    assert services.advance(session, experiment, now=experiment.window_end) == "measuring"
    assert services.advance(session, experiment, now=closing) == "closed"
    session.commit()
    (final,) = session.scalars(select(ReportSnapshot).where(ReportSnapshot.experiment_id == experiment.id)).all()
    assert final.kind == "final" and final.data["status"] == "closed" and not final.data["interim"]
    frozen = json.loads(json.dumps(final.data, default=str))

    staff, evaluator = login_as("staff"), login_as("evaluator")
    url = f"/experiments/{experiment.id}/refresh"
    html = staff.get(f"/experiments/{experiment.id}?lang=en").data.decode()
    assert "Final report, frozen when the campaign closed on" in plain(html) and url not in html
    # a late export arrives after the close: neither matching again nor reading changes the report
    simulate(session, experiment, {"control": 0.9, "A": 0.0}, seed=5)
    session.commit()
    refused = staff.post(url, data={}, follow_redirects=True)
    assert refused.status_code == 200
    assert "This campaign is closed: its final report was frozen at closing" in plain(refused.data.decode())
    # a closed campaign's late sales are never matched: nothing is pending
    assert json.loads(evaluator.get(f"/experiments/{experiment.id}/report.json").data) == {
        **frozen,
        "outcomes_pending": False,
    }
    assert "Rapport final, figé à la fermeture" in plain(
        evaluator.get(f"/experiments/{experiment.id}?lang=fr").data.decode()
    )
    session.expire_all()
    snapshots = session.scalars(select(ReportSnapshot).where(ReportSnapshot.experiment_id == experiment.id)).all()
    assert [s.id for s in snapshots] == [final.id] and snapshots[0].data == final.data
    assert session.get(Experiment, experiment.id).outcomes_at == closing  # not matched again


def test_launch_day_report_explains_that_no_sale_is_imported_yet(session, ready, login_as, app):
    set_k(session, 2)
    session.commit()
    staff = login_as("staff")
    launched = staff.post(
        f"/experiments/campaign/{ready.campaign.id}/launch?lang=en", data={"confirm": "y"}, follow_redirects=True
    )
    # the launch stores a first report; the purchases are matched by the job, not in the launch's request
    assert "being matched for the first time" in plain(pending_notice(launched.data.decode()))
    assert run_job(app, "experiments.after_imports", runner="cli").summary["refreshed"] == 1
    experiment = session.scalar(select(Experiment))
    html = staff.get(f"/experiments/{experiment.id}?lang=en").data.decode()
    assert 'id="matching-pending"' not in html
    waiting = plain(section(html, "h-waiting"))
    assert "No sales after the launch imported yet" in waiting
    assert "the latest sale imported from them dates from" in waiting
    assert "every minute" in waiting and "every day at 04:15" in waiting  # when the next matching runs
    assert "imports a ticketing export covering the days since the launch" in waiting  # what to do
    assert 'href="/imports"' in section(html, "h-waiting")  # staff may import
    # no table of zeros; the design stays: group sizes, planned sensitivity, sample-ratio check
    for gone in ('id="h-metrics"', 'id="h-uptake"', 'id="h-orgs"', 'id="h-interim"', "cumulative-conversion"):
        assert gone not in html
    headline = plain(section(html, "h-headline"))
    assert "No result yet" in headline and "No effect detected" not in headline
    assert "Test arm A (50%)" in headline and "Sensitivity planned from the pre-launch period" in headline
    assert "Arm sizes are consistent with the planned shares" in plain(section(html, "h-health"))

    evaluator = login_as("evaluator")
    french = evaluator.get(f"/experiments/{experiment.id}?lang=fr").data.decode()
    waiting = plain(section(french, "h-waiting"))
    assert "Aucune vente postérieure au lancement importée pour l'instant" in waiting
    assert "chaque minute" in waiting and "chaque jour à 04:15" in waiting
    assert 'href="/imports"' not in section(french, "h-waiting")  # evaluators do not import

    # the first sale after the launch is imported: the figures replace the explanation
    recipient = session.scalar(
        select(Recipient).where(Recipient.experiment_id == experiment.id, Recipient.arm == "A").limit(1)
    )
    add_sale(session, recipient, experiment.launched_at, 4000)  # at the launch: one later has not happened yet
    session.commit()
    assert run_job(app, "experiments.after_imports", runner="cli").summary["refreshed"] == 1
    html = evaluator.get(f"/experiments/{experiment.id}?lang=en").data.decode()
    assert 'id="h-waiting"' not in html and 'id="h-metrics"' in html
    assert "No result yet" not in plain(section(html, "h-headline"))
    # the other participating organisations have imported nothing since the launch: the page names them
    warning = plain(html.split('id="silent-organisations">', 1)[1].split("</p>", 1)[0])
    others = [o.name for o in experiment.campaign.promotion.organisations if o.id != recipient.organisation_id]
    assert others and all(name in warning for name in others)
    assert session.get(Organisation, recipient.organisation_id).name not in warning
    assert "dilutes the measured lift" in warning


@pytest.mark.parametrize("locale, expected", [("en", "No clear effect ("), ("fr", "Pas d'effet net (")])
def test_the_headline_says_no_clear_effect_when_interval_and_test_disagree(app, locale, expected):
    # the verdict of 10/200 against 167/2000 (reports._verdict): the interval excludes 0, p does not
    headline = {
        "metric": "conversion",
        "arm": "A",
        "arm_mean": 0.0835,
        "control_mean": 0.05,
        "abs_lift": 0.0335,
        "abs_ci": [0.00095, 0.06605],
        "rel_lift": 0.67,
        "p_value": 0.0968,
        "verdict": "none",
    }
    report = {"alpha": 0.05, "window_days": 30, "days_elapsed": 40, "interim": False, "headline": [headline]}
    with app.test_request_context(f"/?lang={locale}"):
        (sentence,) = report_words.headline_sentences(report)
    assert expected in sentence and "0.097" in sentence.replace(",", ".")
    assert "contains zero" not in sentence and "contient zéro" not in sentence
