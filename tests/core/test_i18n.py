"""French first: every translatable string of the code and templates has a French translation."""

from core.i18n import extract_messages, missing_translations


def test_messages_are_extracted_from_code_and_templates():
    files = {where.split(":")[0] for _, where, _ in extract_messages()}
    assert any(f.startswith("templates/") for f in files)
    assert any(f.startswith("core/") for f in files)


def test_every_message_has_a_french_translation():
    missing = sorted({f"{where}:{line}: {msgid}" for msgid, where, line in missing_translations()})
    assert not missing, "untranslated (run `python -m core.i18n`):\n" + "\n".join(missing[:50])


def test_core_messages_extract_without_warnings(capsys):
    """A message babel skips (an f-string inside gettext) is a message nobody can translate."""
    extract_messages()
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line.lower()]
    assert not [line for line in warnings if "/core/" in line or "/templates/" in line], warnings


def test_plural_forms_are_french_for_every_count(app):
    """French says "0 organisation", "1 organisation", "2 organisations" and "2 000 000 organisations"
    (CLDR's third form): an entry written with two forms must not fall back to English for any count."""
    from flask_babel import force_locale, ngettext

    with app.test_request_context(), force_locale("fr"):

        def say(n):
            return ngettext("%(num)d organisation with hidden counts", "%(num)d organisations with hidden counts", n)

        assert say(0) == "0 organisme aux effectifs masqués"
        assert say(1) == "1 organisme aux effectifs masqués"
        assert say(2) == "2 organismes aux effectifs masqués"
        assert say(2_000_000) == "2000000 organismes aux effectifs masqués"
        assert ngettext("%(num)d line read", "%(num)d lines read", 3_000_000) == "3000000 lignes lues"


def test_no_message_hedges_its_plural_with_parentheses():
    """ "organisation(s)" reads as a form letter: a count goes through ngettext instead."""
    hedged = sorted(
        {f"{where}:{line}: {msgid}" for msgid, where, line in extract_messages() if "(s)" in msgid or "(es)" in msgid}
    )
    assert not hedged, "\n".join(hedged)
