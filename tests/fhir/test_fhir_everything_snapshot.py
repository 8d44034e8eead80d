"""Patient/$everything of a mixed record, byte for byte (key order included) against a
snapshot written by the code before the fast rendering (commit 734cbc9): ids are
numbered by first appearance and the server's own timestamps masked, everything else
is compared as it is answered."""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from medalliance.domains.results import schemas as result_schemas
from medalliance.domains.results import service as results_service
from tests.fhir.conftest import condition_resource, encounter_resource, patient_resource

SNAPSHOT = Path(__file__).parent / "snapshots" / "everything_mixed.json"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# what the server stamps (now(), with microseconds); the senders' times have none
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00")
MEMBER = re.compile(r"INST\d{4}")  # the factory's member codes follow the tests run before
LOINC = "http://loinc.org"


def _post(fhir: TestClient, h: dict[str, str], res: dict[str, Any]) -> str:
    r = fhir.post(f"/fhir/{res['resourceType']}", json=res, headers=h)
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def _observation(pref: str, code: str, n: int, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}], "text": f"item {code}"},
        "subject": {"reference": pref},
        "effectiveDateTime": f"2026-10-1{n}T08:00:00Z",
        "issued": f"2026-10-1{n}T10:00:00Z",
        **value,
    }


def mixed_record(fhir: TestClient, h: dict[str, str], session: Session, actor: Any) -> str:
    """One of every type $everything answers that can be written here, with the
    optional elements present on some and absent on others."""
    pid = _post(fhir, h, patient_resource())
    pref = f"Patient/{pid}"
    e1 = _post(fhir, h, encounter_resource(pref))
    e2 = _post(
        fhir,
        h,
        encounter_resource(
            pref,
            status="in-progress",
            period={"start": "2026-10-12T08:00:00Z"},
            reasonCode=[],
            type=[{"coding": [{"system": "urn:test:type", "code": "FU", "display": "follow-up"}]}],
            identifier=[{"system": "urn:test:visit", "value": "V-2"}],
            **{
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "HH",
                }
            },
        ),
    )
    _post(fhir, h, condition_resource(pref, f"Encounter/{e1}"))
    _post(
        fhir,
        h,
        {
            "resourceType": "Condition",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "resolved",
                    }
                ]
            },
            "code": {
                "coding": [
                    {"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"},
                    {"system": "http://snomed.info/sct", "code": "44054006", "display": "DM2"},
                ]
            },
            "subject": {"reference": pref},
            "encounter": {"reference": f"Encounter/{e2}"},
            "identifier": [{"system": "urn:test:dx", "value": "D-2"}],
        },
    )
    _post(
        fhir,
        h,
        {
            "resourceType": "Procedure",
            "status": "completed",
            "subject": {"reference": pref},
            "encounter": {"reference": f"Encounter/{e1}"},
            "code": {"text": "针灸 acupuncture"},
            "performedDateTime": "2026-10-10T09:00:00Z",
        },
    )
    _post(
        fhir,
        h,
        {
            "resourceType": "Procedure",
            "status": "completed",
            "subject": {"reference": pref},
            "encounter": {"reference": f"Encounter/{e2}"},
            "code": {
                "coding": [{"system": "http://snomed.info/sct", "code": "80146002"}],
                "text": "appendectomy",
            },
            "performedDateTime": "2026-10-12T09:00:00Z",
        },
    )
    _post(
        fhir,
        h,
        {
            "resourceType": "AllergyIntolerance",
            "patient": {"reference": pref},
            "code": {"text": "青霉素 penicillin"},
            "category": ["medication"],
            "reaction": [{"manifestation": [{"text": "rash"}], "severity": "moderate"}],
        },
    )
    _post(
        fhir,
        h,
        {
            "resourceType": "AllergyIntolerance",
            "patient": {"reference": pref},
            "code": {
                "coding": [{"system": "urn:medalliance:allergy-category", "code": "herb"}],
                "text": "附子",
            },
        },
    )
    _post(
        fhir,
        h,
        {
            "resourceType": "MedicationStatement",
            "status": "active",
            "subject": {"reference": pref},
            "medicationCodeableConcept": {"text": "amlodipine 5 mg"},
        },
    )
    _post(
        fhir,
        h,
        {
            "resourceType": "MedicationStatement",
            "status": "completed",
            "subject": {"reference": pref},
            "medicationCodeableConcept": {
                "coding": [{"system": "urn:test:drug", "code": "MET"}],
                "text": "metformin",
            },
            "effectivePeriod": {"start": "2026-01-01", "end": "2026-06-30"},
            "dosage": [{"text": "500 mg bid", "route": {"text": "oral"}}],
            "identifier": [{"system": "urn:test:med", "value": "M-2"}],
        },
    )
    o1 = _post(
        fhir,
        h,
        _observation(
            pref,
            "2345-7",
            1,
            valueQuantity={"value": 5.4, "system": "http://unitsofmeasure.org", "code": "mmol/L"},
            interpretation=[
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                            "code": "H",
                        }
                    ]
                }
            ],
            referenceRange=[{"text": "3.9-5.6"}],
            identifier=[{"system": "urn:test:sample", "value": "S-1"}],
        ),
    )
    o2 = _post(
        fhir,
        h,
        _observation(
            pref,
            "5778-6",
            2,
            valueCodeableConcept={
                "coding": [{"system": "http://snomed.info/sct", "code": "371244009"}],
                "text": "yellow",
            },
            category=[
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "laboratory",
                        }
                    ]
                }
            ],
        ),
    )
    _post(fhir, h, _observation(pref, "8867-4", 3, valueString="regular"))
    _post(
        fhir,
        h,
        {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "24331-1"}], "text": "Lipid panel"},
            "subject": {"reference": pref},
            "encounter": {"reference": f"Encounter/{e1}"},
            "effectiveDateTime": "2026-10-11T08:00:00Z",
            "issued": "2026-10-11T12:00:00Z",
            "result": [{"reference": f"Observation/{o1}"}, {"reference": f"Observation/{o2}"}],
            "conclusion": "Raised glucose.",
            "conclusionCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "R73"}]}],
        },
    )
    results_service.record_imaging_report(
        session=session,
        actor=actor,
        person_id=uuid.UUID(pid),
        data=result_schemas.ImagingReportIn(
            item_code="24627-2",
            item_name="Chest CT",
            effective_at=datetime(2026, 10, 13, 9, tzinfo=UTC),
            modality="CT",
            body_site="chest",
            report_text="No nodules.",
            conclusion="Normal chest CT.",
        ),
    )
    session.commit()
    r = fhir.post(
        f"/api/patients/{pid}/consent", json={"status": "withdrawn", "note": "snapshot"}, headers=h
    )
    assert r.status_code in (200, 201), r.text
    return pid


def normalised(body: dict[str, Any]) -> str:
    """The answer with the server's stamps masked and ids numbered by first appearance
    (entries of a type ordered by their content first: ids are random)."""
    text = MEMBER.sub("<member>", STAMP.sub("<stamp>", json.dumps(body, ensure_ascii=False)))
    masked = json.loads(text)

    def key(entry: dict[str, Any]) -> tuple[str, str]:
        res = entry.get("resource", {})
        return res.get("resourceType", ""), UUID.sub("<id>", json.dumps(res, ensure_ascii=False))

    masked["entry"] = sorted(masked["entry"], key=key)
    text = json.dumps(masked, ensure_ascii=False, indent=1)
    numbers: dict[str, str] = {}
    return UUID.sub(lambda m: numbers.setdefault(m.group(0), f"<id{len(numbers)}>"), text)


def test_everything_of_a_mixed_record_is_unchanged(
    fhir: TestClient, member: Any, session: Session
) -> None:
    pid = mixed_record(fhir, member.h, session, member.clinician)
    r = fhir.get(f"/fhir/Patient/{pid}/$everything", headers=member.h)
    assert r.status_code == 200, r.text
    got = normalised(r.json())
    if os.environ.get("MEDALLIANCE_WRITE_SNAPSHOT"):  # only to record a deliberate change
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(got + "\n", encoding="utf-8")
    kinds = sorted({e["resource"]["resourceType"] for e in r.json()["entry"]})
    assert kinds == [
        "AllergyIntolerance",
        "Condition",
        "Consent",
        "DiagnosticReport",
        "Encounter",
        "MedicationStatement",
        "Observation",
        "Patient",
        "Procedure",
    ]
    assert got == SNAPSHOT.read_text(encoding="utf-8").rstrip("\n")
