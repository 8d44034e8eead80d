"""Denials are audited, and sessions end when an account changes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.access import tokens
from medalliance.access.models import RefreshToken
from medalliance.audit.models import AuditEvent
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role
from tests.factories.access import UserFactory
from tests.factories.alliance import InstitutionFactory

Headers = Callable[[Actor], dict[str, str]]


def _refresh_token_of(session: Session, user_id: uuid.UUID) -> str:
    token, token_hash = tokens.new_refresh_token()
    now = utcnow()
    session.add(
        RefreshToken(
            user_id=user_id,
            family_id=uuid.uuid4(),
            token_hash=token_hash,
            issued_at=now,
            expires_at=now + timedelta(hours=1),
        )
    )
    session.flush()
    return token


def test_a_refused_administrative_request_is_audited(
    client: TestClient, session: Session, make_actor: Callable[..., Actor], auth_headers: Headers
) -> None:
    home = InstitutionFactory()
    nurse = make_actor(Role.NURSE, institution=home)
    response = client.post(
        "/api/institutions",
        json={"code": "X1", "name_zh": "x", "name_en": "x", "tier": "primary", "type": "tcm"},
        headers=auth_headers(nurse),
    )
    assert response.status_code == 403
    row = session.scalars(select(AuditEvent).where(AuditEvent.actor_user_id == nurse.user_id)).one()
    assert row.outcome == "denied"
    assert row.resource_id == "POST /api/institutions"


def test_logout_cannot_end_someone_elses_session(
    client: TestClient, session: Session, make_actor: Callable[..., Actor], auth_headers: Headers
) -> None:
    home = InstitutionFactory()
    victim = UserFactory(institution=home)
    token = _refresh_token_of(session, victim.id)
    attacker = make_actor(Role.CLINICIAN, institution=home)
    response = client.post(
        "/api/auth/logout", json={"refresh_token": token}, headers=auth_headers(attacker)
    )
    assert response.status_code == 204
    assert session.scalars(select(RefreshToken.revoked_at)).one() is None
    assert client.post("/api/auth/refresh", json={"refresh_token": token}).status_code == 200


def test_password_change_and_lock_end_refresh(
    client: TestClient, session: Session, make_actor: Callable[..., Actor], auth_headers: Headers
) -> None:
    home = InstitutionFactory()
    admin = UserFactory(institution=home, role=Role.INSTITUTION_ADMIN)
    user = UserFactory(institution=home)
    token = _refresh_token_of(session, user.id)
    changed = client.patch(
        f"/api/users/{user.id}",
        json={"password": "a-brand-new-password"},
        headers=auth_headers(
            make_actor(Role.INSTITUTION_ADMIN, institution=home, user_id=admin.id)
        ),
    )
    assert changed.status_code == 200, changed.text
    assert client.post("/api/auth/refresh", json={"refresh_token": token}).status_code == 401

    locked = UserFactory(institution=home, locked_until=utcnow() + timedelta(minutes=5))
    locked_token = _refresh_token_of(session, locked.id)
    refused = client.post("/api/auth/refresh", json={"refresh_token": locked_token})
    assert refused.status_code == 401
    assert refused.json()["type"].endswith("account-locked")


def test_practitioner_at_an_unknown_institution_is_422(
    client: TestClient, make_actor: Callable[..., Actor], auth_headers: Headers
) -> None:
    response = client.post(
        "/api/practitioners",
        json={
            "institution_code": "NOWHERE",
            "name": "李医生",
            "title": "attending_physician",
            "discipline": "tcm",
            "licence_number": "110300000000001",
        },
        headers=auth_headers(make_actor(Role.ALLIANCE_ADMIN)),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "institution_code"
