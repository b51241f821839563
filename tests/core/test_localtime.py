"""Times are stored in UTC and shown and typed in Montreal time, across daylight saving time."""

import datetime as dt

from sqlalchemy import select

from campaigns.models import Campaign
from core.localtime import local_day, local_iso, local_time, to_local, to_utc
from core.models import utcnow
from tests.campaigns.helpers import build_district


def test_winter_and_summer_offsets():
    assert to_local(dt.datetime(2026, 1, 15, 17, 0)) == dt.datetime(2026, 1, 15, 12, 0)  # EST, UTC-5
    assert to_local(dt.datetime(2026, 7, 15, 17, 0)) == dt.datetime(2026, 7, 15, 13, 0)  # EDT, UTC-4


def test_a_typed_time_round_trips_through_storage():
    for typed in (
        dt.datetime(2026, 3, 8, 1, 30),
        dt.datetime(2026, 3, 8, 3, 30),
        dt.datetime(2026, 11, 1, 0, 59),
        dt.datetime(2026, 12, 24, 20, 0),
    ):
        assert to_local(to_utc(typed)) == typed


def test_the_day_shown_is_montreal_s_day():
    late_evening = dt.datetime(2026, 12, 6, 3, 30)  # 22:30 on the 5th in Montreal
    assert local_day(late_evening) == "2026-12-05"
    assert local_time(late_evening) == "2026-12-05 22:30"
    assert local_iso("2026-12-06T03:30:00", day=True) == "2026-12-05"
    assert local_day(dt.date(2026, 12, 6)) == "2026-12-06"  # a plain date is not moved
    assert local_time(None) == local_day(None) == local_iso(None) == "—"


def test_the_campaign_form_is_typed_and_shown_in_montreal_time(session, login_as):
    district = build_district(session, per_org=12, shared=4)
    session.commit()
    staff = login_as("staff")
    day = utcnow().date() + dt.timedelta(days=10)
    deadline, launch = f"{day}T12:00", f"{day + dt.timedelta(days=4)}T09:30"
    campaign = district.campaign
    form = {
        "name": campaign.name,
        "objective": "cross_sell",
        "segment": str(district.segment.id),
        "promotion": str(campaign.promotion_id),
        "control_share": "20",
        "arm_a_share": "80",
        "window_days": "30",
        "primary_metric": "conversion",
        "approval_deadline": deadline,
        "planned_launch_at": launch,
    }
    response = staff.post(f"/campaigns/{campaign.id}/edit", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)[:1500]
    session.expire_all()
    stored = session.scalar(select(Campaign).where(Campaign.id == campaign.id))
    assert stored.approval_deadline == to_utc(dt.datetime.fromisoformat(deadline))
    assert stored.approval_deadline.hour in (16, 17)  # noon in Montreal is 16:00 or 17:00 UTC
    edit = staff.get(f"/campaigns/{campaign.id}/edit").get_data(as_text=True)
    assert f'value="{deadline}"' in edit and f'value="{launch}"' in edit
    shown = staff.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert f"{day} 12:00" in shown
