"""JSON API: login and tokens, the current account, accounts, break-the-glass."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import OAuth2PasswordRequestForm

from medalliance.access import accounts, break_glass, login
from medalliance.access.permissions import Permission
from medalliance.access.schemas import (
    BreakGlassRead,
    BreakGlassReview,
    BreakGlassStart,
    Me,
    NotificationRead,
    RefreshRequest,
    TokenResponse,
    UserCreate,
    UserRead,
    UserUpdate,
)
from medalliance.api.deps import DbSession, Page, SettingsDep, authenticated, public, require
from medalliance.db.uow import commit
from medalliance.jobs import notifications
from medalliance.kernel.actor import Actor
from medalliance.kernel.errors import NotFound
from medalliance.kernel.roles import Role

router = APIRouter(prefix="/api", tags=["access"])

Public = Annotated[Actor, Depends(public)]
Authenticated = Annotated[Actor, Depends(authenticated)]
UsersManager = Annotated[Actor, Depends(require(Permission.USERS_MANAGE))]
GlassBreaker = Annotated[Actor, Depends(require(Permission.BREAK_GLASS))]


def _tokens(pair: login.TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token,
        token_type=pair.token_type,
        expires_in=pair.expires_in,
        refresh_token=pair.refresh_token,
    )


@router.post("/auth/token", response_model=TokenResponse)
def issue_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: DbSession,
    settings: SettingsDep,
    actor: Public,
) -> TokenResponse:
    """OAuth2 password grant. A short-lived JWT access token and a single-use refresh token."""
    outcome = login.authenticate(
        session=session,
        actor=actor,
        settings=settings,
        username=form.username,
        password=form.password,
    )
    commit(session)  # keep the failure counter and the audit row even when refusing
    return _tokens(outcome.tokens_or_raise())


@router.post("/auth/refresh", response_model=TokenResponse)
def refresh_token(
    body: RefreshRequest, session: DbSession, settings: SettingsDep, actor: Public
) -> TokenResponse:
    outcome = login.refresh(
        session=session, actor=actor, settings=settings, refresh_token=body.refresh_token
    )
    commit(session)  # a detected reuse revokes the family even though we refuse
    return _tokens(outcome.tokens_or_raise())


@router.post("/auth/logout", status_code=204)
def logout(body: RefreshRequest, session: DbSession, actor: Authenticated) -> Response:
    login.logout(session=session, actor=actor, refresh_token=body.refresh_token)
    return Response(status_code=204)


@router.get("/auth/me", response_model=Me)
def me(actor: Authenticated) -> Me:
    assert actor.user_id is not None and actor.role is not None
    return Me(
        id=actor.user_id,
        username=actor.username,
        role=actor.role,
        institution_id=actor.institution_id,
        practitioner_id=actor.practitioner_id,
        permissions=sorted(actor.permissions),
    )


@router.get("/users", response_model=list[UserRead])
def list_users(
    session: DbSession,
    actor: UsersManager,
    page: Page,
    response: Response,
    institution: str | None = None,
    role: Role | None = None,
) -> list[UserRead]:
    result = accounts.list_users(session, actor, institution_code=institution, role=role, page=page)
    response.headers["X-Total-Count"] = str(result.total)
    return [UserRead.model_validate(u) for u in result.items]


@router.post("/users", response_model=UserRead, status_code=201)
def create_user(body: UserCreate, session: DbSession, actor: UsersManager) -> UserRead:
    return UserRead.model_validate(accounts.create_user(session=session, actor=actor, data=body))


@router.get("/users/{user_id}", response_model=UserRead)
def get_user(user_id: uuid.UUID, session: DbSession, actor: UsersManager) -> UserRead:
    return UserRead.model_validate(accounts.get_user(session, actor, user_id))


@router.patch("/users/{user_id}", response_model=UserRead)
def update_user(
    user_id: uuid.UUID, body: UserUpdate, session: DbSession, actor: UsersManager
) -> UserRead:
    return UserRead.model_validate(
        accounts.update_user(session=session, actor=actor, user_id=user_id, data=body)
    )


@router.post("/access/break-glass", response_model=BreakGlassRead, status_code=201)
def start_break_glass(
    body: BreakGlassStart, session: DbSession, settings: SettingsDep, actor: GlassBreaker
) -> BreakGlassRead:
    """Emergency access to one patient, with a stated reason; audited and reviewed later."""
    grant = break_glass.start(
        session=session,
        actor=actor,
        settings=settings,
        patient_id=body.patient_id,
        reason=body.reason,
    )
    return BreakGlassRead.model_validate(grant)


@router.post("/access/break-glass/{grant_id}/end", response_model=BreakGlassRead)
def end_break_glass(grant_id: uuid.UUID, session: DbSession, actor: GlassBreaker) -> BreakGlassRead:
    return BreakGlassRead.model_validate(
        break_glass.end(session=session, actor=actor, grant_id=grant_id)
    )


@router.get("/access/break-glass", response_model=list[BreakGlassRead])
def list_break_glass(
    session: DbSession,
    actor: Authenticated,
    page: Page,
    response: Response,
    unreviewed: bool = False,
) -> list[BreakGlassRead]:
    """Auditors see the whole review queue; others see their own grants."""
    result = break_glass.list_grants(
        session=session, actor=actor, unreviewed_only=unreviewed, page=page
    )
    response.headers["X-Total-Count"] = str(result.total)
    return [BreakGlassRead.model_validate(g) for g in result.items]


@router.post("/access/break-glass/{grant_id}/review", response_model=BreakGlassRead)
def review_break_glass(
    grant_id: uuid.UUID,
    body: BreakGlassReview,
    session: DbSession,
    actor: Annotated[Actor, Depends(require(Permission.BREAK_GLASS_REVIEW))],
) -> BreakGlassRead:
    return BreakGlassRead.model_validate(
        break_glass.review(session=session, actor=actor, grant_id=grant_id, note=body.note)
    )


@router.get("/me/notifications", response_model=list[NotificationRead])
def my_notifications(
    session: DbSession, actor: Authenticated, page: Page, response: Response, unread: bool = False
) -> list[NotificationRead]:
    assert actor.user_id is not None
    result = notifications.for_user(session, actor.user_id, unread_only=unread, page=page)
    response.headers["X-Total-Count"] = str(result.total)
    return [NotificationRead.model_validate(n) for n in result.items]


@router.post("/me/notifications/{notification_id}/read", status_code=204)
def mark_notification_read(
    notification_id: uuid.UUID, session: DbSession, actor: Authenticated
) -> Response:
    assert actor.user_id is not None
    if not notifications.mark_read(session, actor.user_id, notification_id):
        raise NotFound(f"No notification {notification_id} of yours.")
    return Response(status_code=204)
