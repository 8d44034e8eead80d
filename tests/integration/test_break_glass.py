"""Break-the-glass: a stated reason, an existing patient, an audited time-limited grant,
a review job that notifies every auditor once, and the auditors' review."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from medalliance.access import break_glass, policy
from medalliance.access.models import BreakGlassGrant, User
from medalliance.access.policy import AccessAction, Basis, PatientFacts
from medalliance.audit.models import AuditEvent
from medalliance.config import Settings
from medalliance.db.uow import unit_of_work
from medalliance.domains.alliance.models import Institution
from medalliance.jobs.models import Job, JobStatus, Notification
from medalliance.jobs.registry import JobContext, get_handler
from medalliance.jobs.worker import Worker
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from medalliance.kernel.pagination import PageRequest
from medalliance.kernel.roles import Role
from tests.conftest import actor_for
from tests.factories.access import UserFactory
from tests.factories.alliance import AllianceFactory, InstitutionFactory

Factory = sessionmaker[Session]


@dataclass
class Scene:
    patient: PatientFacts
    clinician: Actor  # works elsewhere; the patient has not consented to sharing
    colleague: Actor  # another clinician at the same institution
    auditors: list[Actor]  # active
    inactive_auditor: Actor
    researcher: Actor


def user_actor(role: Role, institution: Institution, *, active: bool = True) -> Actor:
    user = UserFactory(role=role, institution=institution, active=active)
    return actor_for(role, institution=institution, user_id=user.id, username=user.username)


@pytest.fixture
def scene(session: Session, policy_patients: dict[uuid.UUID, PatientFacts]) -> Scene:
    alliance = AllianceFactory()
    home, other = InstitutionFactory(alliance=alliance), InstitutionFactory(alliance=alliance)
    patient = PatientFacts(uuid.uuid4(), frozenset({home.id}), sharing_consent=False)
    policy_patients[patient.patient_id] = patient
    return Scene(
        patient=patient,
        clinician=user_actor(Role.CLINICIAN, other),
        colleague=user_actor(Role.CLINICIAN, other),
        auditors=[user_actor(Role.AUDITOR, home), user_actor(Role.AUDITOR, other)],
        inactive_auditor=user_actor(Role.AUDITOR, home, active=False),
        researcher=user_actor(Role.RESEARCHER, other),
    )


def start(factory: Factory, settings: Settings, actor: Actor, patient_id: uuid.UUID) -> uuid.UUID:
    with unit_of_work(factory) as s:
        grant = break_glass.start(
            session=s,
            actor=actor,
            settings=settings,
            patient_id=patient_id,
            reason="  Unconscious on arrival, allergy history needed  ",
        )
        return grant.id


def decide(factory: Factory, actor: Actor, patient: PatientFacts) -> policy.Decision:
    with factory() as s:
        return policy.decide(s, actor, patient, AccessAction.READ)


def counts(factory: Factory) -> tuple[int, int]:
    with factory() as s:
        grants = s.scalar(select(func.count()).select_from(BreakGlassGrant)) or 0
        jobs = s.scalar(select(func.count()).where(Job.kind == break_glass.REVIEW_JOB)) or 0
        return grants, jobs


# --- starting ----------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["", "   ", "abc", " \n\t x "])
def test_start_needs_a_stated_reason(
    scene: Scene, session_factory: Factory, settings: Settings, reason: str
) -> None:
    before = counts(session_factory)
    with pytest.raises(InvalidInput) as err, unit_of_work(session_factory) as s:
        break_glass.start(
            session=s,
            actor=scene.clinician,
            settings=settings,
            patient_id=scene.patient.patient_id,
            reason=reason,
        )
    assert err.value.field == "reason"
    assert counts(session_factory) == before


def test_start_needs_an_existing_patient(
    scene: Scene, session_factory: Factory, settings: Settings
) -> None:
    before = counts(session_factory)
    with pytest.raises(NotFound):
        start(session_factory, settings, scene.clinician, uuid.uuid4())
    assert counts(session_factory) == before


@pytest.mark.parametrize("who", ["auditors", "researcher"])
def test_only_clinical_roles_break_the_glass(
    scene: Scene, session_factory: Factory, settings: Settings, who: str
) -> None:
    actor = scene.auditors[0] if who == "auditors" else scene.researcher
    with pytest.raises(PermissionDenied):
        start(session_factory, settings, actor, scene.patient.patient_id)


def test_start_grants_time_limited_access_audits_and_queues_a_review(
    scene: Scene, session_factory: Factory, settings: Settings
) -> None:
    assert decide(session_factory, scene.clinician, scene.patient).allowed is False

    grant_id = start(session_factory, settings, scene.clinician, scene.patient.patient_id)

    with session_factory() as s:
        grant = s.get(BreakGlassGrant, grant_id)
        assert grant is not None
        assert (grant.user_id, grant.institution_id, grant.patient_id) == (
            scene.clinician.user_id,
            scene.clinician.institution_id,
            scene.patient.patient_id,
        )
        assert grant.reason == "Unconscious on arrival, allergy history needed"
        assert grant.expires_at - grant.started_at == timedelta(
            minutes=settings.break_glass_minutes
        )
        assert grant.ended_at is None and grant.reviewed_at is None
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "break-glass.start"))
        assert event is not None
        assert (event.resource_type, event.resource_id) == ("BreakGlassGrant", str(grant_id))
        assert (event.patient_id, event.purpose_of_use) == (scene.patient.patient_id, "BTG")
        assert event.reason == grant.reason
        assert event.actor_user_id == scene.clinician.user_id
        detail = json.loads(event.detail)
        assert (detail["type"], detail["subtype"]) == ("DCM 110113", "DCM 110127")
        job = s.scalar(select(Job).where(Job.kind == break_glass.REVIEW_JOB))
        assert job is not None
        assert job.status is JobStatus.PENDING
        assert json.loads(job.payload) == {"grant_id": str(grant_id)}

    granted = decide(session_factory, scene.clinician, scene.patient)
    assert (granted.allowed, granted.basis, granted.purpose_of_use) == (
        True,
        Basis.BREAK_THE_GLASS,
        "BTG",
    )
    assert granted.break_glass_id == grant_id
    # The grant is personal: a colleague at the same institution is still denied.
    assert decide(session_factory, scene.colleague, scene.patient).allowed is False


def test_ending_the_grant_stops_the_access(
    scene: Scene, session_factory: Factory, settings: Settings
) -> None:
    grant_id = start(session_factory, settings, scene.clinician, scene.patient.patient_id)

    with pytest.raises(NotFound), unit_of_work(session_factory) as s:
        break_glass.end(session=s, actor=scene.colleague, grant_id=grant_id)
    assert decide(session_factory, scene.clinician, scene.patient).allowed

    with unit_of_work(session_factory) as s:
        ended = break_glass.end(session=s, actor=scene.clinician, grant_id=grant_id)
    assert ended.ended_at is not None

    assert decide(session_factory, scene.clinician, scene.patient).basis is Basis.DENIED
    with session_factory() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "break-glass.end"))
    assert event is not None
    assert event.resource_id == str(grant_id)
    assert json.loads(event.detail)["subtype"] == "DCM 110128"
    with pytest.raises(Conflict), unit_of_work(session_factory) as s:
        break_glass.end(session=s, actor=scene.clinician, grant_id=grant_id)


def test_an_expired_grant_stops_the_access(
    scene: Scene, session_factory: Factory, settings: Settings
) -> None:
    grant_id = start(session_factory, settings, scene.clinician, scene.patient.patient_id)
    with unit_of_work(session_factory) as s:
        s.execute(
            update(BreakGlassGrant)
            .where(BreakGlassGrant.id == grant_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert decide(session_factory, scene.clinician, scene.patient).basis is Basis.DENIED


# --- the review job ----------------------------------------------------------------------


def notifications_by_user(factory: Factory, grant_job: uuid.UUID) -> dict[uuid.UUID, int]:
    with factory() as s:
        rows = s.execute(
            select(Notification.user_id, func.count())
            .where(Notification.source_job_id == grant_job)
            .group_by(Notification.user_id)
        ).all()
    return {row[0]: row[1] for row in rows}


def test_the_review_job_notifies_every_active_auditor_exactly_once(
    scene: Scene, session_factory: Factory, settings: Settings
) -> None:
    grant_id = start(session_factory, settings, scene.clinician, scene.patient.patient_id)
    with session_factory() as s:
        job_id = s.scalar(select(Job.id).where(Job.kind == break_glass.REVIEW_JOB))
        active_auditors = set(
            s.scalars(select(User.id).where(User.role == Role.AUDITOR, User.active.is_(True)))
        )
    assert job_id is not None
    assert {a.user_id for a in scene.auditors} <= active_auditors

    Worker(session_factory, name="w1").run_until_idle()

    expected = dict.fromkeys(active_auditors, 1)
    assert notifications_by_user(session_factory, job_id) == expected
    with session_factory() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status is JobStatus.DONE
        note = s.scalar(
            select(Notification).where(
                Notification.source_job_id == job_id,
                Notification.user_id == scene.auditors[0].user_id,
            )
        )
        assert note is not None
        assert note.kind == "break-glass-review"
        assert str(grant_id) in note.body and str(grant_id) in (note.link or "")
        assert scene.patient.patient_id.hex not in note.body  # ids of grants, not of patients

    # The job runs again (a worker died after the handler, an operator re-ran it …).
    with unit_of_work(session_factory) as s:
        s.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.PENDING))
    Worker(session_factory, name="w2").run_until_idle()
    handler = get_handler(break_glass.REVIEW_JOB)
    assert handler is not None
    with unit_of_work(session_factory) as s:
        handler(
            s,
            JobContext(
                job_id=job_id,
                kind=break_glass.REVIEW_JOB,
                attempt=3,
                payload={"grant_id": str(grant_id)},
            ),
        )

    assert notifications_by_user(session_factory, job_id) == expected
    assert scene.inactive_auditor.user_id not in expected
    assert scene.clinician.user_id not in expected


# --- the auditors' review ----------------------------------------------------------------


def test_auditors_see_every_grant_and_review_each_once(
    scene: Scene, session_factory: Factory, settings: Settings
) -> None:
    mine = start(session_factory, settings, scene.clinician, scene.patient.patient_id)
    theirs = start(session_factory, settings, scene.colleague, scene.patient.patient_id)
    auditor = scene.auditors[0]
    page = PageRequest()

    with unit_of_work(session_factory) as s:
        listed = break_glass.list_grants(session=s, actor=auditor, unreviewed_only=True, page=page)
        own = break_glass.list_grants(
            session=s, actor=scene.clinician, unreviewed_only=False, page=page
        )
    assert {g.id for g in listed.items} >= {mine, theirs}
    assert [g.id for g in own.items] == [mine]

    with pytest.raises(PermissionDenied), unit_of_work(session_factory) as s:
        break_glass.review(session=s, actor=scene.clinician, grant_id=mine, note="fine")
    with pytest.raises(InvalidInput), unit_of_work(session_factory) as s:
        break_glass.review(session=s, actor=auditor, grant_id=mine, note="   ")
    with pytest.raises(NotFound), unit_of_work(session_factory) as s:
        break_glass.review(session=s, actor=auditor, grant_id=uuid.uuid4(), note="x")

    with unit_of_work(session_factory) as s:
        reviewed = break_glass.review(
            session=s, actor=auditor, grant_id=mine, note=" Justified: ED admission. "
        )
    assert (reviewed.reviewed_by, reviewed.review_note) == (
        auditor.user_id,
        "Justified: ED admission.",
    )
    with pytest.raises(Conflict), unit_of_work(session_factory) as s:
        break_glass.review(session=s, actor=auditor, grant_id=mine, note="again")

    with unit_of_work(session_factory) as s:
        still_open = break_glass.list_grants(
            session=s, actor=auditor, unreviewed_only=True, page=page
        )
    assert mine not in {g.id for g in still_open.items}
    assert theirs in {g.id for g in still_open.items}
    with session_factory() as s:
        actions = list(
            s.scalars(select(AuditEvent.action).where(AuditEvent.actor_user_id == auditor.user_id))
        )
    assert actions.count("break-glass.review") == 1
    assert actions.count("search") == 2


# --- over the JSON API -------------------------------------------------------------------


def test_break_the_glass_over_the_api(
    scene: Scene,
    client: TestClient,
    auth_headers: Callable[[Actor], dict[str, str]],
    session_factory: Factory,
) -> None:
    clinician, auditor = auth_headers(scene.clinician), auth_headers(scene.auditors[0])
    url = "/api/access/break-glass"
    patient_id = str(scene.patient.patient_id)

    assert client.post(url, json={"patient_id": patient_id, "reason": "x"}).status_code == 401
    resp = client.post(url, json={"patient_id": patient_id, "reason": "   "}, headers=clinician)
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "reason"
    resp = client.post(url, json={"patient_id": patient_id, "reason": "Code blue"}, headers=auditor)
    assert resp.status_code == 403
    resp = client.post(
        url, json={"patient_id": str(uuid.uuid4()), "reason": "Code blue"}, headers=clinician
    )
    assert resp.status_code == 404

    resp = client.post(
        url, json={"patient_id": patient_id, "reason": "Code blue"}, headers=clinician
    )
    assert resp.status_code == 201, resp.text
    grant = resp.json()
    assert (grant["patient_id"], grant["reason"]) == (patient_id, "Code blue")
    assert grant["user_id"] == str(scene.clinician.user_id)
    assert decide(session_factory, scene.clinician, scene.patient).allowed

    Worker(session_factory, name="api-worker").run_until_idle()
    resp = client.get("/api/me/notifications", headers=auditor)
    assert resp.status_code == 200
    assert [n["kind"] for n in resp.json()] == ["break-glass-review"]

    resp = client.get(url, params={"unreviewed": "true"}, headers=auditor)
    assert grant["id"] in {g["id"] for g in resp.json()}
    resp = client.get(url, headers=auth_headers(scene.colleague))
    assert resp.json() == []

    assert client.post(f"{url}/{grant['id']}/end", headers=auditor).status_code == 403
    resp = client.post(f"{url}/{grant['id']}/end", headers=clinician)
    assert resp.status_code == 200
    assert resp.json()["ended_at"] is not None
    assert not decide(session_factory, scene.clinician, scene.patient).allowed

    review = f"{url}/{grant['id']}/review"
    assert client.post(review, json={"note": "ok"}, headers=clinician).status_code == 403
    resp = client.post(review, json={"note": "Justified."}, headers=auditor)
    assert resp.status_code == 200, resp.text
    assert resp.json()["reviewed_by"] == str(scene.auditors[0].user_id)
    assert client.post(review, json={"note": "again"}, headers=auditor).status_code == 409
