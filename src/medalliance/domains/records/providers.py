"""The care relationship the record establishes: a recent or ongoing encounter at the
actor's institution. With the patient's sharing consent, it opens the records other
members wrote. The window is site policy (not a clinical rule); referrals,
consultations and care programmes register relationships of their own."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from medalliance.access import policy
from medalliance.domains.patients import service as patients_service
from medalliance.domains.records.models import Encounter, EncounterStatus
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow

CARE_WINDOW = timedelta(days=180)


# Built once with bind parameters (this runs at every decision on another member's
# data): one statement, the person's records as a subquery.
_RECENT_ENCOUNTER = (
    select(Encounter.id)
    .where(
        Encounter.patient_record_id.in_(
            patients_service.record_ids_query(bindparam("person_id", type_=Encounter.id.type))
        ),
        Encounter.institution_id == bindparam("institution_id", type_=Encounter.id.type),
        Encounter.status.not_in([EncounterStatus.CANCELLED, EncounterStatus.ENTERED_IN_ERROR]),
        or_(
            Encounter.status == EncounterStatus.IN_PROGRESS,
            Encounter.start >= bindparam("since", type_=Encounter.start.type),
        ),
    )
    .order_by(Encounter.start.desc())
    .limit(1)
)


def encounter_relationship(
    session: Session, actor: Actor, person_id: uuid.UUID
) -> policy.CareRelationship | None:
    if actor.institution_id is None:
        return None
    encounter_id = session.scalar(  # autoflush: an encounter added in this unit counts
        _RECENT_ENCOUNTER,
        {
            "person_id": person_id,
            "institution_id": actor.institution_id,
            "since": utcnow() - CARE_WINDOW,
        },
    )
    if encounter_id is None:
        return None
    return policy.CareRelationship(kind="encounter", reference=str(encounter_id))


policy.register_care_relationship("encounter", encounter_relationship)
