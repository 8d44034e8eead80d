"""Device create: a device known from another system (Synthea's implants and home
equipment) recorded in the monitoring domain without a gateway, assigned to its patient
through the access policy; found again by patient, type, identifier and _id."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.audit.models import AuditEvent
from medalliance.domains.monitoring.catalogue import DeviceType
from medalliance.domains.monitoring.models import Device, DeviceAssignment
from tests.fhir.conftest import patient_resource

SNOMED = "http://snomed.info/sct"


def _create(client: TestClient, h: dict[str, str], res: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/fhir/{res['resourceType']}", json=res, headers=h)
    assert r.status_code == 201, r.text
    return dict(r.json())


def device(pref: str | None, **extra: Any) -> dict[str, Any]:
    """As Synthea writes it (us-core-implantable-device)."""
    res: dict[str, Any] = {
        "resourceType": "Device",
        "udiCarrier": [
            {
                "deviceIdentifier": "96702913868313",
                "carrierHRF": "(01)96702913868313(11)580712(17)830727"
                "(10)528662860311789(21)9866037",
            }
        ],
        "status": "active",
        "distinctIdentifier": "96702913868313",
        "manufactureDate": "1958-07-12T23:58:16-04:00",
        "expirationDate": "1983-07-27T23:58:16-04:00",
        "lotNumber": "528662860311789",
        "serialNumber": "9866037",
        "deviceName": [{"name": "Home nebulizer (physical object)", "type": "user-friendly-name"}],
        "type": {
            "coding": [
                {
                    "system": SNOMED,
                    "code": "170615005",
                    "display": "Home nebulizer (physical object)",
                }
            ],
            "text": "Home nebulizer (physical object)",
        },
        **extra,
    }
    if pref:
        res["patient"] = {"reference": pref}
    return res


def test_create_read_and_search(fhir: TestClient, member: Any, session: Session) -> None:
    pref = f"Patient/{_create(fhir, member.h, patient_resource())['id']}"
    sent = device(pref)
    made = _create(fhir, member.h, sent)
    get_fhir_model_class("Device").model_validate(made)
    read = fhir.get(f"/fhir/Device/{made['id']}", headers=member.h).json()
    assert read == made
    for key in ("udiCarrier", "status", "distinctIdentifier", "lotNumber", "serialNumber"):
        assert read[key] == sent[key], key
    assert read["deviceName"] == sent["deviceName"]
    assert read["type"]["coding"] == sent["type"]["coding"]
    assert read["patient"] == {"reference": pref}
    assert read["manufactureDate"].startswith("1958-07-13T03:58:16")  # the same instant, UTC
    row = session.get(Device, uuid.UUID(made["id"]))
    assert row is not None and row.gateway_id is None
    assert row.device_type is DeviceType.OTHER and row.status == "active"
    # a meter the monitoring catalogue knows gets its type
    meter = _create(
        fhir,
        member.h,
        device(
            pref,
            serialNumber="SN-GLU",
            udiCarrier=None,
            distinctIdentifier=None,
            type={"coding": [{"system": SNOMED, "code": "337414009"}]},
        ),
    )
    assert session.get(Device, uuid.UUID(meter["id"])).device_type is DeviceType.GLUCOMETER  # type: ignore[union-attr]

    def ids(query: str, h: dict[str, str] | None = None) -> set[str]:
        got = fhir.get(f"/fhir/Device?{query}", headers=h or member.h)
        assert got.status_code == 200, got.text
        return {e["resource"]["id"] for e in got.json().get("entry", [])}

    assert ids(f"patient={pref}") == {made["id"], meter["id"]}
    assert ids(f"type={SNOMED}|170615005") == {made["id"]}
    assert ids("type=170615005") == {made["id"]}
    assert ids("type=glucometer") == {meter["id"]}
    assert ids(f"type={SNOMED}|337414009") == {meter["id"]}
    assert ids("identifier=9866037") == {made["id"]}
    assert ids("identifier=96702913868313") == {made["id"]}
    assert ids(f"_id={made['id']}") == {made["id"]}
    # another member sees neither the device nor, without consent, the patient's devices
    assert ids(f"_id={made['id']}", member.h_other) == set()
    denied = fhir.get(f"/fhir/Device?patient={pref}", headers=member.h_other)
    assert denied.status_code == 403


def test_access_policy_and_audit(fhir: TestClient, member: Any, session: Session) -> None:
    pref = f"Patient/{_create(fhir, member.h, patient_resource())['id']}"
    before = session.scalar(select(func.count()).select_from(Device))
    r = fhir.post("/fhir/Device", json=device(pref), headers=member.h_other)
    assert r.status_code == 403, r.text
    r = fhir.post("/fhir/Device", json=device(pref), headers=member.h_researcher)
    assert r.status_code == 403
    # a device without a patient is registry data: a clinician may not add it
    r = fhir.post("/fhir/Device", json=device(None), headers=member.h)
    assert r.status_code == 403
    assert session.scalar(select(func.count()).select_from(Device)) == before
    assert session.scalar(select(func.count()).select_from(DeviceAssignment)) == 0
    denied = session.scalars(
        select(AuditEvent).where(
            AuditEvent.outcome == "denied", AuditEvent.resource_type == "Device"
        )
    ).all()
    assert len(denied) >= 2
    made = _create(fhir, member.h, device(pref))
    created = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "create",
            AuditEvent.resource_type == "Device",
            AuditEvent.resource_id == made["id"],
        )
    ).all()
    assert len(created) == 1 and created[0].patient_id is not None


def test_bad_input_and_duplicates(fhir: TestClient, member: Any, session: Session) -> None:
    pref = f"Patient/{_create(fhir, member.h, patient_resource())['id']}"
    r = fhir.post(
        "/fhir/Device",
        json=device("Patient/0190d0a0-0000-7000-8000-000000000000"),
        headers=member.h,
    )
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["Device.patient"]
    _create(fhir, member.h, device(pref))
    # the same serial number again: a conflict, nothing written
    r = fhir.post("/fhir/Device", json=device(pref), headers=member.h)
    assert r.status_code == 409
    assert session.scalar(select(func.count()).select_from(Device)) == 1
    # another member records the same implant of its own patient: its own record of it
    other = patient_resource(
        identifier=[{"system": "urn:medalliance:id:resident-id", "value": "110105196001010017"}],
        name=[{"family": "李", "given": ["明"]}],
        gender="male",
        birthDate="1960-01-01",
    )
    oref = f"Patient/{_create(fhir, member.h_other, other)['id']}"
    _create(fhir, member.h_other, device(oref))
    assert session.scalar(select(func.count()).select_from(Device)) == 2
    # idempotent with If-None-Exist
    h = {**member.h, "If-None-Exist": "identifier=9866037"}
    again = fhir.post("/fhir/Device", json=device(pref), headers=h)
    assert again.status_code == 200, again.text
    assert session.scalar(select(func.count()).select_from(Device)) == 2
