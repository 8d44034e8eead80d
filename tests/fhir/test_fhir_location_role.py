"""Location and PractitionerRole writable: a Location is a department of its managing
organization, a PractitionerRole is where a practitioner works (their one role)."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.audit.models import AuditEvent
from medalliance.domains.alliance.models import Department, Practitioner
from medalliance.fhir import systems
from medalliance.kernel.roles import Role
from tests.factories.alliance import DepartmentFactory, PractitionerFactory

SYNTHEA = "https://github.com/synthetichealth/synthea"
NUCC = "http://nucc.org/provider-taxonomy"


def _location(org_ref: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Location",
        "identifier": [{"system": SYNTHEA, "value": "loc-0001"}],
        "status": "active",
        "name": "心内科 Cardiology",
        "telecom": [{"system": "phone", "value": "028-1234"}],
        "address": {"line": ["1 Renmin Rd"], "city": "Chengdu", "postalCode": "610000"},
        "position": {"longitude": 104.066, "latitude": 30.572},
        "physicalType": {
            "coding": [
                {"system": systems.LOCATION_PHYSICAL_TYPE, "code": "bu", "display": "Building"}
            ]
        },
        **extra,
    }
    if org_ref is not None:
        res["managingOrganization"] = org_ref
    return res


def _role(practitioner: str, org: str, location: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "practitioner": {"reference": practitioner},
        "organization": {"reference": org},
        "code": [{"coding": [{"system": NUCC, "code": "207RC0000X", "display": "Cardiology"}]}],
        "specialty": [
            {
                "coding": [{"system": NUCC, "code": "207RC0000X", "display": "Cardiology"}],
                "text": "Cardiovascular Disease",
            }
        ],
    }
    if location is not None:
        res["location"] = [{"reference": location}]
    return res


def _departments(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Department)) or 0


def _issue(r: Any) -> dict[str, Any]:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    return dict(body["issue"][0])


def _search(fhir: TestClient, h: dict[str, str], query: str) -> list[str]:
    r = fhir.get(f"/fhir/{query}", headers=h)
    assert r.status_code == 200, r.text
    return [e["resource"]["id"] for e in r.json().get("entry", [])]


def test_location_create_read_search_and_audit(
    fhir: TestClient, member: Any, session: Session
) -> None:
    org = {"reference": f"Organization/{member.inst.id}"}
    before = _departments(session)
    denied = fhir.post("/fhir/Location", json=_location(org), headers=member.h)
    assert denied.status_code == 403, denied.text  # a clinician does not manage the registry
    assert _issue(denied)["code"] == "forbidden"
    assert _departments(session) == before

    r = fhir.post("/fhir/Location", json=_location(org, id="sender-7"), headers=member.h_admin)
    assert r.status_code == 201, r.text
    made = r.json()
    get_fhir_model_class("Location").model_validate(made)
    assert _departments(session) == before + 1
    read = fhir.get(f"/fhir/Location/{made['id']}", headers=member.h).json()
    assert read["name"] == "心内科 Cardiology"
    assert read["managingOrganization"]["reference"] == f"Organization/{member.inst.id}"
    assert {"system": SYNTHEA, "value": "loc-0001"} in read["identifier"]
    # the department code is derived from the sender's id, deterministically
    code = "LOC-" + hashlib.sha256(b"sender-7").hexdigest()[:16].upper()
    ours = systems.DEPARTMENT_CODE_PREFIX + member.inst.code
    assert {"system": ours, "value": code} in read["identifier"]
    assert read["physicalType"]["coding"][0]["code"] == "bu"
    assert read["telecom"] == [{"system": "phone", "value": "028-1234"}]
    assert read["address"] == {"text": "1 Renmin Rd, Chengdu, 610000"}
    assert read["position"] == {"longitude": 104.066, "latitude": 30.572}
    dept = session.get(Department, uuid.UUID(made["id"]))
    assert dept is not None and dept.institution_id == member.inst.id and dept.code == code

    rid = made["id"]
    assert _search(fhir, member.h, f"Location?_id={rid}") == [rid]
    assert _search(fhir, member.h, f"Location?identifier={SYNTHEA}|loc-0001") == [rid]
    assert _search(fhir, member.h, f"Location?identifier={ours}|{code}") == [rid]
    assert rid in _search(fhir, member.h, f"Location?organization=Organization/{member.inst.id}")
    assert _search(fhir, member.h, "Location?name=心内科") == [rid]

    audit = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "create",
            AuditEvent.resource_type == "Department",
            AuditEvent.resource_id == str(dept.id),
        )
    ).all()
    assert len(audit) == 1


def test_location_conditional_create_is_idempotent(
    fhir: TestClient, member: Any, session: Session
) -> None:
    org = {"reference": f"Organization/{member.inst.id}"}
    h = {**member.h_admin, "If-None-Exist": f"identifier={SYNTHEA}|loc-0001"}
    first = fhir.post("/fhir/Location", json=_location(org), headers=h)
    assert first.status_code == 201, first.text
    count = _departments(session)
    again = fhir.post("/fhir/Location", json=_location(org), headers=h)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert _departments(session) == count
    # the same sender identifier on a plain create names one resource only: 409
    clash = fhir.post("/fhir/Location", json=_location(org), headers=member.h_admin)
    assert clash.status_code == 409, clash.text
    assert _departments(session) == count


def test_location_bad_or_missing_organization_is_refused(
    fhir: TestClient, member: Any, session: Session
) -> None:
    before = _departments(session)
    for ref in (
        {"reference": f"Organization/{uuid.uuid4()}"},
        {"identifier": {"system": SYNTHEA, "value": "no-such-hospital"}},
        None,
    ):
        r = fhir.post("/fhir/Location", json=_location(ref), headers=member.h_admin)
        assert r.status_code == 422, r.text
        assert _issue(r)["expression"] == ["Location.managingOrganization"], r.text
    assert _departments(session) == before


def test_location_by_organization_identifier_and_deactivated_member(
    fhir: TestClient, member: Any, session: Session
) -> None:
    hospital = {
        "resourceType": "Organization",
        "name": "OVERLAND PARK REG MED CTR",
        "identifier": [{"system": SYNTHEA, "value": "org-42"}],
    }
    org = fhir.post("/fhir/Organization", json=hospital, headers=member.h_admin)
    assert org.status_code == 201, org.text
    loc = _location({"identifier": {"system": SYNTHEA, "value": "org-42"}})
    r = fhir.post("/fhir/Location", json=loc, headers=member.h_admin)
    assert r.status_code == 201, r.text
    assert r.json()["managingOrganization"]["reference"] == f"Organization/{org.json()['id']}"

    member.other.active = False
    session.flush()
    before = _departments(session)
    r = fhir.post(
        "/fhir/Location",
        json=_location({"reference": f"Organization/{member.other.id}"}, identifier=[]),
        headers=member.h_admin,
    )
    assert r.status_code == 422, r.text
    assert "deactivated" in _issue(r)["diagnostics"]
    assert _departments(session) == before


def test_practitioner_role_create_read_search(
    fhir: TestClient, member: Any, session: Session, make_actor: Any, auth_headers: Any
) -> None:
    prac = PractitionerFactory(institution=member.inst)
    dept = DepartmentFactory(institution=member.inst)
    session.flush()
    role = _role(f"Practitioner/{prac.id}", f"Organization/{member.inst.id}", f"Location/{dept.id}")
    assert fhir.post("/fhir/PractitionerRole", json=role, headers=member.h).status_code == 403
    h_inst = auth_headers(make_actor(Role.INSTITUTION_ADMIN, institution=member.inst))
    r = fhir.post("/fhir/PractitionerRole", json=role, headers=h_inst)
    assert r.status_code == 201, r.text
    made = r.json()
    get_fhir_model_class("PractitionerRole").model_validate(made)
    assert made["id"] == str(prac.id)
    assert made["practitioner"]["reference"] == f"Practitioner/{prac.id}"
    assert made["organization"]["reference"] == f"Organization/{member.inst.id}"
    assert made["location"] == [{"reference": f"Location/{dept.id}"}]
    codes = [c for concept in made["code"] for c in concept["coding"]]
    assert {"system": NUCC, "code": "207RC0000X", "display": "Cardiology"} in codes
    session.expire_all()
    stored = session.get(Practitioner, prac.id)
    assert stored is not None and stored.department_id == dept.id
    assert stored.specialty == "Cardiovascular Disease"

    rid = str(prac.id)
    assert _search(fhir, member.h, f"PractitionerRole?_id={rid}") == [rid]
    assert _search(fhir, member.h, f"PractitionerRole?practitioner=Practitioner/{rid}") == [rid]
    assert rid in _search(
        fhir, member.h, f"PractitionerRole?organization=Organization/{member.inst.id}"
    )
    assert _search(fhir, member.h, f"PractitionerRole?location=Location/{dept.id}") == [rid]
    audit = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "update",
            AuditEvent.resource_type == "Practitioner",
            AuditEvent.resource_id == str(prac.id),
        )
    ).all()
    assert len(audit) == 1
    assert "department_id" in json.loads(audit[0].detail)["changes"]

    # set again (conditional create: the role exists): answered, not duplicated
    h_cond = {**h_inst, "If-None-Exist": f"practitioner=Practitioner/{rid}"}
    again = fhir.post("/fhir/PractitionerRole", json=role, headers=h_cond)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == rid


def test_practitioner_role_moves_only_with_both_members(
    fhir: TestClient, member: Any, session: Session, make_actor: Any, auth_headers: Any
) -> None:
    prac = PractitionerFactory(institution=member.inst)
    there = DepartmentFactory(institution=member.other)
    session.flush()
    role = _role(
        f"Practitioner/{prac.id}", f"Organization/{member.other.id}", f"Location/{there.id}"
    )
    h_inst = auth_headers(make_actor(Role.INSTITUTION_ADMIN, institution=member.inst))
    r = fhir.post("/fhir/PractitionerRole", json=role, headers=h_inst)
    assert r.status_code == 403, r.text
    session.expire_all()
    assert session.get(Practitioner, prac.id).institution_id == member.inst.id  # type: ignore[union-attr]

    r = fhir.post("/fhir/PractitionerRole", json=role, headers=member.h_admin)
    assert r.status_code == 201, r.text
    assert r.json()["organization"]["reference"] == f"Organization/{member.other.id}"
    session.expire_all()
    moved = session.get(Practitioner, prac.id)
    assert moved is not None
    assert (moved.institution_id, moved.department_id) == (member.other.id, there.id)


def test_practitioner_role_bad_references_change_nothing(
    fhir: TestClient, member: Any, session: Session
) -> None:
    prac = PractitionerFactory(institution=member.inst)
    elsewhere = DepartmentFactory(institution=member.other)
    session.flush()
    cases = [
        (
            _role(f"Practitioner/{uuid.uuid4()}", f"Organization/{member.inst.id}"),
            "PractitionerRole.practitioner",
        ),
        (
            _role(f"Practitioner/{prac.id}", f"Organization/{uuid.uuid4()}"),
            "PractitionerRole.organization",
        ),
        (
            _role(
                f"Practitioner/{prac.id}",
                f"Organization/{member.inst.id}",
                f"Location/{elsewhere.id}",
            ),
            "PractitionerRole.location[0]",
        ),
    ]
    for res, element in cases:
        r = fhir.post("/fhir/PractitionerRole", json=res, headers=member.h_admin)
        assert r.status_code == 422, r.text
        assert _issue(r)["expression"] == [element], r.text
    session.expire_all()
    stored = session.get(Practitioner, prac.id)
    assert stored is not None
    assert (stored.institution_id, stored.department_id) == (member.inst.id, None)
    assert stored.specialty == "Cardiology"


def test_transaction_with_organization_location_and_role(
    fhir: TestClient, member: Any, session: Session
) -> None:
    prac = PractitionerFactory(institution=member.inst)
    session.flush()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0c1b6b4e-0000-4000-8000-000000000001",
                "resource": {"resourceType": "Organization", "name": "City Clinic"},
                "request": {"method": "POST", "url": "Organization"},
            },
            {
                "fullUrl": "urn:uuid:0c1b6b4e-0000-4000-8000-000000000002",
                "resource": _location(
                    {"reference": "urn:uuid:0c1b6b4e-0000-4000-8000-000000000001"}
                ),
                "request": {"method": "POST", "url": "Location"},
            },
            {
                "resource": _role(
                    f"Practitioner/{prac.id}",
                    "urn:uuid:0c1b6b4e-0000-4000-8000-000000000001",
                    "urn:uuid:0c1b6b4e-0000-4000-8000-000000000002",
                ),
                "request": {"method": "POST", "url": "PractitionerRole"},
            },
        ],
    }
    r = fhir.post("/fhir", json=bundle, headers=member.h_admin)
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert all(s.startswith("201") for s in statuses), statuses
    session.expire_all()
    stored = session.get(Practitioner, prac.id)
    assert stored is not None and stored.department_id is not None
    dept = session.get(Department, stored.department_id)
    assert dept is not None and dept.institution_id == stored.institution_id
    assert dept.name_zh == "心内科 Cardiology"


def test_capability_statement_says_create(fhir: TestClient) -> None:
    types = {r["type"]: r for r in fhir.get("/fhir/metadata").json()["rest"][0]["resource"]}
    for rtype in ("Location", "PractitionerRole"):
        codes = {i["code"] for i in types[rtype]["interaction"]}
        assert {"create", "read", "search-type"} <= codes, rtype
        assert types[rtype]["conditionalCreate"] is True
