"""French first: every translatable string of the code and templates has a French translation."""

from core.i18n import extract_messages, missing_translations


def test_messages_are_extracted_from_code_and_templates():
    files = {where.split(":")[0] for _, where, _ in extract_messages()}
    assert any(f.startswith("templates/") for f in files)
    assert any(f.startswith("core/") for f in files)


def test_every_message_has_a_french_translation():
    missing = sorted({f"{where}:{line}: {msgid}" for msgid, where, line in missing_translations()})
    assert not missing, "untranslated (run `python -m core.i18n`):\n" + "\n".join(missing[:50])
