"""Observation, DiagnosticReport, MedicationRequest and Device over the results, TCM and
monitoring domains: create/read/search through the domain services, access and errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.domains.results import schemas as result_schemas
from medalliance.domains.results import service as results_service
from medalliance.domains.results.models import Result
from tests.factories.monitoring import assign, make_device, make_gateway
from tests.fhir.conftest import encounter_resource, patient_resource

LOINC = "http://loinc.org"


def _valid(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def _create(client: TestClient, h: dict[str, str], res: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/fhir/{res['resourceType']}", json=res, headers=h)
    assert r.status_code == 201, r.text
    return dict(r.json())


def observation(pref: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": "2345-7", "display": "Glucose"}]},
        "subject": {"reference": pref},
        "effectiveDateTime": "2026-11-02T08:00:00+08:00",
        "valueQuantity": {
            "value": 6.1,
            "unit": "mmol/L",
            "system": "http://unitsofmeasure.org",
            "code": "mmol/L",
        },
        "identifier": [{"system": "urn:test:lis", "value": "OBS-1"}],
        **extra,
    }


def test_observation_create_read_search(fhir: TestClient, member: Any, session: Session) -> None:
    pref = f"Patient/{_create(fhir, member.h, patient_resource())['id']}"
    obs = _create(fhir, member.h, observation(pref))
    _valid(obs)
    assert obs["valueQuantity"]["value"] == 6.1 and obs["valueQuantity"]["code"] == "mmol/L"
    row = session.get(Result, uuid.UUID(obs["id"]))
    assert row is not None and row.item_code == "2345-7" and row.source == "fhir"
    bp = _create(
        fhir,
        member.h,
        observation(
            pref,
            category=[
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                        }
                    ]
                }
            ],
            code={"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure"}]},
            valueQuantity=None,
            identifier=None,
            component=[
                {
                    "code": {"coding": [{"system": LOINC, "code": "8480-6"}], "text": "Systolic"},
                    "valueQuantity": {"value": 128, "code": "mm[Hg]"},
                },
                {
                    "code": {"coding": [{"system": LOINC, "code": "8462-4"}], "text": "Diastolic"},
                    "valueQuantity": {"value": 82, "code": "mm[Hg]"},
                },
            ],
        ),
    )
    assert bp["valueString"] == "Systolic: 128 mm[Hg]; Diastolic: 82 mm[Hg]"
    assert fhir.get(f"/fhir/Observation/{obs['id']}", headers=member.h).json()["id"] == obs["id"]

    def total(query: str) -> int:
        r = fhir.get(f"/fhir/Observation?patient={pref}&{query}", headers=member.h)
        assert r.status_code == 200, r.text
        return int(r.json()["total"])

    assert total(f"code={LOINC}|2345-7") == 1
    assert total("code=85354-9") == 1
    assert total("code=9999-9") == 0
    assert total("category=laboratory") == 1
    assert total("category=vital-signs") == 1
    assert total("date=ge2026-11-02&date=lt2026-11-03") == 2
    assert total("date=lt2026-11-01") == 0
    assert total("status=final") == 2
    assert total("status=preliminary") == 0
    assert total("identifier=urn:test:lis|OBS-1") == 1
    bundle = fhir.get(
        f"/fhir/Observation?subject={pref}&code=2345-7&_include=Observation:patient",
        headers=member.h,
    ).json()
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} == {"Observation", "Patient"}
    rev = fhir.get(
        f"/fhir/Patient?_id={pref.split('/')[1]}&_revinclude=Observation:patient",
        headers=member.h,
    ).json()
    assert sum(e["resource"]["resourceType"] == "Observation" for e in rev["entry"]) == 2
    # another member's clinician without a care relationship or consent sees nothing
    denied = fhir.get(f"/fhir/Observation/{obs['id']}", headers=member.h_other)
    assert denied.status_code == 403
    assert denied.json()["resourceType"] == "OperationOutcome"


def test_observation_bad_input_is_an_outcome_and_changes_nothing(
    fhir: TestClient, member: Any, session: Session
) -> None:
    pref = f"Patient/{_create(fhir, member.h, patient_resource())['id']}"
    before = len(list(session.scalars(select(Result.id))))
    no_value = observation(pref, valueQuantity=None)
    r = fhir.post("/fhir/Observation", json=no_value, headers=member.h)
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["Observation.value[x]"]
    bad_unit = observation(pref, valueQuantity={"value": 6.1, "code": "mmol/%%L"})  # not UCUM
    r = fhir.post("/fhir/Observation", json=bad_unit, headers=member.h)
    assert r.status_code == 422, r.text
    assert "unit" in r.json()["issue"][0]["diagnostics"]
    nobody = observation("Patient/" + str(uuid.uuid4()))
    r = fhir.post("/fhir/Observation", json=nobody, headers=member.h)
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["Observation.subject"]
    assert len(list(session.scalars(select(Result.id)))) == before


def test_diagnostic_report_reads_imaging_reports(
    fhir: TestClient, member: Any, session: Session
) -> None:
    patient = _create(fhir, member.h, patient_resource())
    pref = f"Patient/{patient['id']}"
    _create(fhir, member.h, observation(pref))  # a lab result is not a DiagnosticReport
    report = results_service.record_imaging_report(
        session=session,
        actor=member.clinician,
        person_id=uuid.UUID(patient["id"]),
        data=result_schemas.ImagingReportIn(
            item_code="24627-2",
            item_name="Chest CT",
            effective_at=datetime(2026, 11, 3, 9, tzinfo=UTC),
            modality="CT",
            body_site="chest",
            report_text="No nodules.",
            conclusion="Normal chest CT.",
        ),
    )
    session.commit()
    found = fhir.get(f"/fhir/DiagnosticReport?patient={pref}", headers=member.h).json()
    assert found["total"] == 1
    res = found["entry"][0]["resource"]
    _valid(res)
    assert res["id"] == str(report.id) and res["conclusion"] == "Normal chest CT."
    assert res["code"]["coding"][0] == {"system": LOINC, "code": "24627-2"}
    for query, n in (("code=24627-2", 1), ("category=RAD", 1), ("category=LAB", 0)):
        got = fhir.get(f"/fhir/DiagnosticReport?patient={pref}&{query}", headers=member.h)
        assert got.json()["total"] == n, query
    obs = fhir.get(f"/fhir/Observation?patient={pref}", headers=member.h).json()["entry"][0]
    missing = fhir.get(f"/fhir/DiagnosticReport/{obs['resource']['id']}", headers=member.h)
    assert missing.status_code == 404
    # an imaging report is not created through FHIR (a lab panel is): a clear 422
    r = fhir.post("/fhir/DiagnosticReport", json=res, headers=member.h)
    assert r.status_code == 422
    assert "imaging report" in r.json()["issue"][0]["diagnostics"]


def test_medication_request_reads_tcm_prescriptions(
    fhir: TestClient, member: Any, session: Session
) -> None:
    pref = f"Patient/{_create(fhir, member.h, patient_resource())['id']}"
    enc = _create(fhir, member.h, encounter_resource(pref))
    body = {
        "herbs": [{"name": "黄芪", "dose_g": 15}, {"name": "白术", "dose_g": 9}],
        "dose_count": 7,
        "herbal_form": "decoction",
        "western": [{"drug": "metformin", "dose": "500 mg", "route": "oral", "frequency": "bid"}],
    }
    r = fhir.post(f"/api/encounters/{enc['id']}/prescriptions", json=body, headers=member.h)
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    read = fhir.get(f"/fhir/MedicationRequest/{pid}", headers=member.h).json()
    _valid(read)
    assert read["status"] == "draft" and read["intent"] == "order"
    herbs = read["contained"][0]["ingredient"]
    assert [
        (i["itemCodeableConcept"]["text"], i["strength"]["numerator"]["value"]) for i in herbs
    ] == [
        ("黄芪", 15.0),
        ("白术", 9.0),
    ]
    assert any("metformin" in d["text"] for d in read["dosageInstruction"])
    for query, n in (
        (f"patient={pref}", 1),
        (f"patient={pref}&status=draft", 1),
        (f"patient={pref}&status=active", 0),
        (f"encounter=Encounter/{enc['id']}", 1),
        (f"patient={pref}&authoredon=lt2000-01-01", 0),
    ):
        got = fhir.get(f"/fhir/MedicationRequest?{query}", headers=member.h)
        assert got.status_code == 200, got.text
        assert got.json()["total"] == n, query
    assert fhir.get(f"/fhir/MedicationRequest/{pid}", headers=member.h_other).status_code == 403
    # a herbal prescription is written here, not sent: a contained formula is refused
    r = fhir.post("/fhir/MedicationRequest", json=read, headers=member.h)
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["MedicationRequest.medicationReference"]


def test_device_read_and_search(fhir: TestClient, member: Any, session: Session) -> None:
    from medalliance.domains.monitoring.catalogue import DeviceType
    from medalliance.domains.patients import service as patients_service

    patient = _create(fhir, member.h, patient_resource())
    gateway = make_gateway(member.inst)
    cuff = make_device(gateway, serial="SN-FHIR-1")
    make_device(gateway, DeviceType.GLUCOMETER, serial="SN-FHIR-2")
    record = patients_service.local_record(session, uuid.UUID(patient["id"]), member.inst.id)
    assert record is not None
    assign(cuff, record)
    session.commit()
    read = fhir.get(f"/fhir/Device/{cuff.id}", headers=member.h).json()
    _valid(read)
    assert read["serialNumber"] == "SN-FHIR-1"

    def ids(query: str, h: dict[str, str] | None = None) -> set[str]:
        got = fhir.get(f"/fhir/Device?{query}", headers=h or member.h)
        assert got.status_code == 200, got.text
        return {e["resource"]["id"] for e in got.json().get("entry", [])}

    assert ids("identifier=SN-FHIR-1") == {str(cuff.id)}
    assert len(ids("type=glucometer")) == 1
    assert ids(f"patient=Patient/{patient['id']}") == {str(cuff.id)}
    assert ids("identifier=SN-FHIR-1", member.h_other) == set()  # another member's devices
    denied = fhir.get(f"/fhir/Device?patient=Patient/{patient['id']}", headers=member.h_other)
    assert denied.status_code == 403


def test_metadata_lists_the_new_types(fhir: TestClient) -> None:
    types = {r["type"]: r for r in fhir.get("/fhir/metadata").json()["rest"][0]["resource"]}
    for rtype in ("Observation", "DiagnosticReport"):  # a lab panel is created
        assert {i["code"] for i in types[rtype]["interaction"]} == {
            "read",
            "search-type",
            "create",
            "vread",  # a result is never changed once written: one version each
            "history-instance",
        }
    for rtype in ("MedicationRequest", "Device"):  # recorded from another system
        assert {i["code"] for i in types[rtype]["interaction"]} == {
            "read",
            "search-type",
            "create",
        }
        assert types[rtype]["conditionalCreate"] is True
    params = {p["name"] for p in types["Observation"]["searchParam"]}
    assert {"patient", "subject", "code", "date", "status", "category"} <= params
    assert "Observation:patient" in types["Patient"]["searchRevInclude"]
