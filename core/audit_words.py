"""The audit log in words: each event as a sentence in the reader's language (who did what to which object)."""

from __future__ import annotations

from collections.abc import Iterable

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from core.models import AuditEvent, ImportBatch, Organisation, User, Venue
from core.registry import registry

# A role as a noun inside a sentence ("invited bob@… as venue approver of Théâtre X").
ROLE_NOUNS = {
    "staff": _l("partnership staff"),
    "venue": _l("venue approver"),
    "evaluator": _l("evaluator"),
    "admin": _l("administrator"),
}

# An object without a name of its own is shown as "<kind> #<id>".
OBJECT_KINDS = {
    "user": _l("account"),
    "organisation": _l("organisation"),
    "venue": _l("hall"),
    "import_batch": _l("import"),
    "campaign": _l("campaign"),
    "segment": _l("segment"),
    "promotion": _l("promotion"),
    "approval": _l("approval request"),
    "provider_approval": _l("data-provider request"),
    "experiment": _l("experiment"),
    "contact_list": _l("contact list"),
    "spectator": _l("spectator"),
    "question": _l("question"),
    "job": _l("scheduled job"),
    "download": _l("page"),
    "district": _l("district"),
    "rejects_folder": _l("rejected rows"),
}

# One sentence per action: %(actor)s is who acted, %(object)s the object in words; the other names
# are the event's details (a role given by its key is put in words). An action whose sentence needs
# a detail the event lacks, or an action without a sentence, gets the general one.
SENTENCES: dict[str, object] = {
    "login": _l("%(actor)s logged in"),
    "login.locked": _l("Logins as %(actor)s were locked after repeated failures"),
    "organisation.create": _l("%(actor)s created the organisation %(object)s"),
    "organisation.update": _l("%(actor)s changed the organisation %(object)s: %(fields)s"),
    "venue.create": _l("%(actor)s added the hall %(name)s to %(organisation)s"),
    "venue.update": _l("%(actor)s changed the hall %(name)s of %(organisation)s"),
    "venue.delete": _l("%(actor)s removed the hall %(name)s from %(organisation)s"),
    "user.create": _l("%(actor)s created the account %(object)s as %(role)s"),
    "user.invite": _l("%(actor)s invited %(email)s as %(role)s of %(organisation)s"),
    "user.invite_again": _l("%(actor)s made a new invitation link for %(object)s"),
    "user.reset_link": _l("%(actor)s made a password reset link for %(object)s"),
    "user.invitation_accepted": _l("%(actor)s accepted their invitation and chose a password"),
    "user.password_reset": _l("%(actor)s chose a new password with a reset link"),
    "user.password_change": _l("%(actor)s changed their own password"),
    "user.role_change": _l("%(actor)s made %(object)s %(role)s of %(organisation)s (was %(role_before)s)"),
    "user.deactivate": _l("%(actor)s deactivated %(object)s"),
    "user.reactivate": _l("%(actor)s reactivated %(object)s"),
    "user.grant_insights": _l("%(actor)s granted %(object)s the audience insights"),
    "user.withdraw_insights": _l("%(actor)s withdrew the audience insights of %(object)s"),
    "audit.export": _l("%(actor)s downloaded the audit log"),
}
# The same sentences when the role has no organisation (everyone but venue approvers).
SENTENCES_WITHOUT_ORGANISATION: dict[str, object] = {
    "user.invite": _l("%(actor)s invited %(email)s as %(role)s"),
    "user.role_change": _l("%(actor)s made %(object)s %(role)s (was %(role_before)s)"),
}
GENERAL_SENTENCE = _l("%(actor)s: %(action)s (%(object)s)")
GENERAL_SENTENCE_NO_OBJECT = _l("%(actor)s: %(action)s")

# The fields of an organisation as an "organisation.update" event lists them.
ORGANISATION_FIELDS = {
    "name": _l("name"),
    "kind": _l("kind"),
    "disciplines": _l("disciplines"),
    "k_threshold": _l("threshold k"),
    "sender_name": _l("sender name"),
    "sender_email": _l("sender e-mail"),
}


def _names_of(session, model, column, ids: set[str]) -> dict[str, str]:
    numbers = [int(i) for i in ids if i.isdigit() and len(i) < 10]
    if not numbers:
        return {}
    return {str(i): name for i, name in session.execute(select(model.id, column).where(model.id.in_(numbers)))}


def named_objects() -> dict[str, tuple]:
    """Object type → (model, name column): core's own objects and those the feature packages register
    (``Registry.add_audit_object``)."""
    return {
        "user": (User, User.email),
        "organisation": (Organisation, Organisation.name),
        "venue": (Venue, Venue.name),
        "import_batch": (ImportBatch, ImportBatch.filename),
        **registry().audit_objects,
    }


def object_names(session, events: Iterable[AuditEvent]) -> dict[tuple[str, str], str]:
    """(object type, object id) → the object's name today, for the objects of ``events`` that have one."""
    wanted: dict[str, set[str]] = {}
    for event in events:
        if event.object_type and event.object_id:
            wanted.setdefault(event.object_type, set()).add(event.object_id)
    known = named_objects()
    names: dict[tuple[str, str], str] = {}
    for kind, ids in wanted.items():
        if kind in known:
            model, column = known[kind]
            names.update({(kind, i): str(n) for i, n in _names_of(session, model, column, ids).items() if n})
    return names


def objects_matching(session, words: str) -> dict[str, list[int]]:
    """Object type → the ids of its objects whose name contains ``words`` (any case); accounts by
    their e-mail or their name."""
    lowered = words.lower()
    found: dict[str, list[int]] = {}
    for kind, (model, column) in named_objects().items():
        condition = func.lower(column).contains(lowered, autoescape=True)
        if model is User:
            condition = condition | func.lower(func.coalesce(User.name, "")).contains(lowered, autoescape=True)
        ids = session.scalars(select(model.id).where(condition).limit(1000)).all()
        if ids:
            found[kind] = list(ids)
    return found


def actor_words(event: AuditEvent, actors: dict[int, User]) -> str:
    """Who acted: their name (or e-mail) and role then, "Alice (administrator)"; the command line, the
    scheduler and visitors who are not logged in as the log recorded them."""
    user = actors.get(event.user_id) if event.user_id is not None else None
    if user is None:
        if event.actor == "anonymous":
            return _("someone not logged in")
        return event.actor
    role = event.actor_role or user.role  # the role they had then, when the event recorded it
    return f"{user.name or user.email} ({ROLE_NOUNS.get(role, role)})"


def object_words(event: AuditEvent, names: dict[tuple[str, str], str]) -> str:
    """The object in words: its name, or its kind and number when it has none (or no longer exists)."""
    if not event.object_type:
        return ""
    name = names.get((event.object_type, event.object_id or ""))
    if name:
        return name
    kind = OBJECT_KINDS.get(event.object_type, event.object_type)
    return f"{kind} #{event.object_id}" if event.object_id else str(kind)


def _detail_words(action: str, details: dict) -> dict[str, str]:
    words: dict[str, str] = {}
    for key, value in details.items():
        if key in ("role", "role_before") and isinstance(value, str):
            words[key] = str(ROLE_NOUNS.get(value, value))
        elif key == "fields" and isinstance(value, list):
            words[key] = ", ".join(str(ORGANISATION_FIELDS.get(f, f)) for f in value)
        elif value is not None and not isinstance(value, (dict, list)):
            words[key] = str(value)
    return words


def sentence(event: AuditEvent, actors: dict[int, User], names: dict[tuple[str, str], str], action_labels: dict) -> str:
    """One event as a sentence in the current language."""
    details = event.details if isinstance(event.details, dict) else {}
    words = _detail_words(event.action, details)
    words.update(actor=actor_words(event, actors), object=object_words(event, names))
    if event.action == "user.create" and "email" not in words:
        words.setdefault("email", words["object"])
    template = SENTENCES.get(event.action)
    if details.get("organisation") is None and event.action in SENTENCES_WITHOUT_ORGANISATION:
        template = SENTENCES_WITHOUT_ORGANISATION[event.action]
    if template is not None:
        try:
            return str(template) % words
        except (KeyError, ValueError, TypeError):
            pass  # a detail missing from an older event: the general sentence below
    words["action"] = str(action_labels.get(event.action, event.action))
    return str(GENERAL_SENTENCE if words["object"] else GENERAL_SENTENCE_NO_OBJECT) % words


def describe(session, events: list[AuditEvent], action_labels: dict) -> dict[int, str]:
    """Event id → its sentence, for a page of events (three queries whatever their number)."""
    actor_ids = {e.user_id for e in events if e.user_id is not None}
    actors = {u.id: u for u in session.scalars(select(User).where(User.id.in_(actor_ids)))} if actor_ids else {}
    names = object_names(session, events)
    return {e.id: sentence(e, actors, names, action_labels) for e in events}
