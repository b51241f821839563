"""Forms of the campaigns pages (WTForms through Flask-WTF, so every post carries a CSRF token)."""

from __future__ import annotations

from decimal import Decimal

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    DecimalField,
    EmailField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from campaigns.approvals import DECLINE_REASON_LABELS, MAX_NOTE
from campaigns.promotions import SHARED_CODE
from campaigns.services import MIN_CONTROL_SHARE
from segments.insight_tables import STAGE_LABELS

OFFER_LABELS = {
    "percent_off": _l("Percentage off"),
    "amount_off": _l("Amount off"),
    "two_for_one": _l("Two for one"),
    "upgrade": _l("Upgrade"),
    "presale": _l("Presale access"),
}
OBJECTIVE_LABELS = {
    "acquisition": _l("Acquisition"),
    "cross_sell": _l("Cross-sell"),
    "upsell": _l("Upsell"),
    "retention": _l("Retention"),
    "win_back": _l("Win-back"),
}
METRIC_LABELS = {
    "conversion": _l("Conversion"),
    "revenue": _l("Revenue"),
    "tickets": _l("Tickets"),
    "cross_sell": _l("Cross-sell"),
    "redemption": _l("Redemption (uptake)"),
}
STATUS_LABELS = {
    "draft": _l("Draft"),
    "awaiting_approvals": _l("Awaiting approvals"),
    "ready": _l("Ready to launch"),
    "launched": _l("Launched"),
    "measuring": _l("Measuring"),
    "closed": _l("Closed"),
    "cancelled": _l("Cancelled"),
}
APPROVAL_LABELS = {
    "pending": _l("Awaiting answer"),
    "approved": _l("Approved"),
    "declined": _l("Declined"),
    "expired": _l("No answer (counted as declined)"),
}
LIFECYCLE_LABELS = {**STAGE_LABELS, "unknown": _l("Unknown")}
DATETIME_FORMAT = "%Y-%m-%dT%H:%M"


class MultiCheckboxField(SelectMultipleField):
    """A set of checkboxes (one per choice) instead of a multiple select."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class PromotionForm(FlaskForm):
    name_fr = StringField(_l("Name (French)"), validators=[DataRequired(), Length(max=200)])
    name_en = StringField(_l("Name (English)"), validators=[DataRequired(), Length(max=200)])
    message_fr = TextAreaField(_l("Message (French)"), validators=[DataRequired(), Length(max=4000)])
    message_en = TextAreaField(_l("Message (English)"), validators=[DataRequired(), Length(max=4000)])
    offer_kind = SelectField(_l("Offer"), choices=list(OFFER_LABELS.items()))
    offer_value = DecimalField(
        _l("Value (percent, or dollars for an amount off)"),
        places=2,
        validators=[Optional(), NumberRange(min=0.01, max=100000)],
    )
    organisations = MultiCheckboxField(
        _l("Participating organisations"),
        coerce=int,
        validators=[DataRequired(message=_l("Choose at least one organisation."))],
    )
    disciplines = MultiCheckboxField(_l("Disciplines (optional)"), choices=[])
    shows = SelectMultipleField(_l("Shows (optional)"), coerce=int, choices=[])
    valid_from = DateField(_l("Valid from"), validators=[InputRequired()])
    valid_until = DateField(_l("Valid until"), validators=[InputRequired()])
    code_strategy = RadioField(
        _l("Codes"),
        default="unique",
        choices=[
            ("unique", _l("A unique code per recipient (unguessable, no ambiguous characters)")),
            ("shared", _l("One shared code for everyone")),
        ],
    )
    shared_code = StringField(
        _l("Shared code"), validators=[Optional(), Length(max=40)], filters=[lambda v: v.strip().upper() if v else v]
    )
    average_discount = DecimalField(
        _l("Average discount per redemption ($)"),
        places=2,
        default=0,
        validators=[InputRequired(), NumberRange(min=0, max=100000)],
    )
    cost_per_contact = DecimalField(
        _l("Cost per contact ($)"), places=2, default=0, validators=[InputRequired(), NumberRange(min=0, max=1000)]
    )

    def validate_offer_value(self, field):
        kind = self.offer_kind.data
        if kind == "percent_off" and (
            field.data is None or not 1 <= field.data <= 100 or field.data != int(field.data)
        ):
            raise ValidationError(_l("A percentage off takes a whole number from 1 to 100."))
        if kind == "amount_off" and (field.data is None or field.data <= 0):
            raise ValidationError(_l("An amount off needs an amount greater than zero."))

    def validate_valid_until(self, field):
        if self.valid_from.data and field.data and field.data < self.valid_from.data:
            raise ValidationError(_l("The promotion must end on or after the day it starts."))

    def validate_shared_code(self, field):
        if self.code_strategy.data == "shared" and not SHARED_CODE.match(field.data or ""):
            raise ValidationError(_l("A shared code takes 4 to 40 capital letters, digits or dashes."))


class CampaignForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    objective = SelectField(_l("Objective"), choices=list(OBJECTIVE_LABELS.items()))
    segment = SelectField(_l("Segment"), coerce=int, choices=[])
    promotion = SelectField(_l("Promotion"), coerce=int, choices=[])
    control_share = IntegerField(
        _l("Control group (% of recipients)"),
        default=20,
        validators=[
            InputRequired(),
            NumberRange(
                min=MIN_CONTROL_SHARE, max=90, message=_l("The control group takes 10%% to 90%% of the recipients.")
            ),
        ],
    )
    arm_a_share = IntegerField(
        _l("Test arm A (%)"), default=80, validators=[InputRequired(), NumberRange(min=1, max=90)]
    )
    arm_b_share = IntegerField(_l("Test arm B (%, optional)"), validators=[Optional(), NumberRange(min=0, max=89)])
    # 0: the arm carries the campaign's promotion (campaigns.offers)
    arm_a_promotion = SelectField(_l("Offer of arm A"), coerce=int, choices=[], default=0)
    arm_b_promotion = SelectField(_l("Offer of arm B"), coerce=int, choices=[], default=0)
    window_days = IntegerField(
        _l("Attribution window (days)"), default=30, validators=[InputRequired(), NumberRange(min=1, max=365)]
    )
    primary_metric = SelectField(
        _l("Primary metric"), choices=[(k, v) for k, v in METRIC_LABELS.items() if k != "redemption"]
    )
    secondary_metrics = MultiCheckboxField(_l("Secondary metrics"), choices=list(METRIC_LABELS.items()))
    approval_deadline = DateTimeLocalField(
        _l("Approval deadline"), format=DATETIME_FORMAT, validators=[InputRequired()]
    )
    planned_launch_at = DateTimeLocalField(_l("Planned launch"), format=DATETIME_FORMAT, validators=[InputRequired()])

    def validate_arm_a_share(self, field):
        shares = [self.control_share.data or 0, field.data or 0, self.arm_b_share.data or 0]
        if sum(shares) != 100:
            raise ValidationError(
                _l("The shares of the arms must add up to 100%% (now %(total)s%%).", total=sum(shares))
            )

    def validate_planned_launch_at(self, field):
        if self.approval_deadline.data and field.data and field.data <= self.approval_deadline.data:
            raise ValidationError(_l("The planned launch must come after the approval deadline."))

    def test_shares(self) -> list[int]:
        return [s for s in (self.arm_a_share.data, self.arm_b_share.data) if s]

    def test_promotions(self) -> list[int | None]:
        """The promotion chosen for each test arm given a share (None: the campaign's)."""
        pairs = ((self.arm_a_share.data, self.arm_a_promotion.data), (self.arm_b_share.data, self.arm_b_promotion.data))
        return [(p or None) if p != self.promotion.data else None for s, p in pairs if s]


class ConfirmForm(FlaskForm):
    """The confirm step of an irreversible action."""

    confirm = BooleanField(
        _l("I understand this cannot be undone."), validators=[DataRequired(message=_l("Tick the box to confirm."))]
    )


class ReadyForm(ConfirmForm):
    # How many organisations without an answer the confirm page listed: the user agreed that they
    # count as declined (the step refuses if more are pending).
    unanswered = HiddenField(default="0", validators=[Optional(), Length(max=6)])


class CancelForm(ConfirmForm):
    reason = TextAreaField(_l("Reason"), validators=[DataRequired(), Length(max=2000)])


class DeclineReasonMixin:
    """Why the venue declines: a reason from the list, and its own words (required for "other")."""

    decision: RadioField  # the form's answer field

    # no Optional(): it would stop the checks below when the field is left empty
    decline_reason = SelectField(
        _l("Why do you decline?"), choices=[("", "—"), *DECLINE_REASON_LABELS.items()], default=""
    )
    decline_note = TextAreaField(_l("In your words (required for another reason)"), validators=[Length(max=MAX_NOTE)])

    def validate_decline_reason(self, field):
        if self.decision.data == "decline" and field.data not in DECLINE_REASON_LABELS:
            raise ValidationError(_l("Choose the reason why you decline."))

    def validate_decline_note(self, field):
        if self.decision.data == "decline" and self.decline_reason.data == "other" and not (field.data or "").strip():
            raise ValidationError(_l("Explain in a few words why you decline."))


class ProviderDecisionForm(DeclineReasonMixin, FlaskForm):
    decision = RadioField(
        _l("Your answer as data provider"),
        choices=[("approve", _l("Approve")), ("decline", _l("Decline"))],
        validators=[InputRequired(message=_l("Choose approve or decline."))],
    )


class DecisionForm(DeclineReasonMixin, FlaskForm):
    decision = RadioField(
        _l("Your answer"),
        choices=[("approve", _l("Approve")), ("decline", _l("Decline"))],
        validators=[InputRequired(message=_l("Choose approve or decline."))],
    )
    exclude_subscribers = BooleanField(_l("Exclude our subscribers"))
    exclude_contacted = BooleanField(_l("Exclude spectators contacted by any campaign recently"))
    contacted_days = IntegerField(
        _l("Contacted in the last (days)"), default=30, validators=[Optional(), NumberRange(min=1, max=3650)]
    )

    def validate_contacted_days(self, field):
        if self.exclude_contacted.data and not field.data:
            raise ValidationError(_l("Give the number of days."))


class RemindForm(FlaskForm):
    """Staff's "remind again", posted from its confirmation page; ``back`` is where to return."""

    back = HiddenField(default="requests", validators=[Optional(), Length(max=20)])


class ExclusionListForm(FlaskForm):
    kind = SelectField(
        _l("The list holds"), choices=[("email", _l("E-mail addresses")), ("customer_id", _l("Customer IDs"))]
    )
    file = FileField(
        _l("List (one per line, or a CSV whose first column holds them)"),
        validators=[FileRequired(), FileAllowed(["csv", "txt"], _l("A CSV file (.csv or .txt) is expected."))],
    )


class ClearExclusionListForm(FlaskForm):
    clear = HiddenField(default="1")


class ErasureFindForm(FlaskForm):
    # No format check here: a malformed address finds no one, in the same words as any other (see the view).
    email = EmailField(_l("E-mail of the person"), validators=[DataRequired(), Length(max=320)])


class ErasureConfirmForm(ConfirmForm):
    # The spectator ids found, signed: the e-mail never comes back in a page.
    token = HiddenField(validators=[DataRequired(), Length(max=4000)])


def to_cents(value) -> int:
    """Dollars (a Decimal from a form) to integer cents, rounded half to even."""
    return int(round(Decimal(value or 0) * 100))


def from_cents(cents: int | None) -> Decimal:
    return Decimal(cents or 0) / 100
