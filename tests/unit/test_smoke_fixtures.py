"""The fixtures themselves: a migrated database and a rollback per test."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.domains.alliance.models import Institution
from tests.factories.alliance import InstitutionFactory


def test_factory_rows_are_visible_in_the_test(session: Session) -> None:
    InstitutionFactory(code="SMOKE-1")
    assert session.scalar(select(func.count()).where(Institution.code == "SMOKE-1")) == 1


def test_rows_from_the_previous_test_were_rolled_back(session: Session) -> None:
    assert session.scalar(select(func.count()).where(Institution.code == "SMOKE-1")) == 0


def test_health_needs_no_authentication(client: TestClient) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_the_front_page_is_the_web_ui_login(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/"
