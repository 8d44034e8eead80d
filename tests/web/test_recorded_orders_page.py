"""An order recorded from another system (FHIR MedicationRequest) on the chart: the
prescriptions tab names it as recorded, with its own status and dosage text, beside a
native prescription; the timeline lists it at the time it was placed."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from medalliance.domains.patients import service as patients_service
from medalliance.domains.patients.identity import Sex
from medalliance.domains.patients.schemas import PatientCreate
from medalliance.domains.records.models import Encounter
from medalliance.domains.records.schemas import EncounterCreate
from medalliance.domains.records.service import create_encounter
from medalliance.domains.tcm import recorded, schemas
from medalliance.domains.tcm import service as tcm_service
from medalliance.kernel.roles import Role
from tests.conftest import actor_for
from tests.factories.access import UserFactory
from tests.factories.alliance import AllianceFactory, InstitutionFactory
from tests.web.conftest import web_login

HX = {"HX-Request": "true"}


def test_recorded_order_shows_on_the_prescriptions_tab_and_timeline(
    client: TestClient, session: Session
) -> None:
    inst = InstitutionFactory(alliance=AllianceFactory())
    doctor = UserFactory(role=Role.CLINICIAN, institution=inst, display_name="Dr A")
    actor = actor_for(Role.CLINICIAN, institution=inst, user_id=doctor.id)
    person: uuid.UUID = patients_service.register(
        session=session,
        actor=actor,
        data=PatientCreate(
            family_name="欧阳",
            given_name="秀兰",
            sex=Sex.FEMALE,
            birth_date=date(1949, 12, 31),
            id_number="11010519491231002X",
        ),
    ).patient.id
    encounter: Encounter = create_encounter(
        session=session,
        actor=actor,
        person_id=person,
        data=EncounterCreate(
            encounter_class="outpatient", status="finished", start=datetime.now(UTC)
        ),
    )
    tcm_service.create_prescription(
        session=session,
        actor=actor,
        encounter_id=encounter.id,
        data=schemas.PrescriptionWrite(
            western=[
                schemas.WesternLine(drug="metformin", dose="500 mg", route="oral", frequency="bid")
            ]
        ),
    )
    (order,) = recorded.record_prescriptions(
        session=session,
        actor=actor,
        person_id=person,
        items=[
            schemas.PrescriptionRecord(
                order_status="stopped",
                authored_at=datetime(2019, 3, 1, 8, 0, tzinfo=UTC),
                drugs=[
                    schemas.RecordedDrugLine(
                        drug="lisinopril 10 MG Oral Tablet", dosage_text="1 tablet daily"
                    )
                ],
            )
        ],
        recorded_from="fhir",
    )
    session.commit()
    web_login(client, doctor)
    tab = client.get(f"/patients/{person}/chart/prescriptions", headers=HX)
    assert tab.status_code == 200, tab.text
    assert "lisinopril 10 MG Oral Tablet 1 tablet daily" in tab.text
    assert "来自其他系统" in tab.text  # recorded from another system (zh_CN by default)
    assert "已停止" in tab.text  # its own status: stopped
    assert "None" not in tab.text  # a line without dose, route or frequency
    assert "metformin 500 mg oral bid" in tab.text  # the native one unchanged
    timeline = client.get(f"/patients/{person}/chart/timeline", headers=HX)
    assert timeline.status_code == 200
    assert "lisinopril 10 MG Oral Tablet 1 tablet daily" in timeline.text
    page = client.get(f"/prescriptions/{order}")  # the prescription's own page
    assert page.status_code == 200, page.text
    assert "1 tablet daily" in page.text and "None" not in page.text
