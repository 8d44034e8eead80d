"""The alliance registry over the JSON API: institutions, departments, practitioners, beds.

Who may call which route is the access matrix's job (test_access_matrix.py); these tests
check what the routes do, the problems they return, and the audit rows they write.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from medalliance.access.permissions import permissions_for
from medalliance.audit.models import AuditEvent
from medalliance.config import Settings
from medalliance.domains.alliance import schemas
from medalliance.domains.alliance import service as svc
from medalliance.domains.alliance.models import (
    Alliance,
    Bed,
    BedStatus,
    Department,
    Discipline,
    Institution,
    InstitutionType,
    Practitioner,
    Tier,
)
from medalliance.kernel.actor import Actor
from medalliance.kernel.errors import Conflict
from medalliance.kernel.roles import Role
from tests.api.access_matrix import (
    assert_problem,
    audit_events,
    build_app_once,
    error_fields,
    fingerprint,
    rebind,
    row_count,
    unique,
)
from tests.factories.alliance import (
    AllianceFactory,
    BedFactory,
    DepartmentFactory,
    InstitutionFactory,
    PractitionerFactory,
)


@pytest.fixture(scope="module")
def module_app(database_url: str) -> FastAPI:
    return build_app_once(database_url)


@pytest.fixture
def app(
    module_app: FastAPI,
    settings: Settings,
    session_factory: sessionmaker[Session],
    session: Session,
) -> FastAPI:
    return rebind(module_app, settings, session_factory)


@dataclass
class World:
    alliance: Alliance
    lead: Institution
    secondary: Institution
    primary: Institution
    alliance_admin: Actor
    lead_admin: Actor
    clinician: Actor
    headers: Callable[[Actor], dict[str, str]]

    def h(self, actor: Actor) -> dict[str, str]:
        return self.headers(actor)


@pytest.fixture
def world(
    session: Session,
    make_actor: Callable[..., Actor],
    auth_headers: Callable[[Actor], dict[str, str]],
) -> World:
    alliance = AllianceFactory()
    lead = InstitutionFactory(alliance=alliance, tier=Tier.LEAD, code=unique("LEAD"))
    secondary = InstitutionFactory(
        alliance=alliance, tier=Tier.SECONDARY, code=unique("SEC"), lead_institution_id=lead.id
    )
    primary = InstitutionFactory(
        alliance=alliance, tier=Tier.PRIMARY, code=unique("PRI"), lead_institution_id=lead.id
    )
    return World(
        alliance=alliance,
        lead=lead,
        secondary=secondary,
        primary=primary,
        alliance_admin=make_actor(Role.ALLIANCE_ADMIN),
        lead_admin=make_actor(Role.INSTITUTION_ADMIN, institution=lead),
        clinician=make_actor(Role.CLINICIAN, institution=primary),
        headers=auth_headers,
    )


def _institution_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": unique("NEW"),
        "name_zh": "新城社区卫生服务中心",
        "name_en": "Xincheng Community Health Centre",
        "tier": "primary",
        "type": "community_health_centre",
        "district": "新城区",
    }
    body.update(overrides)
    return body


def _only_event(session: Session, **where: object) -> AuditEvent:
    events = audit_events(session, **where)
    assert len(events) == 1, f"expected one audit row for {where}, found {len(events)}"
    return events[0]


# --- institutions ----------------------------------------------------------------------


def test_every_registry_reader_lists_institutions_lead_first(
    client: TestClient, session: Session, world: World
) -> None:
    inactive = InstitutionFactory(alliance=world.alliance, tier=Tier.PRIMARY, active=False)

    response = client.get("/api/institutions", headers=world.h(world.clinician))

    assert response.status_code == 200
    codes = [i["code"] for i in response.json()]
    ours = [c for c in codes if c in {world.lead.code, world.secondary.code, world.primary.code}]
    assert ours == [world.lead.code, world.secondary.code, world.primary.code]
    assert inactive.code not in codes
    active_total = session.scalar(
        select(func.count()).select_from(Institution).where(Institution.active.is_(True))
    )
    assert response.headers["X-Total-Count"] == str(active_total)

    with_inactive = client.get(
        "/api/institutions",
        params={"include_inactive": "true", "tier": "primary"},
        headers=world.h(world.clinician),
    )
    listed = {i["code"] for i in with_inactive.json()}
    assert {world.primary.code, inactive.code} <= listed
    assert all(i["tier"] == "primary" for i in with_inactive.json())

    members = client.get(
        "/api/institutions", params={"lead": world.lead.code}, headers=world.h(world.clinician)
    )
    assert {i["code"] for i in members.json()} == {world.secondary.code, world.primary.code}


def test_alliance_admin_creates_an_institution(
    client: TestClient, session: Session, world: World
) -> None:
    body = _institution_body(lead_institution_code=world.lead.code)

    response = client.post("/api/institutions", json=body, headers=world.h(world.alliance_admin))

    assert response.status_code == 201, response.text
    created = response.json()
    assert created["code"] == body["code"]
    assert created["tier"] == "primary"
    assert created["alliance_id"] == str(world.alliance.id)
    assert created["lead_institution_id"] == str(world.lead.id)
    assert created["active"] is True
    row = session.scalar(select(Institution).where(Institution.code == body["code"]))
    assert row is not None and str(row.id) == created["id"]
    event = _only_event(session, action="create", resource_type="Institution", resource_id=row.id)
    assert event.outcome == "success"
    assert event.actor_user_id == world.alliance_admin.user_id
    assert json.loads(event.detail)["changes"]["code"] == body["code"]

    fetched = client.get(f"/api/institutions/{body['code']}", headers=world.h(world.clinician))
    assert fetched.status_code == 200
    assert fetched.json()["id"] == created["id"]


def test_a_duplicate_institution_code_is_a_409_and_writes_nothing(
    client: TestClient, session: Session, world: World
) -> None:
    before = fingerprint(session)
    audit_before = row_count(session, AuditEvent)

    response = client.post(
        "/api/institutions",
        json=_institution_body(code=world.primary.code),
        headers=world.h(world.alliance_admin),
    )

    body = assert_problem(response, 409, "conflict")
    assert world.primary.code in body["detail"]
    assert error_fields(body) == {"code"}
    assert fingerprint(session) == before
    assert row_count(session, AuditEvent) == audit_before


def test_an_unknown_tier_is_a_422_naming_the_field(
    client: TestClient, session: Session, world: World
) -> None:
    count = row_count(session, Institution)

    response = client.post(
        "/api/institutions",
        json=_institution_body(tier="quaternary"),
        headers=world.h(world.alliance_admin),
    )

    body = assert_problem(response, 422, "validation-error")
    assert "tier" in error_fields(body)
    assert "tier" in body["detail"]
    assert row_count(session, Institution) == count


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"lead_institution_code": "NO-SUCH-LEAD"}, "lead_institution_code"),
        ({"alliance_code": "NO-SUCH-ALLIANCE"}, "alliance_code"),
    ],
)
def test_a_failed_create_leaves_nothing_half_written(
    client: TestClient,
    session: Session,
    world: World,
    overrides: dict[str, str],
    field: str,
) -> None:
    before = fingerprint(session)
    audit_before = row_count(session, AuditEvent)
    body = _institution_body(**overrides)

    response = client.post("/api/institutions", json=body, headers=world.h(world.alliance_admin))

    problem = assert_problem(response, 422, "invalid-input")
    assert error_fields(problem) == {field}
    assert session.scalar(select(Institution).where(Institution.code == body["code"])) is None
    assert fingerprint(session) == before
    assert row_count(session, AuditEvent) == audit_before


def test_a_lead_of_another_alliance_is_refused(
    client: TestClient, session: Session, world: World
) -> None:
    foreign_lead = InstitutionFactory(tier=Tier.LEAD)  # its own, second alliance
    count = row_count(session, Institution)

    response = client.post(
        "/api/institutions",
        json=_institution_body(
            alliance_code=world.alliance.code, lead_institution_code=foreign_lead.code
        ),
        headers=world.h(world.alliance_admin),
    )

    assert error_fields(assert_problem(response, 422)) == {"lead_institution_code"}
    assert row_count(session, Institution) == count


def test_an_institution_admin_renames_their_institution_but_cannot_change_its_tier(
    client: TestClient, session: Session, world: World
) -> None:
    url = f"/api/institutions/{world.lead.code}"

    renamed = client.patch(
        url,
        json={"name_en": "Renamed Lead Hospital", "address": "1 Main Street"},
        headers=world.h(world.lead_admin),
    )

    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name_en"] == "Renamed Lead Hospital"
    event = _only_event(
        session, action="update", resource_type="Institution", resource_id=world.lead.id
    )
    assert event.actor_user_id == world.lead_admin.user_id
    assert json.loads(event.detail)["changes"] == {
        "name_en": "Renamed Lead Hospital",
        "address": "1 Main Street",
    }

    before = fingerprint(session)
    for change in (
        {"tier": "secondary"},
        {"active": False},
        {"name_zh": "新名", "tier": "primary"},
    ):
        refused = client.patch(url, json=change, headers=world.h(world.lead_admin))
        problem = assert_problem(refused, 403, "permission-denied")
        assert "alliance administrator" in problem["detail"]
    assert fingerprint(session) == before
    session.refresh(world.lead)
    assert world.lead.tier is Tier.LEAD
    assert world.lead.name_en == "Renamed Lead Hospital"


def test_the_alliance_admin_changes_the_structure(
    client: TestClient, session: Session, world: World
) -> None:
    response = client.patch(
        f"/api/institutions/{world.primary.code}",
        json={"tier": "secondary", "lead_institution_code": None},
        headers=world.h(world.alliance_admin),
    )

    assert response.status_code == 200, response.text
    assert response.json()["tier"] == "secondary"
    assert response.json()["lead_institution_id"] is None
    session.refresh(world.primary)
    assert world.primary.tier is Tier.SECONDARY


def test_an_institution_cannot_lead_itself(client: TestClient, world: World) -> None:
    response = client.patch(
        f"/api/institutions/{world.lead.code}",
        json={"lead_institution_code": world.lead.code},
        headers=world.h(world.alliance_admin),
    )
    assert error_fields(assert_problem(response, 422)) == {"lead_institution_code"}


@pytest.mark.parametrize("field", ["name_zh", "name_en", "tier", "type", "active"])
def test_nulling_a_required_institution_field_is_a_422_not_a_500(
    client: TestClient, session: Session, world: World, field: str
) -> None:
    before = fingerprint(session)

    response = client.patch(
        f"/api/institutions/{world.lead.code}",
        json={field: None},
        headers=world.h(world.alliance_admin),
    )

    assert field in error_fields(assert_problem(response, 422, "validation-error"))
    assert fingerprint(session) == before


def test_an_unknown_institution_is_a_404_problem(client: TestClient, world: World) -> None:
    for url in (
        "/api/institutions/NO-SUCH",
        "/api/institutions/NO-SUCH/departments",
        "/api/beds/availability?institution=NO-SUCH",
    ):
        body = assert_problem(client.get(url, headers=world.h(world.clinician)), 404, "not-found")
        assert "NO-SUCH" in body["detail"]


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("GET", "/api/departments/not-a-uuid", 422),
        ("GET", "/api/institutions?limit=0", 422),
        ("GET", "/api/no-such-route", 404),
        ("DELETE", "/api/institutions", 405),
    ],
)
def test_framework_errors_are_problem_documents_too(
    client: TestClient, world: World, method: str, url: str, status: int
) -> None:
    response = client.request(method, url, headers=world.h(world.clinician))
    assert_problem(response, status)


# --- departments -------------------------------------------------------------------------


def test_departments_are_created_listed_and_unique_per_institution(
    client: TestClient, session: Session, world: World
) -> None:
    url = f"/api/institutions/{world.lead.code}/departments"
    body = {"code": "ZYNK", "name_zh": "中医内科", "name_en": "TCM Internal", "discipline": "tcm"}

    created = client.post(url, json=body, headers=world.h(world.lead_admin))

    assert created.status_code == 201, created.text
    department_id = created.json()["id"]
    assert created.json()["institution_id"] == str(world.lead.id)
    _only_event(session, action="create", resource_type="Department", resource_id=department_id)
    listed = client.get(url, headers=world.h(world.clinician))
    assert [d["code"] for d in listed.json()] == ["ZYNK"]

    count = row_count(session, Department)
    duplicate = client.post(url, json=body, headers=world.h(world.lead_admin))
    assert error_fields(assert_problem(duplicate, 409, "conflict")) == {"code"}
    assert row_count(session, Department) == count

    # The same code at another institution is fine.
    elsewhere = client.post(
        f"/api/institutions/{world.primary.code}/departments",
        json=body,
        headers=world.h(world.alliance_admin),
    )
    assert elsewhere.status_code == 201, elsewhere.text


def test_an_unknown_discipline_is_a_422(client: TestClient, session: Session, world: World) -> None:
    count = row_count(session, Department)
    response = client.post(
        f"/api/institutions/{world.lead.code}/departments",
        json={"code": "X1", "name_zh": "科", "name_en": "Dept", "discipline": "homeopathy"},
        headers=world.h(world.lead_admin),
    )
    assert "discipline" in error_fields(assert_problem(response, 422))
    assert row_count(session, Department) == count


def test_a_department_is_updated_and_audited(
    client: TestClient, session: Session, world: World
) -> None:
    department = DepartmentFactory(institution=world.lead)

    response = client.patch(
        f"/api/departments/{department.id}",
        json={"name_en": "Integrated Cardiology", "active": False},
        headers=world.h(world.lead_admin),
    )

    assert response.status_code == 200, response.text
    assert response.json()["active"] is False
    session.refresh(department)
    assert department.name_en == "Integrated Cardiology"
    event = _only_event(
        session, action="update", resource_type="Department", resource_id=department.id
    )
    assert json.loads(event.detail)["changes"] == {
        "name_en": "Integrated Cardiology",
        "active": "False",
    }


# --- practitioners -----------------------------------------------------------------------


def _practitioner_body(institution: Institution, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "institution_code": institution.code,
        "name": "王医生",
        "name_en": "Dr Wang",
        "title": "chief_physician",
        "discipline": "integrated",
        "specialty": "Cardiology",
        "licence_number": unique("L"),
    }
    body.update(overrides)
    return body


def test_practitioners_are_created_and_a_duplicate_licence_is_a_409(
    client: TestClient, session: Session, world: World
) -> None:
    department = DepartmentFactory(institution=world.lead)
    body = _practitioner_body(world.lead, department_id=str(department.id))

    created = client.post("/api/practitioners", json=body, headers=world.h(world.lead_admin))

    assert created.status_code == 201, created.text
    assert created.json()["department_id"] == str(department.id)
    _only_event(
        session, action="create", resource_type="Practitioner", resource_id=created.json()["id"]
    )

    count = row_count(session, Practitioner)
    again = _practitioner_body(world.primary, licence_number=body["licence_number"])
    duplicate = client.post("/api/practitioners", json=again, headers=world.h(world.alliance_admin))
    problem = assert_problem(duplicate, 409, "conflict")
    assert error_fields(problem) == {"licence_number"}
    assert body["licence_number"] in problem["detail"]
    assert row_count(session, Practitioner) == count


def test_a_practitioner_cannot_join_another_institutions_department(
    client: TestClient, session: Session, world: World
) -> None:
    foreign_department = DepartmentFactory(institution=world.primary)
    count = row_count(session, Practitioner)

    response = client.post(
        "/api/practitioners",
        json=_practitioner_body(world.lead, department_id=str(foreign_department.id)),
        headers=world.h(world.lead_admin),
    )
    assert error_fields(assert_problem(response, 422, "invalid-input")) == {"department_id"}

    practitioner = PractitionerFactory(institution=world.lead)
    moved = client.patch(
        f"/api/practitioners/{practitioner.id}",
        json={"department_id": str(foreign_department.id)},
        headers=world.h(world.lead_admin),
    )
    assert error_fields(assert_problem(moved, 422)) == {"department_id"}
    session.refresh(practitioner)
    assert practitioner.department_id is None
    assert row_count(session, Practitioner) == count + 1


def test_reading_a_practitioner_is_audited(
    client: TestClient, session: Session, world: World
) -> None:
    practitioner = PractitionerFactory(institution=world.lead)

    response = client.get(f"/api/practitioners/{practitioner.id}", headers=world.h(world.clinician))

    assert response.status_code == 200
    assert response.json()["licence_number"] == practitioner.licence_number
    event = _only_event(
        session, action="read", resource_type="Practitioner", resource_id=practitioner.id
    )
    assert event.outcome == "success"
    assert event.actor_user_id == world.clinician.user_id
    assert event.actor_role == "clinician"
    assert event.actor_institution_id == world.primary.id
    assert event.request_id == response.headers["x-request-id"]


def test_practitioner_search_filters_and_is_audited(
    client: TestClient, session: Session, world: World
) -> None:
    department = DepartmentFactory(institution=world.lead)
    in_department = PractitionerFactory(institution=world.lead, department_id=department.id)
    PractitionerFactory(institution=world.lead)
    PractitionerFactory(institution=world.primary)

    at_lead = client.get(
        "/api/practitioners",
        params={"institution": world.lead.code},
        headers=world.h(world.clinician),
    )
    assert at_lead.status_code == 200
    assert at_lead.headers["X-Total-Count"] == "2"
    assert all(p["institution_id"] == str(world.lead.id) for p in at_lead.json())

    in_dept = client.get(
        "/api/practitioners",
        params={"department_id": str(department.id)},
        headers=world.h(world.clinician),
    )
    assert [p["id"] for p in in_dept.json()] == [str(in_department.id)]
    searches = audit_events(session, action="search", resource_type="Practitioner")
    assert len(searches) == 2
    assert json.loads(searches[0].detail) == {"institution": world.lead.code, "returned": 2}


def test_unknown_practitioner_is_a_404_and_not_audited_as_a_read(
    client: TestClient, session: Session, world: World
) -> None:
    missing = "01a20000-0000-7000-8000-000000000000"
    response = client.get(f"/api/practitioners/{missing}", headers=world.h(world.clinician))
    assert_problem(response, 404, "not-found")
    assert audit_events(session, action="read", resource_type="Practitioner") == []


# --- beds --------------------------------------------------------------------------------


def test_beds_are_created_and_their_status_changes_with_optimistic_concurrency(
    client: TestClient,
    session: Session,
    world: World,
    make_actor: Callable[..., Actor],
) -> None:
    department = DepartmentFactory(institution=world.lead)
    nurse = make_actor(Role.NURSE, institution=world.lead)

    created = client.post(
        f"/api/departments/{department.id}/beds",
        json={"code": "B-01"},
        headers=world.h(world.lead_admin),
    )
    assert created.status_code == 201, created.text
    bed = created.json()
    assert (bed["status"], bed["version"]) == ("free", 1)
    _only_event(session, action="create", resource_type="Bed", resource_id=bed["id"])

    duplicate = client.post(
        f"/api/departments/{department.id}/beds",
        json={"code": "B-01"},
        headers=world.h(world.lead_admin),
    )
    assert error_fields(assert_problem(duplicate, 409)) == {"code"}

    occupied = client.patch(
        f"/api/beds/{bed['id']}",
        json={"status": "occupied", "expected_version": 1},
        headers=world.h(nurse),
    )
    assert occupied.status_code == 200, occupied.text
    assert (occupied.json()["status"], occupied.json()["version"]) == ("occupied", 2)
    event = _only_event(session, action="update", resource_type="Bed", resource_id=bed["id"])
    assert json.loads(event.detail)["changes"] == {"status": "free->occupied"}
    assert event.actor_user_id == nurse.user_id

    stale = client.patch(
        f"/api/beds/{bed['id']}",
        json={"status": "cleaning", "expected_version": 1},
        headers=world.h(nurse),
    )
    problem = assert_problem(stale, 409, "conflict")
    assert "version 2" in problem["detail"]
    row = session.get(Bed, uuid.UUID(bed["id"]))
    assert row is not None
    session.refresh(row)
    assert (row.status, row.version) == (BedStatus.OCCUPIED, 2)
    assert len(audit_events(session, action="update", resource_type="Bed")) == 1

    # Without expected_version the change is unconditional.
    unconditional = client.patch(
        f"/api/beds/{bed['id']}", json={"status": "cleaning"}, headers=world.h(nurse)
    )
    assert unconditional.json()["version"] == 3


def test_an_unknown_bed_status_is_a_422(client: TestClient, world: World) -> None:
    bed = BedFactory(department=DepartmentFactory(institution=world.lead))
    response = client.patch(
        f"/api/beds/{bed.id}", json={"status": "broken"}, headers=world.h(world.alliance_admin)
    )
    assert "status" in error_fields(assert_problem(response, 422))


def test_bed_availability_counts_beds_by_status_per_department(
    client: TestClient, world: World
) -> None:
    cardiology = DepartmentFactory(institution=world.lead, code="CARD")
    tcm = DepartmentFactory(institution=world.lead, code="TCM")
    community = DepartmentFactory(institution=world.primary, code="GEN")
    DepartmentFactory(institution=world.lead, code="EMPTY")  # no beds: not listed
    for status in ("free", "free", "occupied", "cleaning", "closed"):
        BedFactory(department=cardiology, status=BedStatus(status))
    BedFactory(department=tcm, status=BedStatus.OCCUPIED)
    BedFactory(department=community, status=BedStatus.FREE)

    everywhere = client.get("/api/beds/availability", headers=world.h(world.clinician))
    at_lead = client.get(
        "/api/beds/availability",
        params={"institution": world.lead.code},
        headers=world.h(world.clinician),
    )

    assert everywhere.status_code == 200 and at_lead.status_code == 200
    rows = {(r["institution_code"], r["department_code"]): r for r in everywhere.json()}
    counts = ("free", "occupied", "cleaning", "closed", "total")
    card = rows[(world.lead.code, "CARD")]
    assert [card[k] for k in counts] == [2, 1, 1, 1, 5]
    assert card["department_id"] == str(cardiology.id)
    assert [rows[(world.lead.code, "TCM")][k] for k in counts] == [0, 1, 0, 0, 1]
    assert rows[(world.primary.code, "GEN")]["free"] == 1
    assert (world.lead.code, "EMPTY") not in rows
    assert [r["department_code"] for r in at_lead.json()] == ["CARD", "TCM"]


# --- every administrative change is audited -------------------------------------------------


Change = tuple[str, str, dict[str, Any], str]  # method, url, body, target id ("" = created)


def _alliance_create(w: World) -> Change:
    return "POST", "/api/alliances", {"code": unique("A"), "name_zh": "联", "name_en": "A"}, ""


def _alliance_update(w: World) -> Change:
    return "PATCH", f"/api/alliances/{w.alliance.id}", {"region": "新市"}, str(w.alliance.id)


def _institution_create(w: World) -> Change:
    return "POST", "/api/institutions", _institution_body(alliance_code=w.alliance.code), ""


def _institution_update(w: World) -> Change:
    url = f"/api/institutions/{w.primary.code}"
    return "PATCH", url, {"district": "东城区"}, str(w.primary.id)


def _department_create(w: World) -> Change:
    body = {"code": unique("D"), "name_zh": "科", "name_en": "Dept", "discipline": "western"}
    return "POST", f"/api/institutions/{w.lead.code}/departments", body, ""


def _department_update(w: World) -> Change:
    department = DepartmentFactory(institution=w.lead)
    url = f"/api/departments/{department.id}"
    return "PATCH", url, {"discipline": "integrated"}, str(department.id)


def _practitioner_create(w: World) -> Change:
    return "POST", "/api/practitioners", _practitioner_body(w.lead), ""


def _practitioner_update(w: World) -> Change:
    practitioner = PractitionerFactory(institution=w.lead)
    url = f"/api/practitioners/{practitioner.id}"
    return "PATCH", url, {"title": "chief_physician"}, str(practitioner.id)


def _bed_create(w: World) -> Change:
    department = DepartmentFactory(institution=w.lead)
    return "POST", f"/api/departments/{department.id}/beds", {"code": "B9"}, ""


def _bed_update(w: World) -> Change:
    bed = BedFactory(department=DepartmentFactory(institution=w.lead))
    return "PATCH", f"/api/beds/{bed.id}", {"status": "closed"}, str(bed.id)


@pytest.mark.parametrize(
    ("setup", "action", "resource_type"),
    [
        pytest.param(_alliance_create, "create", "Alliance", id="alliance-create"),
        pytest.param(_alliance_update, "update", "Alliance", id="alliance-update"),
        pytest.param(_institution_create, "create", "Institution", id="institution-create"),
        pytest.param(_institution_update, "update", "Institution", id="institution-update"),
        pytest.param(_department_create, "create", "Department", id="department-create"),
        pytest.param(_department_update, "update", "Department", id="department-update"),
        pytest.param(_practitioner_create, "create", "Practitioner", id="practitioner-create"),
        pytest.param(_practitioner_update, "update", "Practitioner", id="practitioner-update"),
        pytest.param(_bed_create, "create", "Bed", id="bed-create"),
        pytest.param(_bed_update, "update", "Bed", id="bed-update"),
    ],
)
def test_every_administrative_change_writes_one_audit_row(
    client: TestClient,
    session: Session,
    world: World,
    setup: Callable[[World], Change],
    action: str,
    resource_type: str,
) -> None:
    method, url, body, target = setup(world)

    response = client.request(method, url, json=body, headers=world.h(world.alliance_admin))

    assert response.status_code in (200, 201), response.text
    resource_id = target or response.json()["id"]
    event = _only_event(
        session, action=action, resource_type=resource_type, resource_id=resource_id
    )
    assert event.outcome == "success"
    assert event.actor_user_id == world.alliance_admin.user_id
    assert event.actor_role == "alliance_admin"
    assert json.loads(event.detail)["changes"], "the audit row should say what changed"


# --- concurrency (PostgreSQL: real row locks between two connections) -------------------


@pytest.mark.postgres
def test_two_concurrent_changes_from_the_same_version_cannot_both_win(engine: Engine) -> None:
    """Optimistic concurrency must hold under a race, not only one request after another:
    of two changes that both expect version 1, the second must get a 409."""
    actor = actor_for_bed_keeping()
    with Session(engine) as setup:
        alliance = Alliance(code=unique("RACE"), name_zh="联", name_en="Race alliance")
        setup.add(alliance)
        setup.flush()
        institution = Institution(
            alliance_id=alliance.id,
            code=unique("RACE"),
            name_zh="院",
            name_en="Race hospital",
            tier=Tier.LEAD,
            type=InstitutionType.GENERAL,
        )
        setup.add(institution)
        setup.flush()
        department = Department(
            institution_id=institution.id,
            code="RACE",
            name_zh="科",
            name_en="Race ward",
            discipline=Discipline.WESTERN,
        )
        setup.add(department)
        setup.flush()
        bed = Bed(department_id=department.id, code="R1", status=BedStatus.FREE, version=1)
        setup.add(bed)
        setup.commit()
        ids = (bed.id, department.id, institution.id, alliance.id)
    outcome: list[object] = []

    def second_change() -> None:
        with Session(engine) as late:
            try:
                changed = svc.set_bed_status(
                    session=late,
                    actor=actor,
                    bed_id=ids[0],
                    data=schemas.BedStatusUpdate(status=BedStatus.CLOSED, expected_version=1),
                )
                late.commit()
                outcome.append(changed.version)
            except Conflict as exc:
                late.rollback()
                outcome.append(exc)

    try:
        with Session(engine) as early:
            svc.set_bed_status(
                session=early,
                actor=actor,
                bed_id=ids[0],
                data=schemas.BedStatusUpdate(status=BedStatus.OCCUPIED, expected_version=1),
            )
            racer = threading.Thread(target=second_change)
            racer.start()
            racer.join(timeout=0.5)  # it reads (or waits) while the first is uncommitted
            early.commit()
        racer.join(timeout=10)
        assert not racer.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], Conflict), (
            f"both changes from version 1 succeeded (lost update): {outcome}"
        )
        with Session(engine) as check:
            final = check.get(Bed, ids[0])
            assert final is not None
            assert (final.status, final.version) == (BedStatus.OCCUPIED, 2)
    finally:
        with Session(engine) as cleanup:
            for model, row_id in zip((Bed, Department, Institution, Alliance), ids, strict=True):
                cleanup.execute(delete(model).where(model.id == row_id))
            cleanup.commit()


def actor_for_bed_keeping() -> Actor:
    return Actor(
        user_id=uuid.uuid4(),
        username="race-admin",
        role=Role.ALLIANCE_ADMIN,
        permissions=permissions_for(Role.ALLIANCE_ADMIN),
    )
