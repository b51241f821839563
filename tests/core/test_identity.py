"""Pseudonymous identity: normalising personal fields and keying spectators (DESIGN.md §3)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from core.identity import (
    fsa_of,
    identity_basis,
    is_valid_postal_code,
    normalise_email,
    normalise_name,
    normalise_phone,
    normalise_postal_code,
    spectator_key,
    strip_accents,
)


def test_strip_accents():
    assert strip_accents("Hélène Côté-Lévesque, Ç'est ça") == "Helene Cote-Levesque, C'est ca"


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("  Helene.Cote@Example.ORG ", "helene.cote@example.org"),
        ("a@b", "a@b"),
        ("", None),
        (None, None),
        ("no-at-sign", None),
        ("@example.org", None),
        ("user@", None),
        ("two words@example.org", None),
    ],
)
def test_normalise_email(raw, expected):
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("Côté-Lévesque", "COTELEVESQUE"),
        ("  o'neil ", "ONEIL"),
        ("Zoë", "ZOE"),
        ("123", None),
        ("", None),
        (None, None),
    ],
)
def test_normalise_name(raw, expected):
    assert normalise_name(raw) == expected


def test_postal_codes_and_fsa():
    assert normalise_postal_code("h2x 1y4") == "H2X1Y4"
    assert normalise_postal_code(" H2X-1Y4 ") == "H2X1Y4"
    assert normalise_postal_code("h2x") == "H2X"  # partial codes keep what they have
    assert normalise_postal_code("") is None and normalise_postal_code(" - ") is None
    assert is_valid_postal_code("H2X1Y4") and not is_valid_postal_code("H2X1Y") and not is_valid_postal_code("12345")
    assert fsa_of("H2X1Y4") == "H2X" and fsa_of("H2X") == "H2X"
    assert fsa_of("12345") is None and fsa_of("H2") is None and fsa_of(None) is None


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("(514) 555-1234", "5145551234"),
        ("+1 514 555 1234", "5145551234"),
        ("555-1234", "5551234"),
        ("12345", None),
        ("", None),
        (None, None),
        ("44 20 7946 0958", "442079460958"),
    ],
)
def test_normalise_phone(raw, expected):
    assert normalise_phone(raw) == expected


def test_identity_basis_prefers_email_then_name_and_postal_code_then_name_and_phone():
    assert identity_basis(" A@B.ca ", "Côté", "Hélène", "h2x 1y4", "514-555-1234") == "e:a@b.ca"
    assert identity_basis("", "Côté", "Hélène", "h2x 1y4", "514-555-1234") == "n:COTE|HELENE|H2X1Y4"
    assert identity_basis(None, "Côté", "Hélène", "", "(514) 555-1234") == "p:COTE|HELENE|5145551234"
    # a name alone, or contact details without a full name, identify nobody
    assert identity_basis(None, "Côté", "Hélène", None, None) is None
    assert identity_basis(None, "Côté", None, "H2X1Y4", "5145551234") is None
    assert identity_basis("not an email", None, None, "H2X1Y4", None) is None
    # spelling and accents do not split a person
    assert identity_basis(None, "COTE", "helene", "H2X1Y4", None) == identity_basis(
        None, "Côté", "Hélène", "h2x 1y4", None
    )


def test_spectator_key_is_the_hmac_of_the_basis_with_the_district_secret():
    expected = hmac.new(b"secret", b"e:a@b.ca", hashlib.sha256).hexdigest()
    assert spectator_key("secret", "e:a@b.ca") == expected == spectator_key(b"secret", "e:a@b.ca")
    assert len(expected) == 64
    assert spectator_key("other secret", "e:a@b.ca") != expected
    assert spectator_key("secret", "n:COTE|HELENE|H2X1Y4") != spectator_key("secret", "p:COTE|HELENE|H2X1Y4")
    # non-ASCII bases are keyed as UTF-8
    basis = "e:zoë@example.org"
    assert spectator_key("s", basis) == hmac.new(b"s", basis.encode(), hashlib.sha256).hexdigest()
