"""Small helpers the clinical pages share: the posted form, and running a use case so
that a refused form changes nothing while the audit rows that must outlive a failure
(denials) are kept — what the JSON API's unit of work does for a whole request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession
from medalliance.audit import service as audit_service
from medalliance.kernel.errors import DomainError, PermissionDenied
from medalliance.web import session as web_session
from medalliance.web.session import LoginRequired, WebUser

T = TypeVar("T")


class FormRefused(Exception):
    """The page's own checks refused the form (messages already in the FormErrors)."""


async def _form(request: Request) -> FormData:
    return await request.form()


# The posted form, read on the event loop so that the page function itself stays a
# plain (thread-pool) function like the JSON API's routes.
PostedForm = Annotated[FormData, Depends(_form)]


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def texts(form: FormData, name: str) -> list[str]:
    return [v.strip() if isinstance(v, str) else "" for v in form.getlist(name)]


def attempt(session: Session, use_case: Callable[[], T]) -> T:
    """Run ``use_case`` inside a SAVEPOINT. On a domain or validation error everything
    it wrote is undone and its audit rows dropped, except those marked to survive a
    rollback; the page then shows the form again with the errors."""
    before = list(session.info.get(audit_service.PENDING_KEY, []))
    try:
        with session.begin_nested():
            return use_case()
    except (DomainError, ValidationError, FormRefused):
        added = session.info.get(audit_service.PENDING_KEY, [])[len(before) :]
        session.info[audit_service.PENDING_KEY] = before + [d for d in added if d.survives_rollback]
        raise


def signed_in(request: Request, session: DbSession) -> WebUser:
    """``web.session.require_web_user`` as a plain function. FastAPI runs it in the
    thread pool, so its database work never blocks the event loop: a page's concurrent
    HTMX requests (the safety check, suggestions, the herb search) would otherwise wait
    on each other's SQLite write lock there until "database is locked"."""
    user = web_session.current_user(session, request, request.app.state.settings)
    request.state.web_user = user
    if user is None:
        reason = getattr(request.state, "session_end", None)
        raise LoginRequired(web_session._next_url(request), reason)
    request.state.actor = user.actor  # for auditing a denial raised later
    return user


def requires(permission: Permission) -> Callable[..., WebUser]:
    """``web.session.require_permission`` on ``signed_in``: a 403 page (audited) without it."""

    def dependency(user: Annotated[WebUser, Depends(signed_in)]) -> WebUser:
        if not user.can(permission):
            raise PermissionDenied(f"Role {user.role} lacks permission {permission}.")
        return user

    return dependency


SignedIn = Annotated[WebUser, Depends(signed_in)]
