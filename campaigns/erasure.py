"""Erasure on request: a person's contact records leave every organisation, their history stays unlinkable."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Sequence

from flask_babel import gettext as _
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from campaigns.common import CampaignError, audit_as, in_chunks
from core.identity import identity_basis, normalise_email, spectator_key
from core.models import PERSON_ERASED, Consent, Contact, Spectator, utcnow
from core.scrub import Identities, scrub_files

# An erased spectator's key: never an HMAC (those are 64 hex digits), so no identity finds it again.
ERASED_KEY_PREFIX = "erased:"


# --- erasure ------------------------------------------------------------------------------------


@dataclass
class ErasureResult:
    """What an erasure found or did: counts only, never the person's details (``files``: what left
    the kept files, see :func:`core.scrub.scrub_files`)."""

    spectator_ids: list[int]
    contacts: int
    organisations: int
    files: dict | None = None


def find_person(session: Session, email: str, secret: str) -> ErasureResult:
    """The spectators an e-mail designates (by spectator key and by any contact's e-mail), with how
    many contact records at how many organisations hold them."""
    normalised = normalise_email(email)
    basis = identity_basis(normalised, None, None, None, None)
    if normalised is None or basis is None:
        raise CampaignError(_("This is not an e-mail address."))
    key = spectator_key(secret, basis)
    by_key = select(Spectator.id).where(Spectator.key == key)
    by_email = select(Contact.spectator_id).where(func.lower(func.trim(Contact.email)) == normalised)
    ids = sorted(set(session.scalars(by_key)) | set(session.scalars(by_email)))
    contacts, organisations = 0, 0
    if ids:
        contacts, organisations = session.execute(
            select(func.count(Contact.id), func.count(func.distinct(Contact.organisation_id))).where(
                Contact.spectator_id.in_(ids)
            )
        ).one()
    return ErasureResult(ids, contacts, organisations)


def erase_spectators(
    session: Session, spectator_ids: Sequence[int], user=None, now: dt.datetime | None = None, app=None
) -> ErasureResult:
    """Erasure on request: delete every organisation's contact record of the spectators (consents go
    with them), keep the pooled transactions under the pseudonymous spectator, record a district-wide
    opt-out, tombstone the identity key (a later import of the same e-mail starts a new spectator
    that nothing links to this history), and write one audit event per spectator (its id only, never
    a personal detail). With ``app``, the person's rows also leave every file the instance keeps
    (rejects, inbox copies and reports, stored exports: :func:`core.scrub.scrub_files`)."""
    now = now or utcnow()
    ids = sorted(set(spectator_ids))
    contacts, organisations = 0, 0
    identities = Identities()
    if ids:
        contacts, organisations = session.execute(
            select(func.count(Contact.id), func.count(func.distinct(Contact.organisation_id))).where(
                Contact.spectator_id.in_(ids)
            )
        ).one()
        for chunk in in_chunks(ids):
            for row in session.execute(
                select(Contact.email, Contact.last_name, Contact.first_name, Contact.postal_code, Contact.phone).where(
                    Contact.spectator_id.in_(chunk)
                )
            ):
                identities.add(*row)
    for chunk in in_chunks(ids):
        contact_ids = select(Contact.id).where(Contact.spectator_id.in_(chunk))
        session.execute(
            delete(Consent).where(Consent.contact_id.in_(contact_ids)), execution_options={"synchronize_session": False}
        )
        session.execute(
            delete(Contact).where(Contact.spectator_id.in_(chunk)), execution_options={"synchronize_session": False}
        )
        session.execute(
            update(Spectator).where(Spectator.id.in_(chunk), Spectator.opted_out_at.is_(None)).values(opted_out_at=now),
            execution_options={"synchronize_session": False},
        )
    for spectator_id in ids:  # a random key no identity hashes to: the history stays, unlinkable
        session.execute(
            update(Spectator).where(Spectator.id == spectator_id).values(key=ERASED_KEY_PREFIX + secrets.token_hex(24)),
            execution_options={"synchronize_session": False},
        )
    session.expire_all()
    for spectator_id in ids:
        audit_as(
            session,
            user,
            PERSON_ERASED,
            object_type="spectator",
            object_id=spectator_id,
            contacts_deleted=contacts,
            organisations=organisations,
        )
    session.flush()
    files = scrub_files(app, identities) if app is not None and ids else None
    return ErasureResult(ids, contacts, organisations, files)


def erase_person(
    session: Session, email: str, secret: str, user=None, now: dt.datetime | None = None, app=None
) -> ErasureResult:
    """Find the person an e-mail designates and erase them (see :func:`erase_spectators`); when nobody
    matches, the request is still logged, without the e-mail."""
    found = find_person(session, email, secret)
    if not found.spectator_ids:
        audit_as(
            session,
            user,
            PERSON_ERASED,
            object_type="spectator",
            found=False,
        )
        session.flush()
        return found
    return erase_spectators(session, found.spectator_ids, user=user, now=now, app=app)
