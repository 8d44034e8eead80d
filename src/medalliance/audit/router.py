"""JSON API for auditors: query and verify the trail."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, field_validator

from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession, Page, require
from medalliance.audit import service as audit
from medalliance.kernel.actor import Actor

router = APIRouter(prefix="/api/audit", tags=["audit"])

Auditor = Annotated[Actor, Depends(require(Permission.AUDIT_READ))]


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    seq: int
    event_id: uuid.UUID
    recorded_at: datetime
    action: str
    outcome: str
    actor_user_id: uuid.UUID | None
    actor_username: str
    actor_role: str | None
    actor_institution_id: uuid.UUID | None
    resource_type: str
    resource_id: str | None
    patient_id: uuid.UUID | None
    purpose_of_use: str | None
    reason: str | None
    request_id: str | None
    client_address: str | None
    detail: dict[str, Any]
    hash: str

    @field_validator("detail", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value


class VerifyResult(BaseModel):
    ok: bool
    rows_checked: int
    problems: list[dict[str, Any]]


@router.get("/events", response_model=list[AuditEventRead])
def search_events(
    session: DbSession,
    actor: Auditor,
    page: Page,
    response: Response,
    patient_id: uuid.UUID | None = None,
    actor_user_id: uuid.UUID | None = None,
    action: str | None = None,
    outcome: str | None = None,
    resource_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[AuditEventRead]:
    """Newest first. Reading the trail is itself audited."""
    flt = audit.AuditFilter(
        patient_id=patient_id,
        actor_user_id=actor_user_id,
        action=action,
        outcome=outcome,
        resource_type=resource_type,
        since=since,
        until=until,
    )
    result = audit.search(session, flt, page)
    audit.record(
        session,
        actor,
        action="search",
        resource_type="AuditEvent",
        patient_id=patient_id,
        detail={"returned": len(result.items)},
    )
    response.headers["X-Total-Count"] = str(result.total)
    return [AuditEventRead.model_validate(e) for e in result.items]


@router.get("/verify", response_model=VerifyResult)
def verify_chain(session: DbSession, actor: Auditor) -> VerifyResult:
    report = audit.verify(session)
    audit.record(
        session,
        actor,
        action="verify",
        resource_type="AuditEvent",
        detail={"ok": report.ok, "rows": report.rows_checked},
    )
    return VerifyResult(
        ok=report.ok,
        rows_checked=report.rows_checked,
        problems=[{"seq": p.seq, "kind": p.kind, "message": p.message} for p in report.problems],
    )
