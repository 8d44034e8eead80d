"""The longitudinal record and its timeline, filtered by the access policy entry by entry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.audit.models import AuditEvent
from medalliance.kernel.actor import Actor
from medalliance.kernel.roles import Role
from tests.factories.access import UserFactory
from tests.factories.alliance import AllianceFactory, InstitutionFactory

Headers = Callable[[Actor], dict[str, str]]
ID_NUMBER = "11010519491231002X"


@pytest.fixture
def world(
    session: Session, make_actor: Callable[..., Actor], auth_headers: Headers, client: TestClient
) -> dict[str, Any]:
    """Three members; the patient is registered at A and B (linked by resident ID)."""
    alliance = AllianceFactory()
    a, b, c = (InstitutionFactory(alliance=alliance) for _ in range(3))
    headers = {
        name: auth_headers(make_actor(Role.CLINICIAN, institution=inst))
        for name, inst in (("a", a), ("b", b))
    }
    body = {
        "family_name": "王",
        "given_name": "秀英",
        "sex": "female",
        "birth_date": "1949-12-31",
        "id_number": ID_NUMBER,
    }
    first = client.post("/api/patients", json=body, headers=headers["a"]).json()
    second = client.post("/api/patients", json=body, headers=headers["b"]).json()
    assert first["patient"]["id"] == second["patient"]["id"]
    return {"a": a, "b": b, "c": c, "h": headers, "pid": first["patient"]["id"]}


def _encounter(client: TestClient, headers: dict[str, str], pid: str, **extra: Any) -> str:
    body = {
        "encounter_class": "outpatient",
        "start": "2026-11-01T09:00:00+08:00",
        "reason": "头晕 dizziness",
        **extra,
    }
    response = client.post(f"/api/patients/{pid}/encounters", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _write_history_at_a(client: TestClient, world: dict[str, Any]) -> str:
    h, pid = world["h"]["a"], world["pid"]
    encounter = _encounter(client, h, pid)
    diagnosis = client.post(
        f"/api/encounters/{encounter}/diagnoses",
        json={
            "primary": True,
            "western_code": "I10",
            "western_text": "Essential hypertension",
            "tcm_disease_text": "眩晕",
            "tcm_pattern_system": "icd11",
            "tcm_pattern_code": "SF52",
            "tcm_pattern_text": "肝阳上亢证 Liver yang ascendant hyperactivity pattern",
        },
        headers=h,
    )
    assert diagnosis.status_code == 201, diagnosis.text
    note = client.post(
        f"/api/encounters/{encounter}/notes",
        json={
            "kind": "tcm_four_examinations",
            "text": "四诊",
            "tcm_exam": {"tongue_body": "红", "tongue_coating": "黄", "pulse": "弦"},
        },
        headers=h,
    )
    assert note.status_code == 201, note.text
    assert (
        client.post(
            f"/api/patients/{pid}/allergies",
            json={
                "substance": "青霉素 penicillin",
                "category": "medication",
                "reaction": "rash",
                "severity": "moderate",
            },
            headers=h,
        ).status_code
        == 201
    )
    assert (
        client.post(
            f"/api/patients/{pid}/medications",
            json={"drug": "amlodipine", "dose": "5 mg", "route": "oral", "frequency": "qd"},
            headers=h,
        ).status_code
        == 201
    )
    return encounter


def test_own_institution_sees_its_entries(client: TestClient, world: dict[str, Any]) -> None:
    encounter = _write_history_at_a(client, world)
    response = client.get(f"/api/patients/{world['pid']}/timeline", headers=world["h"]["a"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert sorted(e["type"] for e in body["entries"]) == [
        "allergy",
        "diagnosis",
        "encounter",
        "medication",
        "note",
    ]
    assert {e["institution_code"] for e in body["entries"]} == {world["a"].code}
    detail = client.get(f"/api/encounters/{encounter}", headers=world["h"]["a"]).json()
    assert detail["diagnoses"][0]["tcm_pattern_code"] == "SF52"
    assert detail["notes"][0]["tcm_exam"]["pulse"] == "弦"


def test_other_member_needs_a_care_relationship_then_sees_everything(
    client: TestClient, world: dict[str, Any], session: Session
) -> None:
    _write_history_at_a(client, world)
    url = f"/api/patients/{world['pid']}/timeline"
    before = client.get(url, headers=world["h"]["b"]).json()
    assert before["entries"] == []
    assert before["hidden_institutions"] == [world["a"].code]

    _encounter(client, world["h"]["b"], world["pid"], reason="follow-up at the district")
    after = client.get(url, headers=world["h"]["b"]).json()
    assert after["hidden_institutions"] == []
    assert {e["institution_code"] for e in after["entries"]} == {world["a"].code, world["b"].code}
    assert [e["at"] for e in after["entries"]] == sorted(
        (e["at"] for e in after["entries"]), reverse=True
    )
    row = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.resource_type == "Timeline")
        .order_by(AuditEvent.seq.desc())
    ).first()
    assert row is not None
    assert '"hidden_institutions":[]' in row.detail

    withdrawn = client.post(
        f"/api/patients/{world['pid']}/consent",
        json={"status": "withdrawn"},
        headers=world["h"]["a"],
    )
    assert withdrawn.status_code == 201
    again = client.get(url, headers=world["h"]["b"]).json()
    assert again["hidden_institutions"] == [world["a"].code]
    assert {e["institution_code"] for e in again["entries"]} == {world["b"].code}


def test_a_member_without_a_record_needs_break_the_glass(
    client: TestClient,
    world: dict[str, Any],
    auth_headers: Headers,
    make_actor: Callable[..., Actor],
) -> None:
    _write_history_at_a(client, world)
    user = UserFactory(institution=world["c"], role=Role.CLINICIAN)
    headers = auth_headers(make_actor(Role.CLINICIAN, institution=world["c"], user_id=user.id))
    url = f"/api/patients/{world['pid']}/timeline"
    assert client.get(url, headers=headers).status_code == 403
    glass = client.post(
        "/api/access/break-glass",
        json={"patient_id": world["pid"], "reason": "unconscious in the ED"},
        headers=headers,
    )
    assert glass.status_code == 201, glass.text
    opened = client.get(url, headers=headers)
    assert opened.status_code == 200
    assert {e["institution_code"] for e in opened.json()["entries"]} == {world["a"].code}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("diagnoses", {"western_code": "hypertension"}, "western_code"),
        ("diagnoses", {"primary": True}, "diagnosis"),
        ("diagnoses", {"tcm_pattern_code": "SF52"}, "tcm_pattern"),
        ("diagnoses", {"tcm_pattern_system": "gbt15657", "tcm_pattern_code": "A01.02"}, "B"),
        ("notes", {"kind": "tcm_four_examinations", "text": "x"}, "tcm_exam"),
        ("procedures", {"text": "cupping", "performed_at": "2026-11-01T10:00:00"}, "performed_at"),
    ],
)
def test_bad_entries_are_422(
    client: TestClient, world: dict[str, Any], path: str, body: dict[str, Any], field: str
) -> None:
    encounter = _encounter(client, world["h"]["a"], world["pid"])
    response = client.post(
        f"/api/encounters/{encounter}/{path}", json=body, headers=world["h"]["a"]
    )
    assert response.status_code == 422, response.text
    assert field in response.text


def test_encounter_rules(
    client: TestClient,
    world: dict[str, Any],
    auth_headers: Headers,
    make_actor: Callable[..., Actor],
) -> None:
    url = f"/api/patients/{world['pid']}/encounters"
    backwards = client.post(
        url,
        json={
            "encounter_class": "inpatient",
            "start": "2026-11-02T09:00:00+08:00",
            "end": "2026-11-01T09:00:00+08:00",
        },
        headers=world["h"]["a"],
    )
    assert backwards.status_code == 422
    c_headers = auth_headers(make_actor(Role.CLINICIAN, institution=world["c"]))
    elsewhere = client.post(
        url,
        json={"encounter_class": "outpatient", "start": "2026-11-02T09:00:00+08:00"},
        headers=c_headers,
    )
    assert elsewhere.status_code == 403  # no record, no relationship: the policy refuses

    encounter = _encounter(client, world["h"]["a"], world["pid"])
    foreign = client.post(
        f"/api/encounters/{encounter}/diagnoses",
        json={"western_code": "I10"},
        headers=world["h"]["b"],
    )
    assert foreign.status_code == 403
    finished = client.patch(
        f"/api/encounters/{encounter}", json={"status": "finished"}, headers=world["h"]["a"]
    )
    assert finished.status_code == 200
    assert finished.json()["end"] is not None


def test_status_changes_and_unknown_types(client: TestClient, world: dict[str, Any]) -> None:
    _write_history_at_a(client, world)
    h, pid = world["h"]["a"], world["pid"]
    meds = client.get(
        f"/api/patients/{pid}/timeline", params={"types": "medication"}, headers=h
    ).json()["entries"]
    assert [m["type"] for m in meds] == ["medication"]
    stopped = client.patch(
        f"/api/medications/{meds[0]['id']}", json={"status": "stopped"}, headers=h
    )
    assert stopped.status_code == 200
    assert stopped.json()["status"] == "stopped"
    bad = client.patch(f"/api/medications/{meds[0]['id']}", json={"status": "paused"}, headers=h)
    assert bad.status_code == 422
    unknown = client.get(f"/api/patients/{pid}/timeline", params={"types": "x-ray"}, headers=h)
    assert unknown.status_code == 422
    assert "x-ray" in unknown.json()["detail"]
