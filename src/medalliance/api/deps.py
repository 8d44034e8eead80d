"""Request-scoped dependencies: settings, the unit of work, the actor, permissions.

The dependencies that do no I/O are ``async`` so FastAPI runs them on the event loop
instead of sending each through the thread pool; the unit of work stays synchronous.

Every route declares its access with exactly one of ``require(permission)``,
``authenticated`` or ``public``; the access-matrix test reads these declarations.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session, sessionmaker

from medalliance.access import tokens
from medalliance.access.permissions import Permission, permissions_for
from medalliance.config import Settings
from medalliance.db.uow import unit_of_work
from medalliance.kernel.actor import ANONYMOUS, Actor
from medalliance.kernel.errors import NotAuthenticated, PermissionDenied
from medalliance.kernel.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageRequest

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session_factory(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.session_factory
    return factory


def _session(
    factory: Annotated[sessionmaker[Session], Depends(get_session_factory)],
) -> Iterator[Session]:
    with unit_of_work(factory) as session:
        yield session


# Commit before the response is sent: a 2xx means the change is durable.
DbSession = Annotated[Session, Depends(_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _anonymous(request: Request) -> Actor:
    return Actor(
        user_id=None,
        username=ANONYMOUS.username,
        role=None,
        request_id=request.state.request_id,
        client_address=request.client.host if request.client else None,
    )


async def _actor_from_token(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Actor:
    if not token:
        raise NotAuthenticated("Send a bearer token (POST /api/auth/token).")
    claims = tokens.decode_access_token(token, secret=settings.secret_key)
    actor = Actor(
        user_id=claims.user_id,
        username=claims.username,
        role=claims.role,
        institution_id=claims.institution_id,
        practitioner_id=claims.practitioner_id,
        request_id=request.state.request_id,
        client_address=request.client.host if request.client else None,
        permissions=permissions_for(claims.role),
    )
    request.state.actor = actor  # for auditing a denial that happens later
    return actor


async def public(request: Request) -> Actor:
    """No authentication needed (health, login)."""
    return _anonymous(request)


async def authenticated(actor: Annotated[Actor, Depends(_actor_from_token)]) -> Actor:
    """Any logged-in account."""
    return actor


def require(permission: Permission) -> Callable[..., Awaitable[Actor]]:
    async def dependency(actor: Annotated[Actor, Depends(_actor_from_token)]) -> Actor:
        if not actor.can(permission):
            raise PermissionDenied(f"Role {actor.role} lacks permission {permission}.")
        return actor

    dependency.required_permission = permission  # type: ignore[attr-defined]
    dependency.__name__ = f"require_{permission.replace(':', '_').replace('-', '_')}"
    return dependency


def access_declaration(call: Any) -> str | None:
    """What access a dependency declares: a permission, 'authenticated', 'public' or None."""
    if call is public:
        return "public"
    if call is authenticated:
        return "authenticated"
    permission = getattr(call, "required_permission", None)
    return None if permission is None else str(permission)


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> PageRequest:
    return PageRequest(limit=limit, offset=offset)


Page = Annotated[PageRequest, Depends(page_params)]


def new_request_id(header_value: str | None) -> str:
    if header_value and 0 < len(header_value) <= 64 and header_value.isprintable():
        return header_value
    return uuid.uuid4().hex
