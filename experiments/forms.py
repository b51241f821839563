"""Forms of the experiments pages (WTForms through Flask-WTF: every post carries a CSRF token)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, DecimalField, SelectField
from wtforms.validators import DataRequired, NumberRange, Optional

ALPHA_CHOICES = [("0.01", "1 %"), ("0.05", "5 %"), ("0.1", "10 %")]
POWER_CHOICES = [("0.8", "80 %"), ("0.9", "90 %"), ("0.95", "95 %")]


class LaunchForm(FlaskForm):
    """The confirmation step of a launch (irreversible)."""

    confirm = BooleanField(
        _l("I understand that the launch is irreversible: recipients are assigned once and for all."),
        validators=[DataRequired(message=_l("Tick the box to confirm."))],
    )


class PostForm(FlaskForm):
    """A bare form for a button that posts (refreshing a report): the CSRF token only."""


class PowerForm(FlaskForm):
    """The choices of the power estimate (a GET form: its values go in the address)."""

    class Meta:
        csrf = False

    alpha = SelectField(_l("Significance level α"), choices=ALPHA_CHOICES, default="0.05")
    power = SelectField(_l("Power"), choices=POWER_CHOICES, default="0.8")
    target = DecimalField(
        _l("Target relative lift (%)"), places=1, default=10, validators=[Optional(), NumberRange(min=0.1, max=1000)]
    )
    baseline = SelectField(
        _l("History to read the baseline from"),
        default="",
        choices=[
            ("", _l("Automatic (one year earlier when the data go back that far)")),
            ("year_earlier", _l("The same window one year earlier")),
            ("before_launch", _l("The window before the planned launch")),
            ("last_days", _l("The most recent days of data")),
        ],
    )
