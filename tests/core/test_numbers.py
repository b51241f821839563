"""core.numbers: figures in the reader's language (CLDR's separators through Babel), signs and blanks."""

from __future__ import annotations

import math

import pytest
from flask_babel import force_locale

from core import numbers

NNBSP, NBSP, MINUS = "\u202f", "\u00a0", "\u2212"


@pytest.mark.parametrize(
    "language,expected",
    [
        (
            "fr",
            {
                "count": f"4{NNBSP}545",
                "decimal": f"1{NNBSP}234,57",
                "percent": f"12,5{NBSP}%",
                "signed_percent": f"+12,5{NBSP}%",
                "points": f"{MINUS}2,6{NBSP}pt",
                "money": f"1{NNBSP}234,50{NBSP}$",
                "signed_money": f"+1{NNBSP}234,50{NBSP}$",
                "p": "0,042",
                "tiny_p": f"<{NBSP}0,001",
                "plain": "-1234,50",
            },
        ),
        (
            "en",
            {
                "count": "4,545",
                "decimal": "1,234.57",
                "percent": "12.5%",
                "signed_percent": "+12.5%",
                "points": f"{MINUS}2.6{NBSP}pt",
                "money": "$1,234.50",
                "signed_money": "+$1,234.50",
                "p": "0.042",
                "tiny_p": f"<{NBSP}0.001",
                "plain": "-1234.50",
            },
        ),
    ],
)
def test_each_figure_in_each_language(app, language, expected):
    with app.test_request_context(), force_locale(language):
        assert numbers.count(4545) == expected["count"]
        assert numbers.decimal(1234.567) == expected["decimal"]
        assert numbers.percent(0.125) == expected["percent"]
        assert numbers.percent(0.125, signed=True) == expected["signed_percent"]
        assert numbers.points(-0.026) == expected["points"]
        assert numbers.money(1234.5) == expected["money"]
        assert numbers.money(1234.5, signed=True) == expected["signed_money"]
        assert numbers.p_value(0.0423) == expected["p"]
        assert numbers.p_value(0.0004) == expected["tiny_p"]
        assert numbers.plain(-1234.5) == expected["plain"]


def test_zero_is_never_signed_and_blanks_read_as_a_dash(app):
    with app.test_request_context(), force_locale("en"):
        assert numbers.points(-0.0004) == f"0.0{NBSP}pt"  # rounds to 0.0: not "−0.0 pt"
        assert numbers.percent(-0.00001, signed=True) == "0.0%"
        assert numbers.money(-3) == f"{MINUS}$3.00"
        for blank in (None, math.nan, math.inf):
            assert numbers.count(blank) == numbers.percent(blank) == numbers.money(blank) == "—"


def test_templates_format_through_the_same_functions(app):
    with app.test_request_context(), force_locale("fr"):
        rendered = app.jinja_env.from_string("{{ n|number }} {{ s|percent(0) }} {{ m|money }}").render(
            n=4920, s=0.2, m=15
        )
    assert rendered == f"4{NNBSP}920 20{NBSP}% 15,00{NBSP}$"
