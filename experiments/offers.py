"""The offer of each arm of an experiment, frozen at launch: its promotion, codes and message.

``Experiment.arms`` keeps, for each test arm, the ``promotion_id``, ``code_strategy`` and
``shared_code`` it was launched with (``campaigns.offers`` chose the promotion). An experiment
launched before arms carried their own promotion has none of these keys: every test arm then
carries the campaign's promotion and the experiment's code rule.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import case, func, literal, select
from sqlalchemy.orm import Session

from campaigns.models import Campaign, Promotion
from campaigns.offers import arm_promotions as campaign_arm_promotions
from experiments.models import Experiment, Recipient


@dataclass(frozen=True)
class ArmOffer:
    """One test arm's offer: the promotion it carries and how its codes work."""

    arm: str
    promotion_id: int | None
    code_strategy: str
    shared_code: str | None

    @property
    def unique_codes(self) -> bool:
        return self.code_strategy == "unique"


def frozen_arms(session: Session, campaign: Campaign) -> list[dict]:
    """The arms to store on a new experiment: name and share, and for each test arm its promotion
    and code rule (the arm's promotion, else the campaign's)."""
    promotions = campaign_arm_promotions(session, campaign)
    arms = []
    for a in campaign.arms:
        entry = {"name": a["name"], "share": int(a["share"])}
        promotion = promotions.get(a["name"])
        if a["name"] != "control" and promotion is not None:
            entry.update(
                {
                    "promotion_id": promotion.id,
                    "code_strategy": promotion.code_strategy,
                    "shared_code": promotion.shared_code if promotion.code_strategy == "shared" else None,
                }
            )
        arms.append(entry)
    return arms


def arm_offers(experiment: Experiment) -> dict[str, ArmOffer]:
    """``{test arm: ArmOffer}`` as frozen at launch."""
    campaign_promotion = experiment.campaign.promotion_id if experiment.campaign is not None else None
    out = {}
    for a in experiment.arms:
        if a["name"] == "control":
            continue
        strategy = a.get("code_strategy") or experiment.code_strategy
        shared = a.get("shared_code") if "code_strategy" in a else experiment.shared_code
        out[a["name"]] = ArmOffer(
            a["name"], a.get("promotion_id") or campaign_promotion, strategy, shared if strategy == "shared" else None
        )
    return out


def arm_promotions(session: Session, experiment: Experiment) -> dict[str, Promotion | None]:
    """``{test arm: its Promotion}`` of an experiment."""
    offers = arm_offers(experiment)
    ids = sorted({o.promotion_id for o in offers.values() if o.promotion_id})
    found = {p.id: p for p in session.scalars(select(Promotion).where(Promotion.id.in_(ids)))} if ids else {}
    return {arm: found.get(o.promotion_id) if o.promotion_id else None for arm, o in offers.items()}


def several_offers(experiment: Experiment) -> bool:
    """True when the test arms carry different promotions."""
    return len({o.promotion_id for o in arm_offers(experiment).values()}) > 1


def any_unique_codes(experiment: Experiment) -> bool:
    return any(o.unique_codes for o in arm_offers(experiment).values())


def mixed_codes(experiment: Experiment) -> bool:
    """True when the test arms do not share one code rule (the experiment's): redemptions are then
    matched per recipient against their own arm's code (:func:`recipient_code`)."""
    rules = {(o.code_strategy, o.shared_code) for o in arm_offers(experiment).values()}
    return rules != {
        (experiment.code_strategy, experiment.shared_code if experiment.code_strategy == "shared" else None)
    }


def recipient_code(experiment: Experiment):
    """SQL: the code a recipient redeems: their own unique code, else their arm's shared code; a
    control recipient is matched against the first shared code of the test arms (using it is
    contamination, reported as such)."""
    shared = {o.arm: o.shared_code for o in arm_offers(experiment).values() if o.shared_code}
    if not shared:
        return Recipient.code
    control_code = next(iter(shared.values()))
    return func.coalesce(Recipient.code, case(shared, value=Recipient.arm, else_=literal(control_code)))


def redemption_period(promotions: list[Promotion | None], launched_at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[from, until) in which any arm's code can be redeemed: the launch (or the earliest validity,
    if later) to the end of the latest validity."""
    valid = [p for p in promotions if p is not None]
    if not valid:
        return launched_at, launched_at
    start = max(launched_at, min(dt.datetime.combine(p.valid_from, dt.time()) for p in valid))
    end = max(dt.datetime.combine(p.valid_until, dt.time()) for p in valid) + dt.timedelta(days=1)
    return start, end
