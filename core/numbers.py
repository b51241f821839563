"""Numbers, money, percentages, points and p-values in the reader's language, through Babel (CLDR).

French: 4 545 (a narrow no-break space between thousands), 12,5 %, 1 234,50 $; English: 4,545,
12.5%, $1,234.50. The grouping and decimal signs are CLDR's for ``fr`` and ``en``; the dollar
sign's place is Quebec's usage (after the amount in French, before it in English, as CLDR's
``fr_CA`` and ``en_CA`` put it). Negative figures take the typographic minus (U+2212), and a figure
that rounds to zero is never signed ("0.0 pt", not "−0.0 pt"). A missing or infinite value reads "—".
"""

from __future__ import annotations

import math

from babel import Locale
from babel.numbers import format_decimal
from flask_babel import get_locale

MINUS = "\u2212"
DASH = "—"


def _language() -> str:
    """``fr`` or ``en``: the request's language (French outside a request, the default)."""
    locale = get_locale()
    return "en" if locale is not None and locale.language == "en" else "fr"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def _pattern(digits: int) -> str:
    return "#,##0" + ("." + "0" * digits if digits else "")


def _signed(value: float, digits: int, signed: bool, text: str) -> str:
    """``text`` (the absolute value, formatted) with its sign: "+" only when ``signed``, "−" for a
    negative value, none when the value rounds to zero at ``digits`` decimals."""
    if round(value, digits) == 0:
        return text
    if value < 0:
        return MINUS + text
    return "+" + text if signed else text


def count(value) -> str:
    """A whole number: 4 545 / 4,545."""
    if _missing(value):
        return DASH
    return format_decimal(int(value), format="#,##0", locale=_language())


def decimal(value, digits: int = 2, signed: bool = False) -> str:
    """A number with ``digits`` decimals: 1 234,57 / 1,234.57."""
    if _missing(value):
        return DASH
    return _signed(value, digits, signed, format_decimal(abs(value), format=_pattern(digits), locale=_language()))


def plain(value, digits: int = 2) -> str:
    """A number for a spreadsheet cell: the locale's decimal sign, no thousands separator, a plain
    minus (spreadsheets read "1234,50" and "-3,1" as numbers in French)."""
    if _missing(value):
        return DASH
    return format_decimal(value, format="0" + ("." + "0" * digits if digits else ""), locale=_language())


def percent(value, digits: int = 1, signed: bool = False) -> str:
    """A fraction as a percentage (0.125 → 12,5 % / 12.5%), in the locale's percent pattern."""
    if _missing(value):
        return DASH
    language = _language()
    # CLDR's pattern ("#,##0 %" in French, "#,##0%" in English) with the decimals asked for
    suffix = Locale.parse(language).percent_formats[None].pattern.replace("#,##0", "")
    scaled = value * 100
    return _signed(
        scaled, digits, signed, format_decimal(abs(scaled), format=_pattern(digits), locale=language) + suffix
    )


def points(value, digits: int = 1) -> str:
    """A difference of two proportions in percentage points, always signed: +2,6 pt / +2.6 pt."""
    if _missing(value):
        return DASH
    scaled = value * 100
    text = format_decimal(abs(scaled), format=_pattern(digits), locale=_language())
    return _signed(scaled, digits, True, text) + "\u00a0pt"


def money(value, signed: bool = False) -> str:
    """Dollars with cents: 1 234,50 $ / $1,234.50 (signed: +1 234,50 $ / +$1,234.50)."""
    if _missing(value):
        return DASH
    language = _language()
    amount = format_decimal(abs(value), format="#,##0.00", locale=language)
    text = f"{amount}\u00a0$" if language == "fr" else f"${amount}"
    return _signed(value, 2, signed, text)


def p_value(value) -> str:
    """A p-value alone, for a cell under a "p" heading: 0,042 / 0.042, or "< 0,001" / "< 0.001"."""
    if _missing(value):
        return DASH
    if value < 0.001:
        return "<\u00a0" + decimal(0.001, 3)
    return decimal(value, 3)


def init_app(app) -> None:
    """Make these the templates' filters: ``{{ n|number }}``, ``{{ share|percent }}``, ``{{ x|money }}``…"""
    app.jinja_env.filters.update(
        number=count, decimal=decimal, percent=percent, points=points, money=money, p_value=p_value
    )
