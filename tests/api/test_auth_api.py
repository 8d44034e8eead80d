"""Login, tokens, lockout, refresh rotation and logout over the JSON API.

These tests log in through Argon2 for real. Most use the lowest Argon2id cost
parameters (``use_cheap_argon2``) to stay fast; one logs in against the factories'
hash made with the production parameters.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from medalliance.access import passwords, tokens
from medalliance.access.login import INVALID_LOGIN
from medalliance.access.models import RefreshToken, User
from medalliance.access.permissions import permissions_for
from medalliance.config import Settings
from medalliance.domains.alliance.models import Institution
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role
from tests.api.access_matrix import (
    assert_problem,
    audit_events,
    build_app_once,
    rebind,
    use_cheap_argon2,
)
from tests.factories.access import DEFAULT_PASSWORD, UserFactory
from tests.factories.alliance import InstitutionFactory

PASSWORD = "correct-horse-battery-staple"


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


@pytest.fixture
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    use_cheap_argon2(monkeypatch)


@pytest.fixture
def institution(session: Session) -> Institution:
    inst: Institution = InstitutionFactory()
    return inst


@pytest.fixture
def user(cheap_argon2: None, institution: Institution) -> User:
    """A nurse whose password hash was made with the (cheap) hasher in force."""
    row: User = UserFactory(
        role=Role.NURSE,
        institution=institution,
        password_hash=passwords.hash_password(PASSWORD),
    )
    return row


def _login(client: TestClient, username: str, password: str) -> httpx.Response:
    return client.post("/api/auth/token", data={"username": username, "password": password})


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _tokens_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _reload(session: Session, user: User) -> User:
    session.refresh(user)
    return user


# --- issuing tokens ----------------------------------------------------------------------


def test_the_password_grant_issues_a_bearer_token_that_works_on_me(
    client: TestClient, session: Session, institution: Institution, settings: Settings
) -> None:
    """Against the factories' hash, made with the production Argon2 parameters."""
    nurse = UserFactory(role=Role.NURSE, institution=institution)

    response = _login(client, nurse.username, DEFAULT_PASSWORD)

    body = _tokens_of(response)
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.access_token_minutes * 60
    assert body["access_token"] and body["refresh_token"]
    assert body["access_token"] != body["refresh_token"]
    me = client.get("/api/auth/me", headers=_bearer(body["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json() == {
        "id": str(nurse.id),
        "username": nurse.username,
        "role": "nurse",
        "institution_id": str(institution.id),
        "practitioner_id": None,
        "permissions": sorted(permissions_for(Role.NURSE)),
    }
    assert _reload(session, nurse).last_login_at is not None


def test_the_token_endpoint_takes_the_oauth2_form_not_json(client: TestClient, user: User) -> None:
    response = client.post(
        "/api/auth/token", json={"username": user.username, "password": PASSWORD}
    )
    assert_problem(response, 422, "validation-error")


def test_a_login_writes_a_login_audit_row(client: TestClient, session: Session, user: User) -> None:
    response = _login(client, user.username, PASSWORD)

    assert response.status_code == 200
    (event,) = audit_events(session, action="login")
    assert event.outcome == "success"
    assert event.resource_type == "User"
    assert event.resource_id == str(user.id)
    assert event.actor_user_id == user.id
    assert event.actor_username == user.username
    assert event.actor_role == "nurse"
    assert event.request_id == response.headers["x-request-id"]


# --- refusing logins ---------------------------------------------------------------------


def test_wrong_password_and_unknown_user_are_refused_alike(
    client: TestClient, session: Session, user: User
) -> None:
    wrong_password = _login(client, user.username, "not-the-password")
    unknown_user = _login(client, "nobody-by-that-name", PASSWORD)

    first = assert_problem(wrong_password, 401, "invalid-credentials")
    second = assert_problem(unknown_user, 401, "invalid-credentials")
    assert first["detail"] == second["detail"] == INVALID_LOGIN
    assert first["title"] == second["title"]
    assert "access_token" not in wrong_password.text


def test_a_failed_login_writes_a_failure_audit_row(
    client: TestClient, session: Session, user: User
) -> None:
    _login(client, user.username, "not-the-password")
    _login(client, "nobody-by-that-name", "whatever-password")

    failures = audit_events(session, action="login", outcome="failure")
    assert [(e.resource_id, json.loads(e.detail)["username"]) for e in failures] == [
        (str(user.id), user.username),
        (None, "nobody-by-that-name"),
    ]
    assert all(e.actor_user_id is None for e in failures)
    assert all("not-the-password" not in e.detail for e in failures)
    assert audit_events(session, action="login", outcome="success") == []


def test_an_inactive_account_cannot_log_in(
    client: TestClient, session: Session, user: User
) -> None:
    user.active = False
    session.flush()

    response = _login(client, user.username, PASSWORD)

    assert assert_problem(response, 401, "invalid-credentials")["detail"] == INVALID_LOGIN
    assert session.scalar(select(RefreshToken).where(RefreshToken.user_id == user.id)) is None


def test_failures_are_counted_across_requests_and_lock_the_account(
    client: TestClient, session: Session, user: User, settings: Settings
) -> None:
    threshold = settings.lockout_threshold
    assert threshold == 5  # the documented default

    for attempt in range(1, threshold):
        refused = _login(client, user.username, f"wrong-{attempt}")
        assert_problem(refused, 401, "invalid-credentials")
        # Committed although the request was refused: the next request sees it.
        assert _reload(session, user).failed_logins == attempt
        assert user.locked_until is None

    locking = _login(client, user.username, "wrong-again")

    body = assert_problem(locking, 401, "account-locked")
    assert "locked" in body["detail"]
    assert body["locked_until"]
    locked_until = _reload(session, user).locked_until
    assert locked_until is not None
    assert locked_until > utcnow() + timedelta(minutes=settings.lockout_minutes - 1)

    with_right_password = _login(client, user.username, PASSWORD)

    assert_problem(with_right_password, 401, "account-locked")
    assert "access_token" not in with_right_password.text
    assert _reload(session, user).locked_until == locked_until
    why = [json.loads(e.detail)["why"] for e in audit_events(session, action="login")]
    assert why == ["invalid credentials"] * threshold + ["account locked"]


def test_a_successful_login_resets_the_failure_count(
    client: TestClient, session: Session, user: User, settings: Settings
) -> None:
    for _ in range(settings.lockout_threshold - 1):
        _login(client, user.username, "not-the-password")

    assert _login(client, user.username, PASSWORD).status_code == 200
    assert _reload(session, user).failed_logins == 0

    # A fresh count: one more failure does not lock.
    assert_problem(_login(client, user.username, "nope-nope"), 401, "invalid-credentials")
    assert _reload(session, user).locked_until is None


def test_an_expired_lock_lets_the_user_in_again(
    client: TestClient, session: Session, user: User
) -> None:
    user.locked_until = utcnow() - timedelta(seconds=1)
    session.flush()

    assert _login(client, user.username, PASSWORD).status_code == 200
    assert _reload(session, user).locked_until is None


def test_the_lockout_threshold_is_site_policy(
    client: TestClient, session: Session, user: User, settings: Settings
) -> None:
    settings.lockout_threshold = 2

    assert_problem(_login(client, user.username, "wrong-1"), 401, "invalid-credentials")
    assert_problem(_login(client, user.username, "wrong-2"), 401, "account-locked")


# --- refresh and logout ------------------------------------------------------------------


def test_refresh_rotates_the_pair(client: TestClient, session: Session, user: User) -> None:
    first = _tokens_of(_login(client, user.username, PASSWORD))

    second = _tokens_of(
        client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    )

    assert second["token_type"] == "bearer"
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert client.get("/api/auth/me", headers=_bearer(second["access_token"])).status_code == 200
    rows = session.scalars(select(RefreshToken).where(RefreshToken.user_id == user.id)).all()
    assert len(rows) == 2
    assert len({r.family_id for r in rows}) == 1
    assert sorted(r.used_at is None for r in rows) == [False, True]
    assert all(r.token_hash not in (first["refresh_token"], second["refresh_token"]) for r in rows)


def test_reusing_a_refresh_token_revokes_the_whole_family(
    client: TestClient, session: Session, user: User
) -> None:
    first = _tokens_of(_login(client, user.username, PASSWORD))
    second = _tokens_of(
        client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    )

    replay = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})

    assert "already used" in assert_problem(replay, 401, "not-authenticated")["detail"]
    # The thief's replay also cuts off the pair issued from it.
    after = client.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert_problem(after, 401)
    rows = session.scalars(select(RefreshToken).where(RefreshToken.user_id == user.id)).all()
    assert all(r.revoked_at is not None for r in rows)
    (event,) = audit_events(session, action="token.reuse-detected")
    assert (event.outcome, event.resource_id) == ("denied", str(user.id))


def test_a_garbage_or_expired_refresh_token_is_refused(
    client: TestClient, session: Session, user: User
) -> None:
    token, token_hash = tokens.new_refresh_token()
    past = utcnow() - timedelta(hours=1)
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=user.id,
            token_hash=token_hash,
            issued_at=past - timedelta(hours=12),
            expires_at=past,
        )
    )
    session.flush()

    expired = client.post("/api/auth/refresh", json={"refresh_token": token})
    garbage = client.post("/api/auth/refresh", json={"refresh_token": "x" * 43})

    assert_problem(expired, 401)
    assert_problem(garbage, 401)


def test_a_deactivated_account_cannot_refresh(
    client: TestClient, session: Session, user: User
) -> None:
    pair = _tokens_of(_login(client, user.username, PASSWORD))
    user.active = False
    session.flush()

    response = client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})

    assert_problem(response, 401)


def test_logout_revokes_the_refresh_token(client: TestClient, session: Session, user: User) -> None:
    pair = _tokens_of(_login(client, user.username, PASSWORD))

    response = client.post(
        "/api/auth/logout",
        json={"refresh_token": pair["refresh_token"]},
        headers=_bearer(pair["access_token"]),
    )

    assert response.status_code == 204
    refused = client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert_problem(refused, 401)
    (event,) = audit_events(session, action="logout")
    assert event.actor_user_id == user.id


def test_logout_needs_a_bearer_token(client: TestClient, session: Session, user: User) -> None:
    pair = _tokens_of(_login(client, user.username, PASSWORD))

    response = client.post("/api/auth/logout", json={"refresh_token": pair["refresh_token"]})

    assert_problem(response, 401)
    again = client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert again.status_code == 200


# --- access tokens -----------------------------------------------------------------------


def _claims_token(actor: Actor, secret: str, **overrides: Any) -> str:
    now = utcnow()
    payload: dict[str, Any] = {
        "iss": tokens.ISSUER,
        "aud": tokens.AUDIENCE,
        "sub": str(actor.user_id),
        "name": actor.username,
        "role": str(actor.role),
        "inst": None,
        "prac": None,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "typ": "access",
    }
    payload.update(overrides)
    return jwt.encode(payload, secret, algorithm=tokens.ALGORITHM)


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def someone(make_actor: Callable[..., Actor]) -> Actor:
    actor: Actor = make_actor(Role.CLINICIAN)
    return actor


def test_a_valid_token_is_accepted(client: TestClient, someone: Actor, settings: Settings) -> None:
    token = _claims_token(someone, settings.secret_key)
    assert client.get("/api/auth/me", headers=_bearer(token)).status_code == 200


def test_an_expired_token_is_refused(
    client: TestClient, someone: Actor, settings: Settings
) -> None:
    past = int((utcnow() - timedelta(minutes=1)).timestamp())
    token = _claims_token(someone, settings.secret_key, exp=past, iat=past - 900)

    response = client.get("/api/auth/me", headers=_bearer(token))

    assert "expired" in assert_problem(response, 401, "not-authenticated")["detail"]


def test_a_tampered_token_is_refused(
    client: TestClient, someone: Actor, settings: Settings
) -> None:
    header, payload, signature = _claims_token(someone, settings.secret_key).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    promoted = _b64({**claims, "role": "alliance_admin"})

    response = client.get("/api/users", headers=_bearer(f"{header}.{promoted}.{signature}"))

    assert "invalid" in assert_problem(response, 401, "not-authenticated")["detail"]


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(
            lambda a: _claims_token(a, "another-secret-that-is-long-enough-too"), id="other-key"
        ),
        pytest.param(
            lambda a: (
                f"{_b64({'alg': 'none', 'typ': 'JWT'})}."
                f"{_b64({'sub': str(a.user_id), 'role': 'alliance_admin', 'typ': 'access'})}."
            ),
            id="alg-none",
        ),
        pytest.param(lambda a: "not.a.jwt", id="garbage"),
    ],
)
def test_a_forged_token_is_refused(
    client: TestClient, someone: Actor, forge: Callable[[Actor], str]
) -> None:
    response = client.get("/api/auth/me", headers=_bearer(forge(someone)))
    assert_problem(response, 401, "not-authenticated")


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"typ": "refresh"}, id="not-an-access-token"),
        pytest.param({"aud": "someone-else"}, id="other-audience"),
        pytest.param({"iss": "someone-else"}, id="other-issuer"),
        pytest.param({"role": "superuser"}, id="unknown-role"),
    ],
)
def test_a_well_signed_token_with_wrong_claims_is_refused(
    client: TestClient, someone: Actor, settings: Settings, overrides: dict[str, Any]
) -> None:
    token = _claims_token(someone, settings.secret_key, **overrides)
    assert_problem(client.get("/api/auth/me", headers=_bearer(token)), 401, "not-authenticated")


def test_a_token_without_expiry_is_refused(
    client: TestClient, someone: Actor, settings: Settings
) -> None:
    claims = jwt.decode(
        _claims_token(someone, settings.secret_key), options={"verify_signature": False}
    )
    claims.pop("exp")
    forever = jwt.encode(claims, settings.secret_key, algorithm=tokens.ALGORITHM)
    assert_problem(client.get("/api/auth/me", headers=_bearer(forever)), 401)


def test_no_token_and_a_non_bearer_scheme_are_refused(client: TestClient) -> None:
    assert_problem(client.get("/api/auth/me"), 401, "not-authenticated")
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    assert_problem(client.get("/api/auth/me", headers=basic), 401, "not-authenticated")
