"""Offers per arm: each test arm of a campaign may carry its own promotion (offer, message, codes).

The arms stay the campaign's JSON list (``Campaign.arms``); a test arm names its promotion with
an optional ``"promotion_id"``, and an arm without one carries the campaign's promotion. The
campaign's promotion also says where outcomes count for every arm alike (its participating
organisations and target disciplines: ``experiments.outcomes.promotion_scope``), so that the arms
are compared on the same purchases; an arm's promotion gives its offer, message, codes and costs.
"""

from __future__ import annotations

from typing import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import Campaign, Promotion


def arm_promotion_id(arm: dict, default: int | None) -> int | None:
    """The promotion of one arm (``default``, the campaign's, when the arm names none)."""
    value = arm.get("promotion_id")
    return int(value) if value else default


def arm_promotion_ids(arms: Sequence[dict], default: int | None) -> dict[str, int | None]:
    """``{arm name: promotion id}`` of the test arms, in their order (the control carries nothing)."""
    return {a["name"]: arm_promotion_id(a, default) for a in arms if a.get("name") != "control"}


def arm_promotions(session: Session, campaign: Campaign) -> dict[str, Promotion | None]:
    """``{test arm: its promotion}`` of a campaign (None where no promotion is chosen yet)."""
    ids = arm_promotion_ids(campaign.arms or [], campaign.promotion_id)
    wanted = sorted({i for i in ids.values() if i})
    found = {p.id: p for p in session.scalars(select(Promotion).where(Promotion.id.in_(wanted)))} if wanted else {}
    return {arm: found.get(i) if i else None for arm, i in ids.items()}


def unknown_promotions(session: Session, arms: Sequence[dict]) -> list[int]:
    """The promotion ids named by ``arms`` that do not exist."""
    named = sorted({int(a["promotion_id"]) for a in arms if a.get("promotion_id")})
    if not named:
        return []
    known = set(session.scalars(select(Promotion.id).where(Promotion.id.in_(named))))
    return [i for i in named if i not in known]


def has_several_offers(campaign: Campaign) -> bool:
    """True when the test arms do not all carry the campaign's promotion."""
    return any(
        a.get("promotion_id") and int(a["promotion_id"]) != campaign.promotion_id
        for a in campaign.arms or []
        if a.get("name") != "control"
    )


def campaigns_using(session: Session, promotion_id: int) -> list[Campaign]:
    """Campaigns past the draft stage that carry the promotion, as theirs or as one arm's."""
    found = []
    for campaign in session.scalars(select(Campaign).where(Campaign.status != "draft").order_by(Campaign.id)):
        ids = {campaign.promotion_id, *arm_promotion_ids(campaign.arms or [], campaign.promotion_id).values()}
        if promotion_id in ids:
            found.append(campaign)
    return found
