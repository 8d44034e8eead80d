"""JSON API for operators: see the queue, retry dead jobs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict

from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession, Page, require
from medalliance.audit import service as audit
from medalliance.jobs import service
from medalliance.jobs.models import JobStatus
from medalliance.kernel.actor import Actor

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

Operator = Annotated[Actor, Depends(require(Permission.JOBS_MANAGE))]


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    kind: str
    status: JobStatus
    attempts: int
    max_attempts: int
    run_after: datetime
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


@router.get("", response_model=list[JobRead])
def list_jobs(
    session: DbSession,
    actor: Operator,
    page: Page,
    response: Response,
    status: JobStatus | None = None,
    kind: str | None = None,
) -> list[JobRead]:
    result = service.list_jobs(session, status=status, kind=kind, page=page)
    response.headers["X-Total-Count"] = str(result.total)
    return [JobRead.model_validate(j) for j in result.items]


@router.get("/stats", response_model=dict[str, int])
def job_stats(session: DbSession, actor: Operator) -> dict[str, int]:
    return service.counts_by_status(session)


@router.post("/{job_id}/retry", response_model=JobRead)
def retry_job(job_id: uuid.UUID, session: DbSession, actor: Operator) -> JobRead:
    job = service.retry_dead(session, job_id)
    audit.record(session, actor, action="retry", resource_type="Job", resource_id=job.id)
    return JobRead.model_validate(job)
