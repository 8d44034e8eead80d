"""Enqueue jobs in the caller's transaction; inspect and retry them."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medalliance.jobs.models import Job, JobStatus
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import Conflict, NotFound
from medalliance.kernel.pagination import PageRequest, PageResult


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    *,
    idempotency_key: str | None = None,
    run_after: datetime | None = None,
    max_attempts: int = 8,
) -> Job:
    """Add a job to the outbox. It runs only if the caller's transaction commits.

    With an idempotency key, enqueuing the same work twice returns the first job.
    """
    if idempotency_key is not None:
        existing = session.scalar(select(Job).where(Job.idempotency_key == idempotency_key))
        if existing is not None:
            return existing
    now = utcnow()
    job = Job(
        kind=kind,
        payload=json.dumps(payload, sort_keys=True, ensure_ascii=False),
        idempotency_key=idempotency_key,
        status=JobStatus.PENDING,
        attempts=0,
        max_attempts=max_attempts,
        run_after=run_after or now,
        created_at=now,
    )
    if idempotency_key is None:
        session.add(job)
        session.flush()
        return job
    # A concurrent use case may have inserted the same key and not committed yet: the
    # insert then waits for it and conflicts. Keep our transaction usable and return theirs.
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError:
        existing = session.scalar(select(Job).where(Job.idempotency_key == idempotency_key))
        if existing is None:
            raise
        return existing
    return job


def list_jobs(
    session: Session, *, status: JobStatus | None, kind: str | None, page: PageRequest
) -> PageResult[Job]:
    query = select(Job)
    if status is not None:
        query = query.where(Job.status == status)
    if kind is not None:
        query = query.where(Job.kind == kind)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Job.created_at.desc()).limit(page.limit).offset(page.offset)
    ).all()
    return PageResult(items=list(rows), total=total)


def retry_dead(session: Session, job_id: uuid.UUID) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"No job {job_id}.")
    if job.status is not JobStatus.DEAD:
        raise Conflict(f"Only dead jobs can be retried; this one is {job.status}.")
    job.status, job.attempts, job.run_after, job.finished_at = JobStatus.PENDING, 0, utcnow(), None
    return job


def counts_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    return {str(status): int(n) for status, n in rows}
