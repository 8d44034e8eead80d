"""MedicationRequest create: an order placed in another system, recorded as a
prescription with the status ``recorded`` (domains/tcm/recorded.py): round trip,
conditional create, search, access and audit, all-or-nothing transactions, the
informational safety check, and the JSON API and chart beside native prescriptions."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.audit.models import AuditEvent
from medalliance.domains.tcm.models import (
    OrderStatus,
    Prescription,
    PrescriptionDrug,
    PrescriptionStatus,
)
from tests.fhir.conftest import condition_resource, encounter_resource, patient_resource

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def _valid(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def _create(client: TestClient, h: dict[str, str], res: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/fhir/{res['resourceType']}", json=res, headers=h)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _issue(r: Any) -> dict[str, Any]:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    return dict(body["issue"][0])


def order(pref: str, eref: str | None = None, **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "identifier": [{"system": "urn:test:his:rx", "value": "RX-1"}],
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [
                {"system": RXNORM, "code": "314076", "display": "lisinopril 10 MG Oral Tablet"}
            ],
            "text": "lisinopril 10 MG Oral Tablet",
        },
        "subject": {"reference": pref},
        "authoredOn": "2026-11-01T09:10:00+08:00",
        "dosageInstruction": [
            {
                "text": "1 tablet once daily",
                "asNeededBoolean": False,
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "route": {"text": "oral"},
                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
            }
        ],
        **extra,
    }
    if eref:
        res["encounter"] = {"reference": eref}
    return res


def _patient_and_encounter(fhir: TestClient, h: dict[str, str]) -> tuple[str, str]:
    pref = f"Patient/{_create(fhir, h, patient_resource())['id']}"
    eref = f"Encounter/{_create(fhir, h, encounter_resource(pref))['id']}"
    return pref, eref


def _count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Prescription)) or 0


def test_create_and_read_back_the_same_order(
    fhir: TestClient, member: Any, session: Session
) -> None:
    pref, eref = _patient_and_encounter(fhir, member.h)
    cond = _create(fhir, member.h, condition_resource(pref, eref))
    sent = order(
        pref,
        eref,
        reasonReference=[{"reference": f"Condition/{cond['id']}", "display": "Hypertension"}],
    )
    made = _create(fhir, member.h, sent)
    _valid(made)
    read = fhir.get(f"/fhir/MedicationRequest/{made['id']}", headers=member.h).json()
    _valid(read)
    assert read == made
    assert read["status"] == "active" and read["intent"] == "order"
    assert read["subject"] == {"reference": pref}
    assert read["encounter"] == {"reference": eref}
    assert read["medicationCodeableConcept"] == sent["medicationCodeableConcept"]
    assert read["identifier"] == sent["identifier"]
    assert read["authoredOn"].startswith("2026-11-01T01:10:00")  # the same instant, in UTC
    assert read["reasonReference"] == [
        {"reference": f"Condition/{cond['id']}", "display": "Hypertension"}
    ]
    (dosage,) = read["dosageInstruction"]
    assert dosage["text"] == "1 tablet once daily"
    assert dosage["asNeededBoolean"] is False
    assert dosage["timing"] == {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}
    assert dosage["doseAndRate"] == [{"doseQuantity": {"value": 1, "unit": "tablet"}}]
    assert dosage["route"] == {"text": "oral"}
    # stored as an order recorded from elsewhere, not as a draft to sign here
    row = session.get(Prescription, uuid.UUID(made["id"]))
    assert row is not None
    assert row.status is PrescriptionStatus.RECORDED
    assert row.order_status is OrderStatus.ACTIVE and row.recorded_from == "fhir"
    assert row.signed_at is None and row.signed_by is None
    assert row.check_context["informational"] is True
    # in the patient's $everything, the same
    everything = fhir.get(f"/fhir/{pref}/$everything", headers=member.h).json()
    mine = [e["resource"] for e in everything["entry"] if e["resource"]["id"] == made["id"]]
    assert mine == [made]
    # every FHIR status is kept as sent
    for status in ("completed", "stopped", "on-hold", "cancelled", "entered-in-error", "draft"):
        one = _create(fhir, member.h, order(pref, status=status, identifier=[]))
        assert one["status"] == status
        got = fhir.get(f"/fhir/MedicationRequest/{one['id']}", headers=member.h).json()
        assert got["status"] == status


def test_conditional_create_is_idempotent(fhir: TestClient, member: Any, session: Session) -> None:
    pref, eref = _patient_and_encounter(fhir, member.h)
    h = {**member.h, "If-None-Exist": "identifier=urn:test:his:rx|RX-1"}
    first = fhir.post("/fhir/MedicationRequest", json=order(pref, eref), headers=h)
    second = fhir.post("/fhir/MedicationRequest", json=order(pref, eref), headers=h)
    assert first.status_code == 201 and second.status_code == 200, second.text
    assert first.json()["id"] == second.json()["id"]
    assert _count(session) == 1
    # the same identifier without the condition: a clear conflict, nothing written
    r = fhir.post("/fhir/MedicationRequest", json=order(pref, eref), headers=member.h)
    assert r.status_code == 409 and _count(session) == 1


def test_search_by_patient_code_status_date_and_identifier(fhir: TestClient, member: Any) -> None:
    pref, eref = _patient_and_encounter(fhir, member.h)
    other = f"Patient/{_create(fhir, member.h, _someone_else())['id']}"
    a = _create(fhir, member.h, order(pref, eref))
    b = _create(
        fhir,
        member.h,
        order(
            pref,
            status="stopped",
            identifier=[{"system": "urn:test:his:rx", "value": "RX-2"}],
            authoredOn="2019-03-01",
            medicationCodeableConcept={
                "coding": [{"system": RXNORM, "code": "860975", "display": "metformin 500 MG"}],
            },
        ),
    )
    _create(fhir, member.h, order(other, identifier=[]))

    def ids(query: str) -> set[str]:
        got = fhir.get(f"/fhir/MedicationRequest?{query}", headers=member.h)
        assert got.status_code == 200, got.text
        return {e["resource"]["id"] for e in got.json().get("entry", [])}

    assert ids(f"patient={pref}") == {a["id"], b["id"]}
    assert ids(f"subject={pref}&code={RXNORM}|314076") == {a["id"]}
    assert ids(f"patient={pref}&code=860975") == {b["id"]}
    assert ids(f"patient={pref}&code=http://snomed.info/sct|314076") == set()
    assert ids(f"patient={pref}&status=active") == {a["id"]}
    assert ids(f"patient={pref}&status=stopped") == {b["id"]}
    assert ids(f"patient={pref}&status:not=stopped") == {a["id"]}
    assert ids(f"patient={pref}&authoredon=lt2020-01-01") == {b["id"]}
    assert ids(f"patient={pref}&authoredon=2026-11-01") == {a["id"]}
    assert ids(f"_id={a['id']}") == {a["id"]}
    assert ids("identifier=urn:test:his:rx|RX-2") == {b["id"]}
    assert ids(f"encounter={eref}") == {a["id"]}
    bundle = fhir.get(
        f"/fhir/MedicationRequest?_id={a['id']}&_include=MedicationRequest:patient",
        headers=member.h,
    ).json()
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} == {
        "MedicationRequest",
        "Patient",
    }


def test_access_denied_stores_nothing_and_is_audited(
    fhir: TestClient, member: Any, session: Session
) -> None:
    pref, _ = _patient_and_encounter(fhir, member.h)
    before = _count(session)
    denied_before = session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.outcome == "denied")
    )
    # another member, no consent and no care relationship: refused, audited
    r = fhir.post("/fhir/MedicationRequest", json=order(pref), headers=member.h_other)
    assert r.status_code == 403, r.text
    # a researcher may not write patient data
    r = fhir.post("/fhir/MedicationRequest", json=order(pref), headers=member.h_researcher)
    assert r.status_code == 403
    assert _count(session) == before
    denied = session.scalars(select(AuditEvent).where(AuditEvent.outcome == "denied")).all()
    assert len(denied) >= (denied_before or 0) + 2
    assert any(e.resource_type == "Prescription" and e.action == "create" for e in denied)
    # the allowed write is audited too, once per order
    made = _create(fhir, member.h, order(pref))
    allowed = session.scalars(
        select(AuditEvent).where(
            AuditEvent.resource_type == "Prescription",
            AuditEvent.action == "create",
            AuditEvent.outcome != "denied",
        )
    ).all()
    assert len(allowed) == 1 and made["id"]


def test_bad_input_names_the_element_and_stores_nothing(
    fhir: TestClient, member: Any, session: Session
) -> None:
    pref, _ = _patient_and_encounter(fhir, member.h)
    other_pref, other_eref = _patient_and_encounter_other(fhir, member.h)
    cases = [
        (
            order(pref, medicationCodeableConcept=None),
            "MedicationRequest",  # medication[x] is required
        ),
        (
            order(pref, medicationCodeableConcept={"coding": [{"system": RXNORM}]}),
            "MedicationRequest.medicationCodeableConcept",
        ),
        (
            order(pref, medicationCodeableConcept=None, medicationReference={"reference": "#m"}),
            "MedicationRequest.medicationReference",
        ),
        (order(pref, other_eref), "MedicationRequest.encounter"),  # another patient's
        (order("Patient/0190d0a0-0000-7000-8000-000000000000"), "MedicationRequest.subject"),
        (
            order(pref, requester={"reference": f"Patient/{pref.split('/')[1]}"}),
            "MedicationRequest.requester",
        ),
    ]
    for res, path in cases:
        res = {k: v for k, v in res.items() if v is not None}
        r = fhir.post("/fhir/MedicationRequest", json=res, headers=member.h)
        assert r.status_code in (400, 422), (path, r.text)
        assert _issue(r)["expression"][0].startswith(path), (path, r.json())
    r = fhir.post("/fhir/MedicationRequest", json=order(pref, status="bogus"), headers=member.h)
    assert r.status_code in (400, 422)
    assert _issue(r)["expression"] == ["MedicationRequest.status"]
    assert _count(session) == 0
    assert other_pref != pref


def _someone_else() -> dict[str, Any]:
    return patient_resource(
        identifier=[{"system": "urn:medalliance:id:resident-id", "value": "110105196001010017"}],
        name=[{"family": "李", "given": ["明"]}],
        gender="male",
        birthDate="1960-01-01",
    )


def _patient_and_encounter_other(fhir: TestClient, h: dict[str, str]) -> tuple[str, str]:
    pref = f"Patient/{_create(fhir, h, _someone_else())['id']}"
    eref = f"Encounter/{_create(fhir, h, encounter_resource(pref))['id']}"
    return pref, eref


def test_transaction_with_a_bad_order_changes_nothing(
    fhir: TestClient, member: Any, session: Session
) -> None:
    p, e = (
        "urn:uuid:11111111-1111-4111-8111-111111111111",
        "urn:uuid:22222222-2222-4222-8222-222222222222",
    )
    entries = [
        {
            "fullUrl": p,
            "resource": patient_resource(),
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "fullUrl": e,
            "resource": encounter_resource(p),
            "request": {"method": "POST", "url": "Encounter"},
        },
        {"resource": order(p, e), "request": {"method": "POST", "url": "MedicationRequest"}},
        {
            "resource": order(p, e, identifier=[], medicationCodeableConcept={}),
            "request": {"method": "POST", "url": "MedicationRequest"},
        },
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    r = fhir.post("/fhir", json=bundle, headers=member.h)
    assert r.status_code in (400, 422), r.text
    assert _issue(r)["expression"][0].startswith("Bundle.entry[3]")
    assert _count(session) == 0
    assert session.scalar(select(func.count()).select_from(PrescriptionDrug)) == 0
    # the good ones alone: all written, the orders in one group
    r = fhir.post("/fhir", json={**bundle, "entry": entries[:3]}, headers=member.h)
    assert r.status_code == 200, r.text
    assert [x["response"]["status"] for x in r.json()["entry"]] == ["201 Created"] * 3
    assert _count(session) == 1


def test_safety_check_informs_and_counts_the_order_as_a_drug_in_use(
    fhir: TestClient, member: Any, session: Session
) -> None:
    pref, eref = _patient_and_encounter(fhir, member.h)
    allergy = {
        "resourceType": "AllergyIntolerance",
        "category": ["medication"],
        "code": {"text": "lisinopril"},
        "patient": {"reference": pref},
    }
    _create(fhir, member.h, allergy)
    made = _create(fhir, member.h, order(pref, eref))
    row = session.get(Prescription, uuid.UUID(made["id"]))
    assert row is not None
    # the recorded allergy is found, kept with its source, and did not block the record
    assert [f["rule"] for f in row.findings] == ["allergy"]
    assert "Allergy" in row.findings[0]["source"]
    # a recorded order can be neither signed nor cancelled here
    r = fhir.post(f"/api/prescriptions/{made['id']}/sign", json={}, headers=member.h)
    assert r.status_code == 409, r.text
    r = fhir.post(
        f"/api/prescriptions/{made['id']}/cancel",
        json={"reason": "placed in error elsewhere"},
        headers=member.h,
    )
    assert r.status_code == 409
    # the JSON API reads it
    api = fhir.get(f"/api/prescriptions/{made['id']}", headers=member.h)
    assert api.status_code == 200, api.text
    assert api.json()["status"] == "recorded" and api.json()["order_status"] == "active"
    assert api.json()["drugs"][0]["dosage_text"] == "1 tablet once daily"
    # a native prescription here sees the active recorded order as a drug in use
    check = fhir.post(
        "/api/tcm/safety-check",
        json={"herbs": [{"name": "甘草", "dose_g": 6}], "patient_id": pref.split("/")[1]},
        headers=member.h,
    )
    assert check.status_code == 200, check.text
    considered = check.json()["drugs"]
    assert any(
        d["name"] == "lisinopril 10 MG Oral Tablet" and "recorded order" in d["origin"]
        for d in considered
    )
