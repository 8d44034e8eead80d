"""Server-side web sessions: log in through the same use case as the API, then a cookie.

The cookie holds a random token (HttpOnly, SameSite=Lax, Secure behind https); the
``web_sessions`` table holds only its SHA-256. A session ends at logout, after
``web_idle_minutes`` without a request, at the absolute limit (the refresh-token
lifetime), or when the account is deactivated or locked.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from medalliance.access import login
from medalliance.access.models import User
from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession
from medalliance.audit import service as audit
from medalliance.config import Settings
from medalliance.db.uow import unit_of_work
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import NotAuthenticated, PermissionDenied
from medalliance.kernel.roles import Role
from medalliance.web.models import WebSession

COOKIE = "ma_session"
# Machine accounts post data; they have no pages.
MACHINE_ROLES = frozenset({Role.DEVICE_GATEWAY, Role.INTERFACE_GATEWAY})
# Refresh last_seen_at at most this often: idle time is measured in minutes, and a
# write on every HTMX request would be wasted.
TOUCH_EVERY = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class WebUser:
    """The logged-in user of a page: the same Actor the JSON API's services take."""

    actor: Actor
    display_name: str
    session_id: uuid.UUID

    @property
    def role(self) -> Role:
        assert self.actor.role is not None
        return self.actor.role

    def can(self, permission: Permission | str) -> bool:
        return self.actor.can(str(permission))


class LoginRequired(Exception):
    """Raised by ``require_web_user``; the web error handler redirects to the login page."""

    def __init__(
        self, next_url: str, reason: str | None = None, ended: SessionEnd | None = None
    ) -> None:
        super().__init__(reason or "login required")
        self.next_url = next_url
        self.reason = reason  # "expired" when the idle timeout ended the session
        # The session this request found over (idle, expired, account): the handler
        # marks its row ended after the request's rollback (see ``end_session``).
        self.ended = ended


@dataclass(frozen=True, slots=True)
class SessionEnd:
    session_id: uuid.UUID
    user_id: uuid.UUID
    reason: str  # idle, expired, account


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def request_actor(request: Request) -> Actor:
    """The anonymous actor of a request (login attempts are audited under it)."""
    return Actor(
        user_id=None,
        username="anonymous",
        role=None,
        request_id=getattr(request.state, "request_id", None),
        client_address=request.client.host if request.client else None,
    )


def _actor(user: User, request: Request) -> Actor:
    return login.actor_for(user, request_actor(request))


def log_in(
    *, session: Session, request: Request, settings: Settings, username: str, password: str
) -> tuple[str, WebUser] | NotAuthenticated:
    """Check the password with the login use case's credential check (lockout, audit, the
    same messages as the API, but no API token); on success open a web session and
    return (cookie token, user). A failure is returned, not raised, so the caller
    commits the failure counter and the audit row."""
    check = login.check_credentials(
        session=session,
        actor=request_actor(request),
        settings=settings,
        username=username,
        password=password,
        channel="web",
        refused_roles=MACHINE_ROLES,
    )
    if check.role_refused:
        return NotAuthenticated("This is a machine account; it cannot use the web pages.")
    if check.error is not None:
        return check.error
    # No API token is issued: the web session below is the only credential.
    user = check.user
    assert user is not None
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = WebSession(
        token_hash=_hash(token),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(hours=settings.refresh_token_hours),
    )
    session.add(row)
    session.flush()
    return token, WebUser(_actor(user, request), user.display_name, row.id)


def log_out(*, session: Session, request: Request) -> None:
    row = _row(session, request)
    if row is None or row.ended_at is not None:
        return
    user = session.get(User, row.user_id)
    if _end(session, row.id, "logout") and user is not None:
        audit.record(
            session,
            _actor(user, request),
            action="logout",
            resource_type="User",
            resource_id=user.id,
            detail={"channel": "web"},
        )


def _row(session: Session, request: Request) -> WebSession | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    return session.scalar(select(WebSession).where(WebSession.token_hash == _hash(token)))


def _end(session: Session, session_id: uuid.UUID, reason: str) -> bool:
    """Mark a live session ended; False when it was ended already (by a concurrent
    request or an earlier reason, which stays): so each end is audited once."""
    result = session.execute(
        update(WebSession)
        .where(WebSession.id == session_id, WebSession.ended_at.is_(None))
        .values(ended_at=utcnow(), end_reason=reason)
        .execution_options(synchronize_session="fetch")
    )
    return bool(getattr(result, "rowcount", 0))


def current_user(session: Session, request: Request, settings: Settings) -> WebUser | None:
    """The user of a live session, or None (and why in request.state).

    A session found over is marked ended here; when the request goes on to fail (a page
    that needs a login rolls back), ``end_session`` marks it again after the rollback.
    An ended row is never used again, whatever its times say."""
    row = _row(session, request)
    if row is None or row.ended_at is not None:
        return None
    now = utcnow()
    user = session.get(User, row.user_id)
    reason: str | None = None
    if now - row.last_seen_at > timedelta(minutes=settings.web_idle_minutes):
        reason = "idle"
    elif now >= row.expires_at:
        reason = "expired"
    elif (
        user is None
        or not user.active
        or (user.locked_until is not None and user.locked_until > now)
    ):
        reason = "account"
    if reason is not None:
        if _end(session, row.id, reason):
            _audit_end(session, request, user, row.user_id, reason)
        request.state.session_ended = SessionEnd(row.id, row.user_id, reason)
        if reason != "account":
            request.state.session_end = "expired"
        return None
    assert user is not None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
    return WebUser(_actor(user, request), user.display_name, row.id)


def end_session(factory: sessionmaker[Session], request: Request, ended: SessionEnd) -> None:
    """Mark a session ended in a transaction of its own, and audit it: the request that
    found it over is rolled back (it raised LoginRequired). Only a live row is changed,
    so the first reason stays and an ended row is never touched again."""
    with unit_of_work(factory) as session:
        if _end(session, ended.session_id, ended.reason):
            user = session.get(User, ended.user_id)
            _audit_end(session, request, user, ended.user_id, ended.reason)


def _audit_end(
    session: Session, request: Request, user: User | None, user_id: uuid.UUID, reason: str
) -> None:
    audit.record(
        session,
        request_actor(request) if user is None else _actor(user, request),
        action="session.end",
        resource_type="User",
        resource_id=user_id,
        detail={"channel": "web", "reason": reason},
    )


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _same_site_path(url: str, request: Request) -> str | None:
    base = str(request.base_url).rstrip("/")
    if url.startswith(base + "/"):
        return url[len(base) :]
    return None


def _next_url(request: Request) -> str:
    """Where to return after logging in again: a page, never a fragment or a POST."""
    if request.headers.get("hx-request") and request.headers.get("hx-current-url"):
        # An HTMX fragment is no page to come back to: the page it was loaded in is.
        return _same_site_path(request.headers["hx-current-url"], request) or "/"
    if request.method != "GET":
        # A form posted after the session ended: back to the form (its draft is kept).
        return _same_site_path(request.headers.get("referer", ""), request) or "/"
    query = f"?{request.url.query}" if request.url.query else ""
    return request.url.path + query


def login_url(next_url: str, reason: str | None = None) -> str:
    url = "/login?next=" + quote(next_url, safe="/")
    return url + ("&expired=1" if reason == "expired" else "")


# The dependencies below are plain functions on purpose: FastAPI runs them in the
# thread pool, so their database work never blocks the event loop (a page's concurrent
# HTMX requests would otherwise wait on each other there).


def optional_web_user(request: Request, session: DbSession) -> WebUser | None:
    user = current_user(session, request, _settings(request))
    request.state.web_user = user
    if user is not None:
        request.state.actor = user.actor  # for auditing a denial raised later
    return user


def require_web_user(
    request: Request, user: Annotated[WebUser | None, Depends(optional_web_user)]
) -> WebUser:
    """The logged-in user; otherwise a redirect to the login page (kept ``next``)."""
    if user is None:
        # The unit of work rolls back: the error handler ends the row afterwards.
        raise LoginRequired(
            _next_url(request),
            getattr(request.state, "session_end", None),
            getattr(request.state, "session_ended", None),
        )
    return user


def require_permission(permission: Permission) -> Callable[..., WebUser]:
    """A dependency for pages of one permission: 403 page otherwise (audited)."""

    def dependency(user: Annotated[WebUser, Depends(require_web_user)]) -> WebUser:
        if not user.can(permission):
            raise PermissionDenied(f"Role {user.role} lacks permission {permission}.")
        return user

    return dependency


WebUserDep = Annotated[WebUser, Depends(require_web_user)]
OptionalWebUserDep = Annotated[WebUser | None, Depends(optional_web_user)]
