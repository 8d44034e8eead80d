"""Enqueue jobs in the caller's transaction; inspect and retry them."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medalliance.jobs.models import Job, JobStatus
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import Conflict, NotFound
from medalliance.kernel.ids import new_id
from medalliance.kernel.pagination import PageRequest, PageResult


def _insert_ignoring_known_keys(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(cast(Table, Job.__table__)).on_conflict_do_nothing(
        index_elements=["idempotency_key"]
    )


_BULK_INSERTS = {name: _insert_ignoring_known_keys(name) for name in ("postgresql", "sqlite")}


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
    savepoint per job."""
    if not jobs:
        return
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "kind": kind,
            "payload": json.dumps(payload, sort_keys=True, ensure_ascii=False),
            "idempotency_key": key,
            "status": JobStatus.PENDING,
            "attempts": 0,
            "max_attempts": max_attempts,
            "run_after": now,
            "created_at": now,
        }
        for key, payload in jobs
    ]
    session.connection().execute(_BULK_INSERTS[session.get_bind().dialect.name], rows)


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
