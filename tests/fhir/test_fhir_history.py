"""History where the domain keeps every version: results, consent decisions and the
audit trail are never changed once written, so each resource has one version, "1"."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle

from tests.fhir.conftest import encounter_resource, patient_resource
from tests.fhir.test_fhir_everything import _create, _observation

VERSIONED = {"Observation", "DiagnosticReport", "Consent", "AuditEvent"}


def test_capability_lists_history_exactly_for_the_versioned_types(fhir: TestClient) -> None:
    body = fhir.get("/fhir/metadata").json()
    for res in body["rest"][0]["resource"]:
        codes = {i["code"] for i in res["interaction"]}
        versioned = res["type"] in VERSIONED
        offered = {"vread", "history-instance"} & codes
        assert offered == ({"vread", "history-instance"} if versioned else set()), res["type"]
        assert res["readHistory"] is versioned
        assert res["versioning"] == ("versioned" if versioned else "no-version")


def test_observation_history_vread_and_etag(fhir: TestClient, member: Any) -> None:
    patient = _create(fhir, member.h, patient_resource())
    pref = f"Patient/{patient['id']}"
    obs = _create(fhir, member.h, _observation(pref, "2345-7", 5.4, "2026-10-10"))
    url = f"/fhir/Observation/{obs['id']}"
    read = fhir.get(url, headers=member.h)
    assert read.headers["etag"] == 'W/"1"' and "last-modified" in read.headers
    assert read.json()["meta"]["versionId"] == "1"

    history = fhir.get(f"{url}/_history", headers=member.h)
    assert history.status_code == 200
    body = history.json()
    Bundle.model_validate(body)
    assert body["type"] == "history" and body["total"] == 1
    assert body["entry"][0]["resource"] == read.json()
    assert body["entry"][0]["response"]["etag"] == 'W/"1"'

    v1 = fhir.get(f"{url}/_history/1", headers=member.h)
    assert v1.status_code == 200 and v1.json() == read.json()
    assert fhir.get(f"{url}/_history/2", headers=member.h).status_code == 404

    # a correction is a new result: the first keeps its one version, unchanged
    corrected = _observation(pref, "2345-7", 6.2, "2026-10-10")
    corrected["status"] = "corrected"
    corrected["identifier"] = [{"system": "urn:lab:sample", "value": "2345-7-fixed"}]
    new = _create(fhir, member.h, corrected)
    assert new["id"] != obs["id"] and new["status"] == "amended"
    assert fhir.get(url, headers=member.h).json() == read.json()
    assert fhir.get(f"{url}/_history", headers=member.h).json()["total"] == 1

    # the policy applies as to a read: another member's clinician is refused
    assert fhir.get(f"{url}/_history", headers=member.h_other).status_code == 403
    assert fhir.get(f"{url}/_history/1", headers=member.h_other).status_code == 403


def test_types_updated_in_place_offer_no_history(fhir: TestClient, member: Any) -> None:
    patient = _create(fhir, member.h, patient_resource())
    enc = _create(fhir, member.h, encounter_resource(f"Patient/{patient['id']}"))
    for url in (f"/fhir/Encounter/{enc['id']}", f"/fhir/Patient/{patient['id']}"):
        r = fhir.get(f"{url}/_history", headers=member.h)
        assert r.status_code == 405 and r.json()["issue"][0]["code"] == "not-supported"
        assert fhir.get(f"{url}/_history/1", headers=member.h).status_code == 405
        read = fhir.get(url, headers=member.h)
        assert "etag" not in read.headers and "versionId" not in read.json()["meta"]


def test_consent_history(fhir: TestClient, member: Any) -> None:
    patient = _create(fhir, member.h, patient_resource())
    pid = patient["id"]
    for status in ("granted", "withdrawn"):
        r = fhir.post(f"/api/patients/{pid}/consent", json={"status": status}, headers=member.h)
        assert r.status_code in (200, 201), r.text
    found = fhir.get(f"/fhir/Consent?patient=Patient/{pid}&_sort=date", headers=member.h).json()
    decisions = [e["resource"] for e in found["entry"]]
    assert [d["status"] for d in decisions] == ["active", "inactive"]
    for decision in decisions:  # each decision is its own resource with its one version
        body = fhir.get(f"/fhir/Consent/{decision['id']}/_history", headers=member.h).json()
        assert [e["resource"] for e in body["entry"]] == [decision]
