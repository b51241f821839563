"""Promotions: the district offer a campaign attaches, checked and audited (operations flush)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Sequence

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns import offers
from campaigns.common import CampaignError, actor_id, audit_as
from campaigns.models import CODE_STRATEGIES, OFFER_KINDS, Promotion
from core.models import DISCIPLINES, Organisation, Show

# A shared code (the same for every recipient); unique codes are drawn at launch by experiments.assignment.
SHARED_CODE = re.compile(r"^[A-Z0-9][A-Z0-9-]{2,38}[A-Z0-9]$")


# --- promotions ---------------------------------------------------------------------------------


def _check_promotion(fields: dict) -> None:
    kind = fields["offer_kind"]
    if kind not in OFFER_KINDS:
        raise CampaignError(_("Unknown kind of offer: %(kind)s.", kind=kind))
    value = fields.get("offer_value")
    if kind == "percent_off" and not (value and 1 <= value <= 100):
        raise CampaignError(_("A percentage off needs a value between 1 and 100."))
    if kind == "amount_off" and not (value and value > 0):
        raise CampaignError(_("An amount off needs an amount greater than zero."))
    if fields["valid_until"] < fields["valid_from"]:
        raise CampaignError(_("The promotion must end on or after the day it starts."))
    if not fields.get("organisation_ids"):
        raise CampaignError(_("Choose at least one participating organisation."))
    unknown = set(fields.get("disciplines") or ()) - set(DISCIPLINES)
    if unknown:
        raise CampaignError(_("Unknown discipline: %(names)s.", names=", ".join(sorted(unknown))))
    strategy = fields.get("code_strategy", "unique")
    if strategy not in CODE_STRATEGIES:
        raise CampaignError(_("Unknown code strategy: %(name)s.", name=strategy))
    if strategy == "shared" and not SHARED_CODE.match(fields.get("shared_code") or ""):
        raise CampaignError(_("A shared code takes 4 to 40 capital letters, digits or dashes."))
    for name in ("average_discount_cents", "cost_per_contact_cents"):
        if (fields.get(name) or 0) < 0:
            raise CampaignError(_("Costs cannot be negative."))


def _apply_promotion(session: Session, promotion: Promotion, fields: dict) -> None:
    fields = dict(fields)
    if fields.get("code_strategy") == "shared" and fields.get("shared_code"):
        fields["shared_code"] = fields["shared_code"].strip().upper()
    _check_promotion(fields)
    org_ids = list(fields.pop("organisation_ids"))
    show_ids = list(fields.pop("show_ids", None) or ())
    fields["disciplines"] = ",".join(fields.pop("disciplines", None) or ())
    if fields.get("code_strategy") != "shared":
        fields["shared_code"] = None
    if fields["offer_kind"] not in ("percent_off", "amount_off"):
        fields["offer_value"] = None
    for name, value in fields.items():
        setattr(promotion, name, value)
    promotion.organisations = list(session.scalars(select(Organisation).where(Organisation.id.in_(org_ids))))
    if len(promotion.organisations) != len(set(org_ids)):
        raise CampaignError(_("One of the chosen organisations does not exist."))
    promotion.shows = list(session.scalars(select(Show).where(Show.id.in_(show_ids)))) if show_ids else []


def create_promotion(
    session: Session,
    *,
    name_fr: str,
    name_en: str,
    message_fr: str,
    message_en: str,
    offer_kind: str,
    offer_value: int | None = None,
    organisation_ids: Sequence[int],
    show_ids: Sequence[int] = (),
    disciplines: Sequence[str] = (),
    valid_from: dt.date,
    valid_until: dt.date,
    code_strategy: str = "unique",
    shared_code: str | None = None,
    average_discount_cents: int = 0,
    cost_per_contact_cents: int = 0,
    user=None,
) -> Promotion:
    """Create a promotion (flushes).

    :param offer_value: whole percent for ``percent_off``, cents for ``amount_off``, else ignored.
    :param code_strategy: ``unique`` (one unguessable code per recipient, made at launch) or
        ``shared`` (``shared_code`` for everyone).
    :param average_discount_cents: the discount a redemption costs on average (for the ROI report).
    :param cost_per_contact_cents: what sending to one recipient costs.
    :raises CampaignError: when a field breaks the rules.
    """
    params = dict(locals())
    fields = {k: v for k, v in params.items() if k not in ("session", "user")}
    promotion = Promotion(created_by_id=actor_id(user))
    _apply_promotion(session, promotion, fields)
    session.add(promotion)
    session.flush()
    audit_as(
        session,
        user,
        "promotion.create",
        object_type="promotion",
        object_id=promotion.id,
    )
    return promotion


def update_promotion(session: Session, promotion: Promotion, user=None, **fields) -> Promotion:
    """Change a promotion while every campaign using it is still a draft (flushes)."""
    if offers.campaigns_using(session, promotion.id):
        raise CampaignError(
            _("This promotion is used by a campaign already submitted: create a new promotion instead.")
        )
    current = {
        "name_fr": promotion.name_fr,
        "name_en": promotion.name_en,
        "message_fr": promotion.message_fr,
        "message_en": promotion.message_en,
        "offer_kind": promotion.offer_kind,
        "offer_value": promotion.offer_value,
        "organisation_ids": [o.id for o in promotion.organisations],
        "show_ids": [s.id for s in promotion.shows],
        "disciplines": promotion.discipline_list,
        "valid_from": promotion.valid_from,
        "valid_until": promotion.valid_until,
        "code_strategy": promotion.code_strategy,
        "shared_code": promotion.shared_code,
        "average_discount_cents": promotion.average_discount_cents,
        "cost_per_contact_cents": promotion.cost_per_contact_cents,
    }
    unknown = set(fields) - set(current)
    if unknown:
        raise TypeError(f"unknown promotion fields: {', '.join(sorted(unknown))}")
    current.update(fields)
    _apply_promotion(session, promotion, current)
    session.flush()
    audit_as(
        session,
        user,
        "promotion.update",
        object_type="promotion",
        object_id=promotion.id,
    )
    return promotion
