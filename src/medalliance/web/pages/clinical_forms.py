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

from medalliance.audit import service as audit_service
from medalliance.kernel.errors import DomainError

T = TypeVar("T")


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
    mark = audit_service.pending_mark(session)
    try:
        with session.begin_nested():
            return use_case()
    except (DomainError, ValidationError):
        audit_service.discard_since(session, mark)
        raise
