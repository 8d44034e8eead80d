"""The access policy for patient data: one place decides, and says why.

A read or write of a patient's data is allowed when one of these holds, in order:

1. **same institution**: the actor works at an institution that holds a record of
   the patient;
2. **consent and care**: the patient's alliance-wide sharing consent is in force,
   it does not exclude the actor's institution, and a registered care relationship
   (referral, consultation, care programme …) links the actor to the patient;
3. **break-the-glass**: the actor started an emergency override for this patient
   with a stated reason, and it has not ended or expired.

Everything else is denied. Domains describe the patient with ``PatientFacts`` (the
patients domain builds them) and register their care relationships with
``register_care_relationship`` instead of writing checks of their own. ``enforce``
decides and audits in one call.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.access.models import BreakGlassGrant
from medalliance.access.permissions import Permission
from medalliance.audit import service as audit
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import NotFound, PermissionDenied


class AccessAction(StrEnum):
    READ = "read"
    WRITE = "write"


class Basis(StrEnum):
    SAME_INSTITUTION = "same-institution"
    CONSENT_AND_CARE = "consent-and-care-relationship"
    BREAK_THE_GLASS = "break-the-glass"
    DENIED = "denied"


# HL7 v3 PurposeOfUse codes carried into the audit trail.
PURPOSE_TREATMENT = "TREAT"
PURPOSE_EMERGENCY = "BTG"


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """What the policy needs to know about a patient, supplied by the patients domain."""

    patient_id: uuid.UUID
    institution_ids: frozenset[uuid.UUID]
    sharing_consent: bool
    excluded_institution_ids: frozenset[uuid.UUID] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class CareRelationship:
    kind: str  # e.g. "referral", "consultation", "care-programme"
    reference: str  # the id of the record that establishes it


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    basis: Basis
    reason: str
    purpose_of_use: str | None = None
    relationship: CareRelationship | None = None
    break_glass_id: uuid.UUID | None = None


CareRelationshipProvider = Callable[[Session, Actor, uuid.UUID], CareRelationship | None]
PatientFactsProvider = Callable[[Session, uuid.UUID], PatientFacts | None]

_providers: dict[str, CareRelationshipProvider] = {}
_facts_provider: list[PatientFactsProvider] = []


def register_patient_facts(provider: PatientFactsProvider) -> None:
    """The patients domain registers how to describe a patient to the policy."""
    _facts_provider[:] = [provider]


def facts_for(session: Session, patient_id: uuid.UUID) -> PatientFacts:
    facts = _facts_provider[0](session, patient_id) if _facts_provider else None
    if facts is None:
        raise NotFound(f"No patient with id {patient_id}.")
    return facts


def register_care_relationship(kind: str, provider: CareRelationshipProvider) -> None:
    """Domains call this at import time: referrals, consultations, programmes …"""
    _providers[kind] = provider


def unregister_care_relationship(kind: str) -> None:
    _providers.pop(kind, None)


def registered_care_relationships() -> tuple[str, ...]:
    return tuple(_providers)


def find_care_relationship(
    session: Session, actor: Actor, patient_id: uuid.UUID
) -> CareRelationship | None:
    for provider in _providers.values():
        found = provider(session, actor, patient_id)
        if found is not None:
            return found
    return None


def active_break_glass(
    session: Session, actor: Actor, patient_id: uuid.UUID
) -> BreakGlassGrant | None:
    if actor.user_id is None:
        return None
    now = utcnow()
    return session.scalar(
        select(BreakGlassGrant)
        .where(
            BreakGlassGrant.user_id == actor.user_id,
            BreakGlassGrant.patient_id == patient_id,
            BreakGlassGrant.ended_at.is_(None),
            BreakGlassGrant.expires_at > now,
        )
        .order_by(BreakGlassGrant.started_at.desc())
        .limit(1)
    )


def decide(
    session: Session,
    actor: Actor,
    facts: PatientFacts,
    action: AccessAction,
    *,
    owner_institution_id: uuid.UUID | None = None,
) -> Decision:
    """Decide for the patient as a whole, or for data written by ``owner_institution_id``.

    For the patient as a whole "same institution" means the patient has a record at
    the actor's institution; for one institution's data it means that institution
    wrote it. Data from other members needs consent and care, or the glass broken.
    """
    needed = Permission.PATIENT_READ if action is AccessAction.READ else Permission.PATIENT_WRITE
    if not actor.is_authenticated:
        return Decision(False, Basis.DENIED, "not authenticated")
    if not actor.can(needed):
        return Decision(False, Basis.DENIED, f"role {actor.role} may not {action} patient data")
    if owner_institution_id is not None:
        local = actor.institution_id == owner_institution_id
    else:
        local = actor.institution_id is not None and actor.institution_id in facts.institution_ids
    if local:
        return Decision(
            True,
            Basis.SAME_INSTITUTION,
            "written at your institution"
            if owner_institution_id is not None
            else "the patient has a record at your institution",
            purpose_of_use=PURPOSE_TREATMENT,
        )
    missing: list[str] = []
    if not facts.sharing_consent:
        missing.append("the patient has not consented to alliance-wide sharing")
    elif actor.institution_id in facts.excluded_institution_ids:
        missing.append("the patient's consent excludes your institution")
    else:
        relationship = find_care_relationship(session, actor, facts.patient_id)
        if relationship is not None:
            return Decision(
                True,
                Basis.CONSENT_AND_CARE,
                f"sharing consent and a {relationship.kind} ({relationship.reference})",
                purpose_of_use=PURPOSE_TREATMENT,
                relationship=relationship,
            )
        missing.append("you have no care relationship with the patient")
    grant = active_break_glass(session, actor, facts.patient_id)
    if grant is not None:
        return Decision(
            True,
            Basis.BREAK_THE_GLASS,
            f"break-the-glass: {grant.reason}",
            purpose_of_use=PURPOSE_EMERGENCY,
            break_glass_id=grant.id,
        )
    return Decision(False, Basis.DENIED, "; ".join(missing))


def enforce(
    session: Session,
    actor: Actor,
    facts: PatientFacts,
    action: AccessAction,
    *,
    resource_type: str,
    resource_id: str | uuid.UUID | None = None,
    audit_action: str | None = None,
    owner_institution_id: uuid.UUID | None = None,
    times: int = 1,
) -> Decision:
    """Decide, audit the decision, and raise ``PermissionDenied`` when denied.

    A denial is audited even though the use case then fails and rolls back. ``times``:
    a batch of that many entries, each audited as its own decision (decided once, as
    the facts are the same).
    """
    decision = decide(session, actor, facts, action, owner_institution_id=owner_institution_id)
    detail: dict[str, str] = {"basis": str(decision.basis)}
    if decision.relationship is not None:
        detail["relationship"] = f"{decision.relationship.kind}:{decision.relationship.reference}"
    if decision.break_glass_id is not None:
        detail["break_glass_id"] = str(decision.break_glass_id)
    for _ in range(times if decision.allowed else 1):
        audit.record(
            session,
            actor,
            action=audit_action or str(action),
            resource_type=resource_type,
            resource_id=resource_id,
            patient_id=facts.patient_id,
            outcome=audit.Outcome.SUCCESS if decision.allowed else audit.Outcome.DENIED,
            purpose_of_use=decision.purpose_of_use,
            reason=decision.reason,
            detail=dict(detail),
            survives_rollback=not decision.allowed,
        )
    if not decision.allowed:
        denied = PermissionDenied(f"Access to this patient's data is denied: {decision.reason}.")
        denied.audited = True
        raise denied
    return decision


def may_discover(session: Session, actor: Actor, facts: PatientFacts) -> bool:
    """May the actor learn that this patient exists (a search hit, an MPI link target)?

    Weaker than reading the record: the patient is registered at the actor's
    institution, or shares alliance-wide without excluding it, or the glass is broken.
    """
    if not actor.can(Permission.PATIENT_READ):
        return False
    if actor.institution_id is not None and actor.institution_id in facts.institution_ids:
        return True
    if facts.sharing_consent and actor.institution_id not in facts.excluded_institution_ids:
        return True
    return active_break_glass(session, actor, facts.patient_id) is not None
