"""The web session's credentials and its row: no API token at web login, every ending
recorded on the row (idle, expiry, account, logout), and no way back for an ended row."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.access.models import RefreshToken, User
from medalliance.audit.models import AuditEvent
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role
from medalliance.web.models import WebSession
from medalliance.web.session import COOKIE
from tests.factories.access import UserFactory
from tests.web.conftest import csrf, web_login


def _post_login(client: TestClient, username: str, password: str) -> httpx.Response:
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf(client)},
        follow_redirects=False,
    )


def _refresh_tokens(session: Session, user: User) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(RefreshToken).where(RefreshToken.user_id == user.id)
        )
        or 0
    )


def _row(session: Session, user: User) -> WebSession:
    session.expire_all()
    row = session.scalar(select(WebSession).where(WebSession.user_id == user.id))
    assert row is not None
    return row


# --- 1. no API credential from a web login --------------------------------------------


def test_web_login_issues_no_api_refresh_token(client: TestClient, session: Session) -> None:
    user = UserFactory(role=Role.CLINICIAN)
    web_login(client, user)
    assert client.get("/").status_code == 200
    assert _refresh_tokens(session, user) == 0
    login = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "login",
            AuditEvent.outcome == "success",
            AuditEvent.resource_id == str(user.id),
        )
    ).one()
    assert json.loads(login.detail) == {"channel": "web"}
    session.expire_all()
    reloaded = session.get(User, user.id)
    assert reloaded is not None and reloaded.last_login_at is not None


def test_api_login_still_issues_its_token_pair(client: TestClient, session: Session) -> None:
    user = UserFactory()
    response = client.post(
        "/api/auth/token", data={"username": user.username, "password": "correct-horse-battery"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["refresh_token"]
    assert _refresh_tokens(session, user) == 1


def test_web_lockout_still_applies_and_issues_nothing(client: TestClient, session: Session) -> None:
    user = UserFactory()
    for _ in range(5):  # the default threshold
        assert _post_login(client, user.username, "wrong").status_code == 400
    session.expire_all()
    locked = session.get(User, user.id)
    assert locked is not None and locked.locked_until is not None
    response = _post_login(client, user.username, "correct-horse-battery")
    assert response.status_code == 400
    assert "该账号因多次登录失败已被锁定" in response.text
    assert client.cookies.get(COOKIE) is None
    assert _refresh_tokens(session, user) == 0
    assert session.scalar(select(func.count()).select_from(WebSession)) == 0
    failures = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "login",
            AuditEvent.outcome == "failure",
            AuditEvent.resource_id == str(user.id),
        )
    ).all()
    assert len(failures) == 6
    assert json.loads(failures[-1].detail)["why"] == "account locked"


def test_machine_account_is_refused_as_a_failed_login_with_no_token(
    client: TestClient, session: Session
) -> None:
    gateway = UserFactory(role=Role.DEVICE_GATEWAY)
    response = _post_login(client, gateway.username, "correct-horse-battery")
    assert response.status_code == 400
    assert _refresh_tokens(session, gateway) == 0
    events = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "login", AuditEvent.resource_id == str(gateway.id)
        )
    ).all()
    assert [e.outcome for e in events] == ["failure"]
    session.expire_all()
    reloaded = session.get(User, gateway.id)
    assert reloaded is not None and reloaded.failed_logins == 0  # the password was right


# --- 2. the row tells how the session ended -------------------------------------------


def test_idle_session_row_is_marked_ended_and_audited(client: TestClient, session: Session) -> None:
    user = UserFactory()
    web_login(client, user)
    row = _row(session, user)
    row.last_seen_at = utcnow() - timedelta(minutes=31)
    session.flush()
    response = client.get("/patients", follow_redirects=False)
    assert response.status_code == 303 and "expired=1" in response.headers["location"]
    row = _row(session, user)
    assert row.ended_at is not None and row.end_reason == "idle"
    ends = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "session.end", AuditEvent.resource_id == str(user.id)
        )
    ).all()
    assert [json.loads(e.detail) for e in ends] == [{"channel": "web", "reason": "idle"}]


def test_idle_session_found_by_the_login_page_is_ended_once(
    client: TestClient, session: Session
) -> None:
    """The login page takes an optional user and commits: the row ends in the request
    itself, audited once, and nothing ends it twice."""
    user = UserFactory()
    web_login(client, user)
    row = _row(session, user)
    row.last_seen_at = utcnow() - timedelta(minutes=45)
    session.flush()
    page = client.get("/login", follow_redirects=False)
    assert page.status_code == 200 and 'name="password"' in page.text
    assert _row(session, user).end_reason == "idle"
    assert client.get("/", follow_redirects=False).status_code == 303
    ends = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "session.end", AuditEvent.resource_id == str(user.id)
        )
    ).all()
    assert len(ends) == 1


def test_idle_session_found_by_an_htmx_request_is_ended_too(
    client: TestClient, session: Session
) -> None:
    user = UserFactory()
    web_login(client, user)
    row = _row(session, user)
    row.last_seen_at = utcnow() - timedelta(hours=2)
    session.flush()
    response = client.get("/patients?q=li", headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert _row(session, user).end_reason == "idle"


def test_session_past_its_absolute_limit_is_marked_expired(
    client: TestClient, session: Session
) -> None:
    user = UserFactory()
    web_login(client, user)
    row = _row(session, user)
    row.expires_at = utcnow() - timedelta(seconds=1)
    session.flush()
    assert client.get("/", follow_redirects=False).status_code == 303
    assert _row(session, user).end_reason == "expired"


def test_deactivated_account_ends_the_row(client: TestClient, session: Session) -> None:
    user = UserFactory()
    web_login(client, user)
    user.active = False
    session.flush()
    assert client.get("/", follow_redirects=False).status_code == 303
    assert _row(session, user).end_reason == "account"


def test_ended_row_is_never_revived(client: TestClient, session: Session) -> None:
    """Idle first; then the row's times made to look fresh again (a clock skew, a
    hand edit): the cookie stays dead and the first reason stays."""
    user = UserFactory()
    web_login(client, user)
    row = _row(session, user)
    row.last_seen_at = utcnow() - timedelta(minutes=31)
    session.flush()
    assert client.get("/", follow_redirects=False).status_code == 303
    row = _row(session, user)
    ended_at = row.ended_at
    row.last_seen_at = utcnow()
    row.expires_at = utcnow() + timedelta(hours=8)
    session.flush()
    for _ in range(2):
        assert client.get("/", follow_redirects=False).status_code == 303
    row = _row(session, user)
    assert row.ended_at == ended_at and row.end_reason == "idle"
    ends = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "session.end", AuditEvent.resource_id == str(user.id)
        )
    ).all()
    assert len(ends) == 1


def test_logout_ends_the_row_and_it_stays_ended(client: TestClient, session: Session) -> None:
    user = UserFactory()
    web_login(client, user)
    cookie = client.cookies.get(COOKIE)
    response = client.post(
        "/logout", data={"csrf_token": csrf(client, "/")}, follow_redirects=False
    )
    assert response.status_code == 303
    row = _row(session, user)
    assert row.ended_at is not None and row.end_reason == "logout"
    client.cookies.set(COOKIE, cookie or "")
    assert client.get("/", follow_redirects=False).status_code == 303
    assert _row(session, user).end_reason == "logout"


def test_a_live_session_is_not_ended(client: TestClient, session: Session) -> None:
    user = UserFactory()
    web_login(client, user)
    assert client.get("/").status_code == 200
    row = _row(session, user)
    assert row.ended_at is None and row.end_reason is None


# --- 4. refused pages are audited through the public denial function -------------------


def test_refused_page_is_audited_as_a_denial(client: TestClient, session: Session) -> None:
    user = UserFactory(role=Role.CLINICIAN)
    web_login(client, user)
    response = client.get("/admin/accounts")
    assert response.status_code == 403
    denial = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "denied", AuditEvent.actor_user_id == user.id)
    ).one()
    assert denial.resource_id == "GET /admin/accounts"
    assert denial.outcome == "denied"
