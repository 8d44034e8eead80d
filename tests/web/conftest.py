"""Helpers for page tests without a browser: log in through the form, read the CSRF token."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from medalliance.access.models import User
from medalliance.web import csrf as web_csrf
from tests.factories.access import DEFAULT_PASSWORD

TOKEN_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf(client: TestClient, path: str = "/login") -> str:
    """The CSRF token of a page (GETting it sets the cookie too)."""
    response = client.get(path)
    found = TOKEN_RE.search(response.text)
    if found is None:
        raise AssertionError(f"no CSRF field on {path} ({response.status_code})")
    return found.group(1)


def web_login(client: TestClient, user: User, password: str = DEFAULT_PASSWORD) -> None:
    token = csrf(client)
    response = client.post(
        "/login",
        data={"username": user.username, "password": password, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert client.cookies.get(web_csrf.COOKIE)
