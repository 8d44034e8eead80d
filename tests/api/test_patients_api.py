"""Registering, finding and reading patients through the JSON API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.audit.models import AuditEvent
from medalliance.domains.alliance.models import Institution
from medalliance.domains.patients.models import PatientRecord, Person
from medalliance.kernel.actor import Actor
from medalliance.kernel.roles import Role
from tests.factories.alliance import AllianceFactory, InstitutionFactory

ID_WANG = "11010519491231002X"  # GB 11643's example: a woman born 1949-12-31

Headers = Callable[[Actor], dict[str, str]]
TOMORROW = (date.today() + timedelta(days=1)).isoformat()  # noqa: DTZ011 - a calendar date


@pytest.fixture
def two_members(session: Session) -> tuple[Institution, Institution]:
    alliance = AllianceFactory()
    return InstitutionFactory(alliance=alliance), InstitutionFactory(alliance=alliance)


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "family_name": "王",
        "given_name": "秀英",
        "sex": "female",
        "birth_date": "1949-12-31",
        "id_number": ID_WANG,
        "mrn": "MRN-0001",
        "phones": ["138 0013 8000"],
        "province": "浙江省",
        "city": "清河市",
        "district": "东城区",
        "street": "和平街 1 号",
        "emergency_contact": {"name": "李强", "phone": "13900139000", "relationship": "son"},
    }
    body.update(overrides)
    return body


def _count(session: Session, model: type) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_register_then_find_by_every_key(
    client: TestClient,
    two_members: tuple[Institution, Institution],
    make_actor: Callable[..., Actor],
    auth_headers: Headers,
) -> None:
    home, _ = two_members
    headers = auth_headers(make_actor(Role.CLINICIAN, institution=home))
    created = client.post("/api/patients", json=_body(), headers=headers)
    assert created.status_code == 201, created.text
    patient = created.json()["patient"]
    assert patient["name"] == "王秀英"
    assert patient["name_pinyin"] == "wang xiu ying"
    assert patient["id_number"] == ID_WANG
    assert created.json()["link_method"] == "new_person"
    for query in [
        "王秀",
        "wang xiu",
        "wangxiuying",
        "wxy",
        ID_WANG,
        "11010519491231002x",
        "13800138000",
        "MRN-0001",
        "汪秀英",
    ]:
        found = client.get("/api/patients", params={"q": query}, headers=headers)
        assert found.status_code == 200, (query, found.text)
        hits = found.json()
        assert [h["id"] for h in hits] == [patient["id"]], query
        assert hits[0]["id_number_masked"] == "110105********002X"


def test_second_member_links_by_resident_id(
    client: TestClient,
    session: Session,
    two_members: tuple[Institution, Institution],
    make_actor: Callable[..., Actor],
    auth_headers: Headers,
) -> None:
    home, other = two_members
    first = client.post(
        "/api/patients",
        json=_body(),
        headers=auth_headers(make_actor(Role.CLINICIAN, institution=home)),
    )
    assert first.status_code == 201
    legacy_15 = "110105491231002"
    second = client.post(
        "/api/patients",
        json=_body(id_number=legacy_15, mrn="B-77", given_name="秀瑛"),
        headers=auth_headers(make_actor(Role.NURSE, institution=other)),
    )
    assert second.status_code == 201, second.text
    assert second.json()["link_method"] == "resident_id"
    assert second.json()["patient"]["id"] == first.json()["patient"]["id"]
    assert len(second.json()["patient"]["records"]) == 2
    assert _count(session, Person) == 1
    assert _count(session, PatientRecord) == 2


@pytest.mark.parametrize(
    ("override", "field", "words"),
    [
        ({"id_number": "110105194912310021"}, "id_number", "check character"),
        ({"birth_date": "1950-01-01"}, "id_number", "1949-12-31"),
        ({"sex": "male"}, "id_number", "woman"),
        (
            {"birth_date": TOMORROW, "id_number": None},
            "birth_date",
            "future",
        ),
        ({"sex": "other"}, "sex", ""),
        ({"phones": ["call me"]}, "phones", "phone"),
    ],
)
def test_bad_registrations_are_422_and_change_nothing(
    client: TestClient,
    session: Session,
    two_members: tuple[Institution, Institution],
    make_actor: Callable[..., Actor],
    auth_headers: Headers,
    override: dict[str, Any],
    field: str,
    words: str,
) -> None:
    home, _ = two_members
    before = (_count(session, Person), _count(session, PatientRecord))
    response = client.post(
        "/api/patients",
        json=_body(**override),
        headers=auth_headers(make_actor(Role.CLINICIAN, institution=home)),
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert any(e["field"] == field for e in problem["errors"]), problem
    assert words in response.text
    assert (_count(session, Person), _count(session, PatientRecord)) == before


def test_idempotent_retry_creates_one_patient(
    client: TestClient,
    session: Session,
    two_members: tuple[Institution, Institution],
    make_actor: Callable[..., Actor],
    auth_headers: Headers,
) -> None:
    home, _ = two_members
    headers = {
        **auth_headers(make_actor(Role.CLINICIAN, institution=home)),
        "Idempotency-Key": "reg-42",
    }
    first = client.post("/api/patients", json=_body(id_number=None), headers=headers)
    again = client.post("/api/patients", json=_body(id_number=None), headers=headers)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["record_id"] == first.json()["record_id"]
    assert _count(session, PatientRecord) == 1


def test_duplicate_mrn_is_409(
    client: TestClient,
    two_members: tuple[Institution, Institution],
    make_actor: Callable[..., Actor],
    auth_headers: Headers,
) -> None:
    home, _ = two_members
    headers = auth_headers(make_actor(Role.CLINICIAN, institution=home))
    assert client.post("/api/patients", json=_body(), headers=headers).status_code == 201
    clash = client.post(
        "/api/patients", json=_body(id_number=None, given_name="伟"), headers=headers
    )
    assert clash.status_code == 409
    assert clash.json()["errors"][0]["field"] == "mrn"


def test_cannot_register_at_another_institution(
    client: TestClient,
    two_members: tuple[Institution, Institution],
    make_actor: Callable[..., Actor],
    auth_headers: Headers,
) -> None:
    home, other = two_members
    response = client.post(
        "/api/patients",
        json=_body(institution_code=other.code),
        headers=auth_headers(make_actor(Role.CLINICIAN, institution=home)),
    )
    assert response.status_code == 403


def test_consent_governs_reading_across_members(
    client: TestClient,
    session: Session,
    two_members: tuple[Institution, Institution],
    make_actor: Callable[..., Actor],
    auth_headers: Headers,
) -> None:
    home, other = two_members
    home_headers = auth_headers(make_actor(Role.CLINICIAN, institution=home))
    outsider = make_actor(Role.CLINICIAN, institution=other)
    patient_id = client.post("/api/patients", json=_body(), headers=home_headers).json()["patient"][
        "id"
    ]

    # The alliance default (opt-out) lets the outsider find the person, but reading the
    # record also needs a care relationship, which nothing has registered yet.
    assert [
        h["id"]
        for h in client.get(
            "/api/patients", params={"q": "王秀英"}, headers=auth_headers(outsider)
        ).json()
    ] == [patient_id]
    denied = client.get(f"/api/patients/{patient_id}", headers=auth_headers(outsider))
    assert denied.status_code == 403
    assert "care relationship" in denied.json()["detail"]
    audit_row = session.scalars(
        select(AuditEvent).where(AuditEvent.outcome == "denied").order_by(AuditEvent.seq.desc())
    ).first()
    assert audit_row is not None
    assert str(audit_row.patient_id) == patient_id

    withdrawn = client.post(
        f"/api/patients/{patient_id}/consent",
        json={"status": "withdrawn", "note": "patient asked"},
        headers=home_headers,
    )
    assert withdrawn.status_code == 201, withdrawn.text
    assert (
        client.get("/api/patients", params={"q": "王秀英"}, headers=auth_headers(outsider)).json()
        == []
    )
    history = client.get(f"/api/patients/{patient_id}/consent", headers=home_headers).json()
    assert [c["status"] for c in history] == ["withdrawn"]
    own = client.get(f"/api/patients/{patient_id}", headers=home_headers)
    assert own.status_code == 200
    assert own.json()["access_basis"] == "same-institution"
    assert own.json()["consent"]["status"] == "withdrawn"


def test_update_record_changes_golden_record_and_is_audited(
    client: TestClient,
    session: Session,
    two_members: tuple[Institution, Institution],
    make_actor: Callable[..., Actor],
    auth_headers: Headers,
) -> None:
    home, other = two_members
    headers = auth_headers(make_actor(Role.CLINICIAN, institution=home))
    created = client.post("/api/patients", json=_body(), headers=headers).json()
    updated = client.patch(
        f"/api/patients/records/{created['record_id']}",
        json={"phones": ["13700137000"], "pregnancy_status": "not_pregnant"},
        headers=headers,
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["phone"] == "13700137000"
    found = client.get("/api/patients", params={"q": "13700137000"}, headers=headers).json()
    assert [h["id"] for h in found] == [created["patient"]["id"]]
    assert client.get("/api/patients", params={"q": "13800138000"}, headers=headers).json() == []
    foreign = client.patch(
        f"/api/patients/records/{created['record_id']}",
        json={"city": "elsewhere"},
        headers=auth_headers(make_actor(Role.CLINICIAN, institution=other)),
    )
    assert foreign.status_code == 403
    import uuid

    actions = session.scalars(
        select(AuditEvent.action)
        .where(AuditEvent.patient_id == uuid.UUID(created["patient"]["id"]))
        .order_by(AuditEvent.seq)
    ).all()
    assert actions[:2] == ["create", "update"]
    assert actions[-1] == "update"  # the refused foreign update, audited as denied


def test_roles_without_patient_access_are_refused(
    client: TestClient,
    two_members: tuple[Institution, Institution],
    make_actor: Callable[..., Actor],
    auth_headers: Headers,
) -> None:
    home, _ = two_members
    for role in (Role.RESEARCHER, Role.AUDITOR, Role.ALLIANCE_ADMIN, Role.DEVICE_GATEWAY):
        headers = auth_headers(make_actor(role, institution=home))
        assert client.get("/api/patients", params={"q": "王"}, headers=headers).status_code == 403
        assert client.post("/api/patients", json=_body(), headers=headers).status_code == 403
