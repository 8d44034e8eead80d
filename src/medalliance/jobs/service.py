"""Enqueue jobs in the caller's transaction; inspect and retry them."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from medalliance.db.upsert import InsertIgnoringConflicts
from medalliance.jobs.models import Job, JobStatus
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import Conflict, NotFound
from medalliance.kernel.ids import new_id
from medalliance.kernel.pagination import PageRequest, PageResult

# A known idempotency key skips the row. Rows of many jobs go in as plain rows; one job
# comes back as an object in the session (enqueue returns it).
_NEW_KEYS = InsertIgnoringConflicts(cast(Table, Job.__table__), on=["idempotency_key"])
_NEW_JOB = InsertIgnoringConflicts(Job, on=["idempotency_key"], returning=[Job])


def _row(
    kind: str,
    payload: dict[str, Any],
    key: str | None,
    *,
    max_attempts: int,
    run_after: datetime,
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "kind": kind,
        "payload": json.dumps(payload, sort_keys=True, ensure_ascii=False),
        "idempotency_key": key,
        "status": JobStatus.PENDING,
        "attempts": 0,
        "max_attempts": max_attempts,
        "run_after": run_after,
        "created_at": now,
    }


def enqueue_many(
    session: Session,
    kind: str,
    jobs: list[tuple[str, dict[str, Any]]],
    *,
    max_attempts: int = 8,
) -> None:
    """Add many jobs of one kind to the outbox in one statement, each as
    (idempotency key, payload). A key already enqueued is skipped, as ``enqueue``
    returns the first job; hot paths (device ingestion) use this instead of a
    statement per job."""
    if not jobs:
        return
    now = utcnow()
    rows = [
        _row(kind, payload, key, max_attempts=max_attempts, run_after=now, now=now)
        for key, payload in jobs
    ]
    session.connection().execute(_NEW_KEYS.for_session(session), rows)


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
    now = utcnow()
    row = _row(
        kind,
        payload,
        idempotency_key,
        max_attempts=max_attempts,
        run_after=run_after or now,
        now=now,
    )
    # ON CONFLICT DO NOTHING: a key enqueued before is skipped; a key another use case
    # inserted and has not committed yet makes the insert wait for it, then skip (or
    # insert, if that one rolled back). Our transaction stays usable either way.
    job: Job | None = session.scalars(_NEW_JOB.for_session(session), [row]).one_or_none()
    if job is not None:
        return job
    existing = session.scalar(select(Job).where(Job.idempotency_key == idempotency_key))
    assert existing is not None  # only this key can have conflicted
    return existing


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
