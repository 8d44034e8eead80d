"""The pages over the services: search, chart, break-the-glass, error pages. The access
policy and the audit trail apply to a page exactly as to the JSON API."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.access.models import BreakGlassGrant
from medalliance.audit.models import AuditEvent
from medalliance.domains.patients import service as patients_service
from medalliance.domains.patients.identity import Sex
from medalliance.domains.patients.models import Person
from medalliance.domains.patients.schemas import PatientCreate
from medalliance.kernel.roles import Role
from tests.conftest import actor_for
from tests.factories.access import UserFactory
from tests.factories.alliance import AllianceFactory, InstitutionFactory
from tests.web.conftest import csrf, web_login

SECTIONS = ("timeline", "diagnoses", "results", "prescriptions", "constitution", "devices")
HX = {"HX-Request": "true"}


@pytest.fixture
def world(session: Session) -> dict[str, Any]:
    """A patient registered at A only; a clinician at A and one at B (same alliance)."""
    alliance = AllianceFactory()
    a, b = InstitutionFactory(alliance=alliance), InstitutionFactory(alliance=alliance)
    doctor_a = UserFactory(role=Role.CLINICIAN, institution=a, display_name="Dr A")
    registered = patients_service.register(
        session=session,
        actor=actor_for(Role.CLINICIAN, institution=a, user_id=doctor_a.id),
        data=PatientCreate(
            family_name="欧阳",
            given_name="秀兰",
            sex=Sex.FEMALE,
            birth_date=date(1949, 12, 31),
            id_number="11010519491231002X",
            phones=["13800138000"],
        ),
    )
    session.flush()
    return {
        "patient": session.get(Person, registered.patient.id),
        "a": doctor_a,
        "b": UserFactory(role=Role.CLINICIAN, institution=b, display_name="Dr B"),
    }


def _events(session: Session, **where: Any) -> list[AuditEvent]:
    query = select(AuditEvent)
    for name, value in where.items():
        query = query.where(getattr(AuditEvent, name) == value)
    return list(session.scalars(query))


@pytest.mark.parametrize(
    "query", ["欧阳秀兰", "ouyang", "oyxl", "11010519491231002X", "13800138000"]
)
def test_search_finds_the_patient_live(
    client: TestClient, world: dict[str, Any], query: str
) -> None:
    web_login(client, world["a"])
    fragment = client.get("/patients", params={"q": query}, headers=HX)
    assert fragment.status_code == 200
    assert "<html" not in fragment.text  # HTMX gets the result list only
    assert f'href="/patients/{world["patient"].id}"' in fragment.text
    assert "110105********002X" in fragment.text  # the ID number masked in the list
    page = client.get("/patients", params={"q": query})
    assert "<html" in page.text and f"/patients/{world['patient'].id}" in page.text


def test_search_is_audited_and_blank_input_is_a_field_error(
    client: TestClient, world: dict[str, Any], session: Session
) -> None:
    web_login(client, world["a"])
    client.get("/patients", params={"q": "oyxl"}, headers=HX)
    searches = _events(session, action="search", resource_type="Patient")
    assert any(e.actor_user_id == world["a"].id for e in searches)
    blank = client.get("/patients", params={"q": "   "}, headers=HX)
    assert blank.status_code == 200 and "<table" not in blank.text  # nothing searched


def test_chart_and_every_section_for_a_clinician_of_the_patient(
    client: TestClient, world: dict[str, Any], session: Session
) -> None:
    web_login(client, world["a"])
    pid = world["patient"].id
    chart = client.get(f"/patients/{pid}")
    assert chart.status_code == 200
    assert "欧阳秀兰" in chart.text and "11010519491231002X" in chart.text
    assert f'href="/patients/{pid}/orders"' in chart.text  # order tests from the chart
    assert 'id="break-glass-banner"' not in chart.text
    for name in SECTIONS:
        fragment = client.get(f"/patients/{pid}/chart/{name}", headers=HX)
        assert fragment.status_code == 200, (name, fragment.text)
        assert "<html" not in fragment.text
        page = client.get(f"/patients/{pid}/chart/{name}")  # opened directly: a whole page
        assert page.status_code == 200 and "<html" in page.text
    reads = _events(session, action="read", resource_type="Patient", patient_id=pid)
    assert any(e.outcome == "success" and e.actor_user_id == world["a"].id for e in reads)


def test_denied_patient_gets_the_break_glass_dialog_and_no_data(
    client: TestClient, world: dict[str, Any], session: Session
) -> None:
    web_login(client, world["b"])
    pid = world["patient"].id
    dialog = client.get(f"/patients/{pid}")
    assert dialog.status_code == 403
    assert 'id="break-glass-dialog"' in dialog.text
    assert "欧阳秀兰" not in dialog.text and "11010519491231002X" not in dialog.text
    denied = _events(session, outcome="denied", patient_id=pid)
    assert any(e.actor_user_id == world["b"].id for e in denied)
    for name in SECTIONS:  # no section leaks either
        fragment = client.get(f"/patients/{pid}/chart/{name}", headers=HX)
        assert fragment.status_code == 403, name
        assert "欧阳秀兰" not in fragment.text


def test_break_the_glass_needs_a_reason_then_opens_the_chart_with_a_banner(
    client: TestClient, world: dict[str, Any], session: Session
) -> None:
    web_login(client, world["b"])
    pid = world["patient"].id
    token = csrf(client, "/")
    short = client.post(f"/patients/{pid}/break-glass", data={"reason": " x ", "csrf_token": token})
    assert short.status_code == 422
    assert '<p class="field-error" id="e-reason">请说明紧急情况' in short.text
    assert session.scalar(select(BreakGlassGrant).where(BreakGlassGrant.patient_id == pid)) is None
    done = client.post(
        f"/patients/{pid}/break-glass",
        data={"reason": "急诊：意识不清", "csrf_token": token},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == f"/patients/{pid}"
    chart = client.get(f"/patients/{pid}")
    assert chart.status_code == 200
    assert 'id="break-glass-banner"' in chart.text and "急诊：意识不清" in chart.text
    assert _events(session, action="break-glass.start", patient_id=pid)
    ended = client.post(
        f"/patients/{pid}/break-glass/end", data={"csrf_token": token}, follow_redirects=False
    )
    assert ended.status_code == 303
    assert client.get(f"/patients/{pid}").status_code == 403  # denied again


def test_role_without_patient_access_gets_a_403_page(
    client: TestClient, world: dict[str, Any], session: Session
) -> None:
    researcher = UserFactory(role=Role.RESEARCHER)
    web_login(client, researcher)
    page = client.get("/patients")
    assert page.status_code == 403 and "无权操作" in page.text
    assert "<html" in page.text
    chart = client.get(f"/patients/{world['patient'].id}")
    assert chart.status_code == 403 and "欧阳秀兰" not in chart.text
    assert any(e.actor_user_id == researcher.id for e in _events(session, action="denied"))


@pytest.mark.parametrize(
    ("role", "shown", "hidden", "link"),
    [
        (Role.CLINICIAN, "home-search", "home-admin", None),
        (Role.ALLIANCE_ADMIN, "home-admin", "home-search", "/admin"),
        (Role.INSTITUTION_ADMIN, "home-admin", "home-search", "/admin"),
        (Role.NURSE, "home-search", "home-admin", "/desk"),
    ],
)
def test_landing_is_made_for_the_role(
    client: TestClient, role: Role, shown: str, hidden: str, link: str | None
) -> None:
    web_login(client, UserFactory(role=role))
    page = client.get("/")
    assert f'id="{shown}"' in page.text and f'id="{hidden}"' not in page.text
    if link is not None:  # the role's own page, linked from its landing
        assert f'<a class="button" href="{link}">' in page.text
    else:
        assert 'href="/desk"' not in page.text.split("<main", 1)[1]


def test_recently_opened_patients_on_the_landing(client: TestClient, world: dict[str, Any]) -> None:
    web_login(client, world["a"])
    assert "欧阳秀兰" not in client.get("/").text
    client.get(f"/patients/{world['patient'].id}")
    landing = client.get("/")
    assert f'href="/patients/{world["patient"].id}">欧阳秀兰</a>' in landing.text


def test_language_switch_persists(client: TestClient, world: dict[str, Any]) -> None:
    web_login(client, world["a"])
    assert "查找患者" in client.get("/patients").text
    response = client.post(
        "/language",
        data={"locale": "en", "next": "/patients", "csrf_token": csrf(client, "/")},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/patients"
    page = client.get("/patients")
    assert '<html lang="en">' in page.text and "Find a patient" in page.text
    assert "查找患者" not in page.text


def test_error_pages_are_friendly_and_the_api_keeps_problem_details(
    app: FastAPI, world: dict[str, Any]
) -> None:
    def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    app.add_api_route("/boom", boom)
    app.add_api_route("/api/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        web_login(client, world["a"])
        missing = client.get("/no-such-page")
        assert missing.status_code == 404 and "页面不存在" in missing.text
        assert missing.headers["content-type"].startswith("text/html")
        broken = client.get("/boom", headers={"X-Request-Id": "req-123"})
        assert broken.status_code == 500
        assert "出错了" in broken.text and "req-123" in broken.text
        assert "Traceback" not in broken.text and "secret internals" not in broken.text
        api = client.get("/api/boom")
        assert api.status_code == 500
        assert api.headers["content-type"] == "application/problem+json"
        assert "secret internals" not in api.text
        api_missing = client.get("/api/no-such-thing")
        assert api_missing.headers["content-type"] == "application/problem+json"
        bad_id = client.get("/patients/not-a-uuid")
        assert bad_id.status_code == 422 and "请检查输入" in bad_id.text


def test_pages_carry_security_headers(client: TestClient, world: dict[str, Any]) -> None:
    web_login(client, world["a"])
    page = client.get(f"/patients/{world['patient'].id}")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
