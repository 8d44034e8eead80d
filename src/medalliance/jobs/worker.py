"""The job worker: claim, run, retry with exponential backoff, give up after max attempts.

Claiming is a compare-and-set ``UPDATE … WHERE status = 'pending'`` so it is safe on
SQLite and PostgreSQL alike; on PostgreSQL candidates are picked with
``FOR UPDATE SKIP LOCKED`` so several workers do not queue on the same rows. A job
whose worker died is taken again once its lease has expired.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from medalliance.db.uow import unit_of_work
from medalliance.jobs import service
from medalliance.jobs.models import Job, JobStatus
from medalliance.jobs.registry import JobContext, get_handler, schedules
from medalliance.kernel.clock import utcnow

log = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 3600.0


def backoff(attempt: int, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter: 2 s, 4 s, 8 s … capped at an hour."""
    exponent = min(max(0, attempt - 1), 32)  # 2 s x 2**32 is far past the cap; no overflow
    raw = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**exponent)
    jitter = (rng or random).uniform(0.5, 1.0)
    return timedelta(seconds=raw * jitter)


@dataclass(frozen=True, slots=True)
class RunSummary:
    claimed: int
    succeeded: int
    failed: int


class Worker:
    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        name: str | None = None,
        lease: timedelta = timedelta(minutes=5),
        batch_size: int = 20,
    ) -> None:
        self.factory = factory
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease = lease
        self.batch_size = batch_size

    def claim(self) -> list[uuid.UUID]:
        now = utcnow()
        claimable = or_(
            and_(Job.status == JobStatus.PENDING, Job.run_after <= now),
            and_(Job.status == JobStatus.RUNNING, Job.locked_until < now),
        )
        claimed: list[uuid.UUID] = []
        with unit_of_work(self.factory) as session:
            query = select(Job.id).where(claimable).order_by(Job.run_after).limit(self.batch_size)
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            for job_id in session.scalars(query).all():
                result = session.execute(
                    update(Job)
                    .where(Job.id == job_id, claimable)
                    .values(
                        status=JobStatus.RUNNING,
                        locked_by=self.name,
                        locked_until=now + self.lease,
                        attempts=Job.attempts + 1,
                    )
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(job_id)
        return claimed

    def run_job(self, job_id: uuid.UUID) -> bool:
        try:
            with unit_of_work(self.factory) as session:
                job = session.get(Job, job_id)
                if job is None or job.status is not JobStatus.RUNNING or job.locked_by != self.name:
                    return False  # lost the lease to another worker
                handler = get_handler(job.kind)
                if handler is None:
                    raise LookupError(f"no handler registered for job kind {job.kind!r}")
                context = JobContext(
                    job_id=job.id,
                    kind=job.kind,
                    attempt=job.attempts,
                    payload=json.loads(job.payload),
                )
                handler(session, context)
                job.status, job.finished_at, job.locked_by = JobStatus.DONE, utcnow(), None
                job.locked_until, job.last_error = None, None
            return True
        except Exception as exc:
            log.warning("job %s failed: %r", job_id, exc)
            self._record_failure(job_id, exc)
            return False

    def _record_failure(self, job_id: uuid.UUID, exc: Exception) -> None:
        with unit_of_work(self.factory) as session:
            job = session.get(Job, job_id)
            if job is None or job.locked_by != self.name:
                return
            job.last_error = f"{type(exc).__name__}: {exc}"[:4000]
            job.locked_by, job.locked_until = None, None
            if job.attempts >= job.max_attempts:
                job.status, job.finished_at = JobStatus.DEAD, utcnow()
            else:
                job.status, job.run_after = JobStatus.PENDING, utcnow() + backoff(job.attempts)

    def enqueue_due_schedules(self) -> int:
        """Enqueue each schedule once per period, however many workers run."""
        added = 0
        now = utcnow()
        for sched in schedules():
            bucket = int(now.timestamp() // sched.every.total_seconds())
            key = f"schedule:{sched.kind}:{bucket}"
            try:
                with unit_of_work(self.factory) as session:
                    before = session.scalar(select(Job.id).where(Job.idempotency_key == key))
                    if before is None:
                        service.enqueue(session, sched.kind, sched.payload, idempotency_key=key)
                        added += 1
            except IntegrityError:
                continue  # another worker enqueued it first
        return added

    def run_once(self) -> RunSummary:
        self.enqueue_due_schedules()
        ids = self.claim()
        ok = sum(1 for job_id in ids if self.run_job(job_id))
        return RunSummary(claimed=len(ids), succeeded=ok, failed=len(ids) - ok)

    def run_until_idle(self, max_rounds: int = 1000) -> RunSummary:
        """Drain what is due now (used by ``worker --burst`` and tests)."""
        total = RunSummary(0, 0, 0)
        for _ in range(max_rounds):
            summary = self.run_once()
            if summary.claimed == 0:
                break
            total = RunSummary(
                total.claimed + summary.claimed,
                total.succeeded + summary.succeeded,
                total.failed + summary.failed,
            )
        return total

    def run_forever(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        log.info("worker %s started", self.name)
        while not stop.is_set():
            summary = self.run_once()
            if summary.claimed == 0:
                stop.wait(poll_seconds)
        log.info("worker %s stopped", self.name)
