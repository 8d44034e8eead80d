"""Web login, CSRF, lockout, idle timeout, logout: the server side of the session."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.access.models import User
from medalliance.audit.models import AuditEvent
from medalliance.config import Settings
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


def test_login_sets_a_hardened_cookie_and_stores_only_a_hash(
    client: TestClient, session: Session
) -> None:
    user = UserFactory(role=Role.CLINICIAN)
    web_login(client, user)
    token = client.cookies.get(COOKIE)
    assert token
    row = session.scalar(select(WebSession).where(WebSession.user_id == user.id))
    assert row is not None and row.token_hash != token and len(row.token_hash) == 64
    page = client.get("/")
    assert page.status_code == 200
    assert user.display_name in page.text


def test_cookie_flags(client: TestClient) -> None:
    user = UserFactory()
    token = csrf(client)
    response = client.post(
        "/login",
        data={"username": user.username, "password": "correct-horse-battery", "csrf_token": token},
        follow_redirects=False,
    )
    cookies = [c for c in response.headers.get_list("set-cookie") if c.startswith(COOKIE)]
    assert len(cookies) == 1
    assert "HttpOnly" in cookies[0] and "SameSite=lax" in cookies[0]
    assert "Secure" not in cookies[0]  # plain http in tests; web_secure_cookies adds it


def test_secure_cookies_behind_https(app: FastAPI, settings: Settings) -> None:
    app.state.settings = settings.model_copy(update={"web_secure_cookies": True})
    user = UserFactory()
    with TestClient(app, base_url="https://testserver") as https_client:
        response = _post_login(https_client, user.username, "correct-horse-battery")
    cookies = response.headers.get_list("set-cookie")
    assert response.status_code == 303
    assert all("Secure" in c for c in cookies if c.startswith((COOKIE, "ma_csrf")))


def test_wrong_password_shows_the_error_and_is_audited(
    client: TestClient, session: Session
) -> None:
    user = UserFactory()
    response = _post_login(client, user.username, "wrong")
    assert response.status_code == 400
    assert "用户名或密码错误。" in response.text
    assert client.cookies.get(COOKIE) is None
    session.expire_all()
    reloaded = session.get(User, user.id)
    assert reloaded is not None and reloaded.failed_logins == 1
    failures = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "login", AuditEvent.outcome == "failure")
    ).all()
    assert any(e.resource_id == str(user.id) for e in failures)


def test_lockout_message_names_the_time_in_the_chosen_language(
    client: TestClient, session: Session
) -> None:
    user = UserFactory()
    for _ in range(5):  # the default threshold
        response = _post_login(client, user.username, "wrong")
    assert "该账号因多次登录失败已被锁定" in response.text
    # Even the right password is refused while locked.
    client.cookies.set("ma_lang", "en")
    response = _post_login(client, user.username, "correct-horse-battery")
    assert response.status_code == 400
    assert "This account is locked after repeated failed logins" in response.text
    assert client.cookies.get(COOKIE) is None


@pytest.mark.parametrize("path", ["/logout", "/language", "/login"])
def test_every_post_without_the_csrf_token_is_refused(client: TestClient, path: str) -> None:
    user = UserFactory()
    web_login(client, user)
    response = client.post(path, data={"locale": "en"}, follow_redirects=False)
    assert response.status_code == 403
    assert "表单已过期" in response.text
    response = client.post(
        path, data={"locale": "en", "csrf_token": "forged"}, follow_redirects=False
    )
    assert response.status_code == 403
    assert client.get("/").status_code == 200  # still logged in: nothing happened


def test_every_page_post_route_is_csrf_protected(client: TestClient) -> None:
    """Whatever page routes exist (including other parts' routers), none takes a POST
    without the token."""
    from medalliance.web.pages import PAGE_ROUTERS

    for router in PAGE_ROUTERS:
        for route in router.routes:
            methods = getattr(route, "methods", set()) - {"GET", "HEAD"}
            for method in methods:
                path = getattr(route, "path", "").replace("{", "").replace("}", "")
                response = client.request(method, path, follow_redirects=False)
                assert response.status_code in (403, 404, 405), (method, path)
                if response.status_code == 403:
                    assert "表单已过期" in response.text or "Form" in response.text


def test_htmx_post_with_the_header_passes(client: TestClient) -> None:
    user = UserFactory()
    web_login(client, user)
    token = csrf(client, "/")
    response = client.post(
        "/language",
        data={"locale": "en", "next": "/"},
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/"


def test_idle_session_times_out_and_login_says_so(client: TestClient, session: Session) -> None:
    user = UserFactory()
    web_login(client, user)
    row = session.scalar(select(WebSession).where(WebSession.user_id == user.id))
    assert row is not None
    row.last_seen_at = utcnow() - timedelta(minutes=31)
    session.flush()
    response = client.get("/patients?q=li", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/patients%3Fq%3Dli&expired=1"
    page = client.get(response.headers["location"])
    assert "会话已超时" in page.text


def test_htmx_request_after_timeout_redirects_the_whole_page(
    client: TestClient, session: Session
) -> None:
    user = UserFactory()
    web_login(client, user)
    row = session.scalar(select(WebSession).where(WebSession.user_id == user.id))
    assert row is not None
    row.last_seen_at = utcnow() - timedelta(hours=2)
    session.flush()
    response = client.get(
        "/patients?q=li",
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/patients?q=l"},
    )
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/login?next=/patients%3Fq%3Dl&expired=1"


def test_logout_ends_the_session_server_side(client: TestClient, session: Session) -> None:
    user = UserFactory()
    web_login(client, user)
    stolen = client.cookies.get(COOKIE)
    response = client.post(
        "/logout", data={"csrf_token": csrf(client, "/")}, follow_redirects=False
    )
    assert response.status_code == 303
    client.cookies.set(COOKIE, stolen or "")  # replaying the old cookie does not work
    assert client.get("/", follow_redirects=False).status_code == 303
    row = session.scalar(select(WebSession).where(WebSession.user_id == user.id))
    assert row is not None and row.end_reason == "logout"


def test_deactivated_account_loses_its_session(client: TestClient, session: Session) -> None:
    user = UserFactory()
    web_login(client, user)
    user.active = False
    session.flush()
    assert client.get("/", follow_redirects=False).status_code == 303


def test_machine_accounts_cannot_use_the_pages(client: TestClient) -> None:
    gateway = UserFactory(role=Role.DEVICE_GATEWAY)
    response = _post_login(client, gateway.username, "correct-horse-battery")
    assert response.status_code == 400
    assert client.cookies.get(COOKIE) is None


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil"])
def test_next_never_leaves_the_site(client: TestClient, target: str) -> None:
    user = UserFactory()
    token = csrf(client)
    response = client.post(
        "/login",
        data={
            "username": user.username,
            "password": "correct-horse-battery",
            "csrf_token": token,
            "next": target,
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"
