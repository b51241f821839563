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
