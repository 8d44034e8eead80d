"""Data the clinical browser tests start from, written on the live server's database
through the services (as the demo accounts): a patient registered at the lead hospital
with an encounter and recent lab results, a silent monitored patient (an open alert),
and an uncertain MPI match. Each test makes its own, so tests do not depend on each other."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.access.models import User
from medalliance.db.uow import unit_of_work
from medalliance.domains.alliance.models import Institution
from medalliance.domains.monitoring import jobs as monitoring_jobs
from medalliance.domains.monitoring.models import Alert, Device, DeviceAssignment, DeviceGateway
from medalliance.domains.patients import service as patients_service
from medalliance.domains.patients.identity import Sex
from medalliance.domains.patients.mpi import service as mpi_service
from medalliance.domains.patients.mpi.models import ReviewItem, ReviewStatus
from medalliance.domains.patients.schemas import PatientCreate, RegistrationResult
from medalliance.domains.records import schemas as records_schemas
from medalliance.domains.records import service as records_service
from medalliance.domains.records.models import EncounterClass
from medalliance.domains.results import schemas as results_schemas
from medalliance.domains.results import service as results_service
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from tests.browser.conftest import LiveServer
from tests.conftest import actor_for

GLUCOSE, POTASSIUM = "14749-6", "2823-3"


def actor(session: Session, username: str) -> Actor:
    """The demo account's actor, as the JSON API would build it from its token."""
    user = session.scalar(select(User).where(User.username == username))
    assert user is not None and user.institution_id is not None, username
    institution = session.get(Institution, user.institution_id)
    return actor_for(user.role, institution=institution, user_id=user.id, username=username)


def _register(
    session: Session, who: Actor, family: str, given: str, **fields: object
) -> RegistrationResult:
    data = PatientCreate.model_validate(
        {"family_name": family, "given_name": given, "sex": Sex.FEMALE, **fields}
    )
    return patients_service.register(session=session, actor=who, data=data)


@dataclass(frozen=True)
class Chart:
    person_id: uuid.UUID
    encounter_id: uuid.UUID


def patient_with_results(server: LiveServer, given: str, born: date) -> Chart:
    """A patient of the lead hospital (QH-LEAD, the `clinician` account's) with an
    encounter today and a glucose and a potassium from two days ago (recognisable)."""
    with unit_of_work(server.factory) as session:
        doctor = actor(session, "clinician")
        person = _register(session, doctor, "闻", given, birth_date=born).patient.id
        encounter = records_service.create_encounter(
            session=session,
            actor=doctor,
            person_id=person,
            data=records_schemas.EncounterCreate(
                encounter_class=EncounterClass.OUTPATIENT,
                start=utcnow() - timedelta(minutes=30),
                reason="咳嗽 头痛 三天",
            ),
        )
        for code, value in ((GLUCOSE, 5.6), (POTASSIUM, 4.1)):
            results_service.record_lab_result(
                session=session,
                actor=doctor,
                person_id=person,
                data=results_schemas.LabResultIn(
                    item_code=code,
                    effective_at=utcnow() - timedelta(days=2),
                    value_numeric=value,
                    unit="mmol/L",
                ),
            )
        return Chart(person, encounter.id)


def silent_monitored_patient(server: LiveServer, given: str) -> tuple[uuid.UUID, uuid.UUID]:
    """A patient of the lead hospital with a device that has sent nothing: the
    silent-patient job raises a 'no readings' alert. (person id, alert id)"""
    with unit_of_work(server.factory) as session:
        nurse = actor(session, "nurse")
        person = _register(session, nurse, "静", given, birth_date=date(1950, 1, 9)).patient.id
        assert nurse.institution_id is not None
        record = patients_service.local_record(session, person, nurse.institution_id)
        assert record is not None
        gateway = session.scalar(
            select(DeviceGateway).where(DeviceGateway.institution_id == nurse.institution_id)
        )
        assert gateway is not None, "the demo seeds a gateway per monitoring member"
        device = Device(
            institution_id=nurse.institution_id,
            gateway_id=gateway.id,
            device_type="bp_monitor",
            model="Omron HEM-7136",
            serial=f"SN-{uuid.uuid4().hex[:12]}",
            active=True,
        )
        session.add(device)
        session.flush()
        session.add(
            DeviceAssignment(
                device_id=device.id,
                patient_record_id=record.id,
                institution_id=nurse.institution_id,
                start=utcnow() - timedelta(days=10),
                end=None,
                responsible_user_id=nurse.user_id,
            )
        )
        session.flush()
        monitoring_jobs.check_silent_patients(session)
        alert_id = session.scalar(
            select(Alert.id).where(Alert.patient_record_id == record.id, Alert.status == "open")
        )
        assert alert_id is not None
        return person, alert_id


def uncertain_match(server: LiveServer, family: str, given: str) -> uuid.UUID:
    """The same woman registered at the lead hospital and, with her birth day and month
    swapped, a new phone and address, at a district hospital; the pair is put in the
    review queue as the MPI does for an uncertain match. (Whether the MPI itself queues
    or links such a pair depends on the name frequencies of the database, which other
    tests change: here the pair is queued directly, its comparison computed by the
    MPI's own model.) Returns the review item's id."""
    base = {
        "birth_date": date(1975, 3, 8),
        "phones": ["13812345678"],
        "city": "清河市",
        "district": "东城区",
        "street": "和平街12号",
        "postcode": "330102",
    }
    moved = {
        **base,
        "birth_date": date(1975, 8, 3),
        "phones": ["13700000001"],
        "street": "人民路5号",
        "district": "南湖区",
        "postcode": "330109",
    }
    with unit_of_work(server.factory) as session:
        first = _register(session, actor(session, "nurse"), family, given, **base)
        # The care manager's member (QH-DC-01) registers the second record.
        second = _register(session, actor(session, "caremanager"), family, given, **moved)
        records = [first.record_id, second.record_id]
        item = session.scalar(
            select(ReviewItem).where(
                ReviewItem.record_id == records[1], ReviewItem.candidate_record_id == records[0]
            )
        )
        if item is None:
            item = ReviewItem(
                record_id=records[1],
                candidate_record_id=records[0],
                probability=0.7,
                weight=0.0,
                comparison={},
                status=ReviewStatus.OPEN,
                created_at=utcnow(),
            )
            session.add(item)
            session.flush()
            item.comparison = mpi_service.rescore(session, item)
            item.weight = round(sum(float(c["weight"]) for c in item.comparison.values()), 2)
        session.flush()
        return item.id
