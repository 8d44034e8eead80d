"""The access policy, table-driven over the kinds of actor: who may read or write a
patient's data, on what basis, and what ``enforce`` leaves in the audit trail."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from medalliance.access import policy
from medalliance.access.models import BreakGlassGrant
from medalliance.access.policy import AccessAction, Basis, PatientFacts
from medalliance.audit import service as audit
from medalliance.audit.models import AuditChainHead, AuditEvent
from medalliance.db.uow import unit_of_work
from medalliance.domains.alliance.models import Alliance, Institution
from medalliance.kernel.actor import ANONYMOUS, Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import NotFound, PermissionDenied
from medalliance.kernel.roles import Role
from tests.conftest import actor_for
from tests.factories.access import UserFactory
from tests.factories.alliance import AllianceFactory, InstitutionFactory

Factory = sessionmaker[Session]
READ, WRITE = AccessAction.READ, AccessAction.WRITE


@dataclass(frozen=True)
class Case:
    id: str
    role: Role | None  # None: anonymous
    allowed: bool
    basis: Basis
    reason: str  # a fragment of the decision's reason
    at: str = "other"  # the actor's institution: "home" (holds the patient's record) or "other"
    consent: bool = False
    excluded: bool = False  # the consent excludes the actor's institution
    care: bool = False  # a registered care relationship links the actor to the patient
    btg: str | None = None  # "active", "expired", "ended", "other-patient"
    action: AccessAction = READ

    @property
    def purpose(self) -> str | None:
        if not self.allowed:
            return None
        return "BTG" if self.basis is Basis.BREAK_THE_GLASS else "TREAT"


DENIED = Basis.DENIED
CASES = [
    Case("anonymous", None, False, DENIED, "not authenticated", consent=True, care=True),
    Case("researcher", Role.RESEARCHER, False, DENIED, "role researcher may not read", at="home"),
    Case("auditor", Role.AUDITOR, False, DENIED, "role auditor may not read", at="home"),
    Case("alliance-admin", Role.ALLIANCE_ADMIN, False, DENIED, "may not read", at="home"),
    Case("institution-admin-write", Role.INSTITUTION_ADMIN, False, DENIED, "may not write",
         at="home", action=WRITE),
    Case("researcher-with-btg", Role.RESEARCHER, False, DENIED, "may not read", btg="active"),
    Case("same-institution", Role.CLINICIAN, True, Basis.SAME_INSTITUTION, "your institution",
         at="home"),
    Case("same-institution-write", Role.NURSE, True, Basis.SAME_INSTITUTION, "your institution",
         at="home", action=WRITE),
    Case("same-institution-no-consent", Role.PHARMACIST, True, Basis.SAME_INSTITUTION,
         "your institution", at="home", consent=False),
    Case("other-no-consent", Role.CLINICIAN, False, DENIED, "not consented"),
    Case("other-no-consent-with-care", Role.CLINICIAN, False, DENIED, "not consented",
         care=True),
    Case("other-consent-no-care", Role.CLINICIAN, False, DENIED, "no care relationship",
         consent=True),
    Case("other-consent-and-care", Role.CLINICIAN, True, Basis.CONSENT_AND_CARE,
         "sharing consent and a referral (REF-TEST-1)", consent=True, care=True),
    Case("other-consent-and-care-write", Role.CARE_MANAGER, True, Basis.CONSENT_AND_CARE,
         "referral", consent=True, care=True, action=WRITE),
    Case("consent-excludes-institution", Role.CLINICIAN, False, DENIED,
         "consent excludes your institution", consent=True, excluded=True, care=True),
    Case("btg-active", Role.CLINICIAN, True, Basis.BREAK_THE_GLASS, "break-the-glass: cardiac",
         btg="active"),
    Case("btg-active-overrides-exclusion", Role.CLINICIAN, True, Basis.BREAK_THE_GLASS,
         "break-the-glass", consent=True, excluded=True, btg="active"),
    Case("btg-expired", Role.CLINICIAN, False, DENIED, "not consented", btg="expired"),
    Case("btg-ended", Role.CLINICIAN, False, DENIED, "not consented", btg="ended"),
    Case("btg-for-another-patient", Role.CLINICIAN, False, DENIED, "not consented",
         btg="other-patient"),
]  # fmt: skip


@dataclass
class World:
    alliance: Alliance
    home: Institution
    other: Institution
    patient_id: uuid.UUID


@pytest.fixture
def world(session: Session) -> World:
    alliance = AllianceFactory()
    return World(
        alliance=alliance,
        home=InstitutionFactory(alliance=alliance),
        other=InstitutionFactory(alliance=alliance),
        patient_id=uuid.uuid4(),
    )


def make_user_actor(role: Role, institution: Institution) -> Actor:
    user = UserFactory(role=role, institution=institution)
    return actor_for(role, institution=institution, user_id=user.id, username=user.username)


def add_grant(session: Session, actor: Actor, patient_id: uuid.UUID, state: str) -> uuid.UUID:
    now = utcnow()
    assert actor.user_id is not None
    grant = BreakGlassGrant(
        user_id=actor.user_id,
        institution_id=actor.institution_id,
        patient_id=uuid.uuid4() if state == "other-patient" else patient_id,
        reason="cardiac arrest in the emergency room",
        started_at=now - timedelta(minutes=90 if state == "expired" else 5),
        expires_at=now + (timedelta(minutes=-30) if state == "expired" else timedelta(minutes=55)),
        ended_at=now - timedelta(minutes=1) if state == "ended" else None,
    )
    session.add(grant)
    session.flush()
    return grant.id


def head_seq(factory: Factory) -> int:
    with factory() as s:
        head = s.get(AuditChainHead, audit.HEAD_ID)
        assert head is not None
        return head.last_seq


def events_after(factory: Factory, seq: int) -> list[AuditEvent]:
    with factory() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.seq > seq).order_by("seq")))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_policy_matrix(
    case: Case,
    world: World,
    session: Session,
    session_factory: Factory,
    care_links: set[tuple[uuid.UUID, uuid.UUID]],
) -> None:
    institution = world.home if case.at == "home" else world.other
    actor = ANONYMOUS if case.role is None else make_user_actor(case.role, institution)
    facts = PatientFacts(
        patient_id=world.patient_id,
        institution_ids=frozenset({world.home.id}),
        sharing_consent=case.consent,
        excluded_institution_ids=frozenset({world.other.id}) if case.excluded else frozenset(),
    )
    if case.care and actor.user_id is not None:
        care_links.add((actor.user_id, world.patient_id))
    grant_id = add_grant(session, actor, world.patient_id, case.btg) if case.btg else None

    decision = policy.decide(session, actor, facts, case.action)

    assert (decision.allowed, decision.basis) == (case.allowed, case.basis), decision.reason
    assert case.reason in decision.reason
    assert decision.purpose_of_use == case.purpose
    if case.basis is Basis.BREAK_THE_GLASS:
        assert decision.break_glass_id == grant_id

    # enforce: decides the same, audits, and raises on denial (the use case rolls back)
    seq0 = head_seq(session_factory)
    if case.allowed:
        with unit_of_work(session_factory) as s:
            enforced = policy.enforce(
                s, actor, facts, case.action, resource_type="Patient", resource_id=world.patient_id
            )
        assert enforced == decision
    else:
        with pytest.raises(PermissionDenied) as denied, unit_of_work(session_factory) as s:
            policy.enforce(
                s, actor, facts, case.action, resource_type="Patient", resource_id=world.patient_id
            )
        assert case.reason in denied.value.detail

    (row,) = events_after(session_factory, seq0)
    assert row.outcome == ("success" if case.allowed else "denied")
    assert row.purpose_of_use == case.purpose
    assert row.action == str(case.action)
    assert (row.resource_type, row.resource_id) == ("Patient", str(world.patient_id))
    assert row.patient_id == world.patient_id
    assert row.actor_user_id == actor.user_id
    assert row.reason == decision.reason
    detail = json.loads(row.detail)
    assert detail["basis"] == str(case.basis)
    if case.basis is Basis.CONSENT_AND_CARE:
        assert detail["relationship"] == "referral:REF-TEST-1"
    if case.basis is Basis.BREAK_THE_GLASS:
        assert detail["break_glass_id"] == str(grant_id)


def test_a_denial_outlives_the_rolled_back_use_case_but_its_other_effects_do_not(
    world: World, session_factory: Factory
) -> None:
    actor = make_user_actor(Role.CLINICIAN, world.home)
    own = PatientFacts(world.patient_id, frozenset({world.home.id}), sharing_consent=False)
    foreign = PatientFacts(uuid.uuid4(), frozenset({world.other.id}), sharing_consent=False)
    seq0 = head_seq(session_factory)

    def use_case(s: Session) -> None:
        policy.enforce(s, actor, own, READ, resource_type="Patient", audit_action="read")
        s.add(AllianceFactory.build(code="POLICY-ROLLED-BACK"))
        policy.enforce(s, actor, foreign, WRITE, resource_type="Encounter", audit_action="update")

    with pytest.raises(PermissionDenied), unit_of_work(session_factory) as s:
        use_case(s)

    rows = events_after(session_factory, seq0)
    assert [(r.seq, r.action, r.outcome, r.patient_id) for r in rows] == [
        (seq0 + 1, "update", "denied", foreign.patient_id)
    ]
    with session_factory() as s:
        assert s.scalar(select(Alliance).where(Alliance.code == "POLICY-ROLLED-BACK")) is None


def test_an_unregistered_care_relationship_no_longer_grants_access(
    world: World, session: Session
) -> None:
    actor = make_user_actor(Role.CLINICIAN, world.other)
    facts = PatientFacts(world.patient_id, frozenset({world.home.id}), sharing_consent=True)
    kind = "test-consultation"

    def provider(_s: Session, who: Actor, patient_id: uuid.UUID) -> policy.CareRelationship:
        return policy.CareRelationship(kind="consultation", reference=f"C-{patient_id}")

    policy.register_care_relationship(kind, provider)
    try:
        assert kind in policy.registered_care_relationships()
        assert policy.decide(session, actor, facts, READ).basis is Basis.CONSENT_AND_CARE
    finally:
        policy.unregister_care_relationship(kind)
    assert kind not in policy.registered_care_relationships()
    assert policy.decide(session, actor, facts, READ).basis is Basis.DENIED


def test_facts_for_an_unknown_patient_is_not_found(
    session: Session, policy_patients: dict[uuid.UUID, PatientFacts]
) -> None:
    known = PatientFacts(uuid.uuid4(), frozenset(), sharing_consent=True)
    policy_patients[known.patient_id] = known
    assert policy.facts_for(session, known.patient_id) is known
    with pytest.raises(NotFound):
        policy.facts_for(session, uuid.uuid4())
