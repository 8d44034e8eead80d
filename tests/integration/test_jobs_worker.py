"""The durable job queue: outbox semantics, idempotency, retries with backoff, dead jobs,
lease expiry, concurrent workers and schedules."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from medalliance.audit import service as audit
from medalliance.audit.models import AuditEvent
from medalliance.db.uow import unit_of_work
from medalliance.jobs import registry
from medalliance.jobs import service as jobs
from medalliance.jobs import worker as worker_module
from medalliance.jobs.models import Job, JobStatus
from medalliance.jobs.registry import Handler, JobContext
from medalliance.jobs.worker import Worker
from medalliance.kernel.actor import SYSTEM_ACTOR, Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import Conflict, NotFound
from medalliance.kernel.roles import Role
from tests.integration.conftest import CliRun, ScratchDatabase

Factory = sessionmaker[Session]
Register = Callable[[Handler], str]


class Boom(RuntimeError):
    pass


class FrozenClock:
    """The worker's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = utcnow().replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta

    def move_to(self, moment: datetime) -> None:
        self.now = max(self.now, moment)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    frozen = FrozenClock()
    monkeypatch.setattr(worker_module, "utcnow", frozen)
    return frozen


@pytest.fixture
def register() -> Iterator[Register]:
    """Register test handlers under fresh kinds; unregister them afterwards."""
    kinds: list[str] = []

    def add(fn: Handler) -> str:
        kind = f"test.{fn.__name__}.{uuid.uuid4().hex[:8]}"
        registry.handler(kind)(fn)
        kinds.append(kind)
        return kind

    yield add
    for kind in kinds:
        registry.unregister(kind)
        assert registry.get_handler(kind) is None


def enqueue(
    factory: Factory,
    kind: str,
    payload: dict[str, object] | None = None,
    *,
    idempotency_key: str | None = None,
    run_after: datetime | None = None,
    max_attempts: int = 8,
) -> uuid.UUID:
    with unit_of_work(factory) as s:
        job = jobs.enqueue(
            s,
            kind,
            payload or {},
            idempotency_key=idempotency_key,
            run_after=run_after,
            max_attempts=max_attempts,
        )
        return job.id


def get_job(factory: Factory, job_id: uuid.UUID) -> Job:
    with factory() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def count_jobs(factory: Factory, kind: str) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).where(Job.kind == kind)) or 0


# --- the outbox --------------------------------------------------------------------------


def test_a_job_enqueued_in_a_rolled_back_use_case_never_exists(session_factory: Factory) -> None:
    def use_case(s: Session) -> None:
        job = jobs.enqueue(s, "test.never", {"x": 1})
        assert s.scalar(select(Job.id).where(Job.kind == "test.never")) == job.id  # flushed
        raise Boom

    with pytest.raises(Boom), unit_of_work(session_factory) as s:
        use_case(s)
    assert count_jobs(session_factory, "test.never") == 0


def test_an_idempotency_key_enqueues_the_work_once(session_factory: Factory) -> None:
    first = enqueue(session_factory, "test.once", {"n": 1}, idempotency_key="once:1")
    again = enqueue(session_factory, "test.once", {"n": 2}, idempotency_key="once:1")
    other = enqueue(session_factory, "test.once", {"n": 3}, idempotency_key="once:2")
    assert again == first != other
    assert count_jobs(session_factory, "test.once") == 2
    assert json.loads(get_job(session_factory, first).payload) == {"n": 1}


def test_enqueue_many_writes_pending_jobs_once_per_key(session_factory: Factory) -> None:
    first = enqueue(session_factory, "test.many", {"n": 0}, idempotency_key="many:a")
    with unit_of_work(session_factory) as s:
        jobs.enqueue_many(
            s, "test.many", [("many:a", {"n": 1}), ("many:b", {"n": 2}), ("many:c", {"n": 3})]
        )
        jobs.enqueue_many(s, "test.many", [])
    with session_factory() as s:
        rows = s.execute(
            select(Job.idempotency_key, Job.payload, Job.status)
            .where(Job.kind == "test.many")
            .order_by(Job.idempotency_key)
        ).all()
    assert [(k, json.loads(p), st) for k, p, st in rows] == [
        ("many:a", {"n": 0}, JobStatus.PENDING),  # the known key kept its first job
        ("many:b", {"n": 2}, JobStatus.PENDING),
        ("many:c", {"n": 3}, JobStatus.PENDING),
    ]
    assert get_job(session_factory, first).payload == json.dumps({"n": 0})


def test_the_worker_runs_a_handler_in_the_jobs_transaction_and_marks_it_done(
    session_factory: Factory, register: Register
) -> None:
    seen: list[JobContext] = []

    def remember(session: Session, ctx: JobContext) -> None:
        seen.append(ctx)
        audit.record(
            session, SYSTEM_ACTOR, action="job-ran", resource_type="Job", resource_id=ctx.job_id
        )

    kind = register(remember)
    job_id = enqueue(session_factory, kind, {"grant_id": "g-1", "n": 2})

    summary = Worker(session_factory, name="w").run_until_idle()

    assert summary.failed == 0 and summary.succeeded >= 1
    assert [(c.job_id, c.kind, c.attempt, c.payload) for c in seen] == [
        (job_id, kind, 1, {"grant_id": "g-1", "n": 2})
    ]
    job = get_job(session_factory, job_id)
    assert (job.status, job.attempts, job.locked_by, job.locked_until, job.last_error) == (
        JobStatus.DONE,
        1,
        None,
        None,
        None,
    )
    assert job.finished_at is not None
    with session_factory() as s:
        ran = s.scalar(select(AuditEvent).where(AuditEvent.resource_id == str(job_id)))
    assert ran is not None and ran.action == "job-ran"


def test_a_failing_handlers_database_effects_are_rolled_back(
    session_factory: Factory, register: Register, clock: FrozenClock
) -> None:
    def half_done(session: Session, ctx: JobContext) -> None:
        audit.record(
            session, SYSTEM_ACTOR, action="half-done", resource_type="Job", resource_id=ctx.job_id
        )
        raise Boom("after writing")

    job_id = enqueue(session_factory, register(half_done), run_after=clock.now)
    w = Worker(session_factory, name="w")
    assert w.claim() == [job_id]
    assert w.run_job(job_id) is False
    with session_factory() as s:
        assert s.scalar(select(AuditEvent).where(AuditEvent.resource_id == str(job_id))) is None
    assert get_job(session_factory, job_id).last_error == "Boom: after writing"


def test_a_failing_job_backs_off_exponentially_then_dies_and_can_be_retried(
    session_factory: Factory, register: Register, clock: FrozenClock
) -> None:
    calls: list[int] = []
    fixed = threading.Event()

    def flaky(session: Session, ctx: JobContext) -> None:
        calls.append(ctx.attempt)
        if not fixed.is_set():
            raise Boom(f"attempt {ctx.attempt}")

    job_id = enqueue(session_factory, register(flaky), run_after=clock.now, max_attempts=3)
    w = Worker(session_factory, name="w", lease=timedelta(minutes=5))
    delays: list[timedelta] = []

    for attempt in (1, 2, 3):
        assert w.claim() == [job_id]
        running = get_job(session_factory, job_id)
        assert (running.status, running.attempts, running.locked_by) == (
            JobStatus.RUNNING,
            attempt,
            "w",
        )
        assert running.locked_until == clock.now + timedelta(minutes=5)
        assert w.run_job(job_id) is False
        job = get_job(session_factory, job_id)
        assert job.attempts == attempt
        assert job.last_error == f"Boom: attempt {attempt}"
        assert (job.locked_by, job.locked_until) == (None, None)
        if attempt < 3:
            assert job.status is JobStatus.PENDING
            delay = job.run_after - clock.now
            low = timedelta(seconds=2 ** (attempt - 1))  # 2 s x 2^(n-1), jitter 0.5..1
            assert low <= delay <= 2 * low, delay
            delays.append(delay)
            assert w.claim() == []  # not due yet
            clock.move_to(job.run_after)

    assert delays[1] > delays[0]
    dead = get_job(session_factory, job_id)
    assert (dead.status, dead.attempts, dead.last_error) == (JobStatus.DEAD, 3, "Boom: attempt 3")
    assert dead.finished_at == clock.now
    clock.advance(timedelta(days=30))
    assert w.claim() == []  # a dead job is never picked up again on its own
    assert calls == [1, 2, 3]

    with pytest.raises(NotFound), unit_of_work(session_factory) as s:
        jobs.retry_dead(s, uuid.uuid4())
    with unit_of_work(session_factory) as s:
        retried = jobs.retry_dead(s, job_id)
        assert (retried.status, retried.attempts, retried.finished_at) == (
            JobStatus.PENDING,
            0,
            None,
        )
    fixed.set()
    clock.advance(timedelta(seconds=1))
    w.run_until_idle()
    done = get_job(session_factory, job_id)
    assert (done.status, done.attempts, done.last_error) == (JobStatus.DONE, 1, None)
    with pytest.raises(Conflict), unit_of_work(session_factory) as s:
        jobs.retry_dead(s, job_id)


def test_a_job_without_a_handler_fails_and_is_retried(
    session_factory: Factory, clock: FrozenClock
) -> None:
    job_id = enqueue(session_factory, "test.no-such-kind", run_after=clock.now)
    w = Worker(session_factory, name="w")
    assert w.claim() == [job_id]
    assert w.run_job(job_id) is False
    job = get_job(session_factory, job_id)
    assert job.status is JobStatus.PENDING
    assert job.last_error is not None and "no handler registered" in job.last_error


def test_an_expired_lease_is_reclaimed_by_another_worker(
    session_factory: Factory, register: Register, clock: FrozenClock
) -> None:
    ran_in: list[str] = []

    def work(session: Session, ctx: JobContext) -> None:
        ran_in.append(threading.current_thread().name)

    job_id = enqueue(session_factory, register(work), run_after=clock.now)
    crashed = Worker(session_factory, name="crashed", lease=timedelta(seconds=30))
    rescuer = Worker(session_factory, name="rescuer", lease=timedelta(seconds=30))

    assert crashed.claim() == [job_id]
    assert rescuer.claim() == []  # leased
    clock.advance(timedelta(seconds=29))
    assert rescuer.claim() == []  # still leased
    clock.advance(timedelta(seconds=2))
    assert rescuer.claim() == [job_id]
    reclaimed = get_job(session_factory, job_id)
    assert (reclaimed.locked_by, reclaimed.attempts) == ("rescuer", 2)

    # The first worker wakes up: it lost the lease, so it neither runs nor records anything.
    assert crashed.run_job(job_id) is False
    crashed._record_failure(job_id, Boom("late"))
    assert get_job(session_factory, job_id).last_error is None
    assert ran_in == []

    assert rescuer.run_job(job_id) is True
    assert len(ran_in) == 1
    assert get_job(session_factory, job_id).status is JobStatus.DONE


def test_workers_claim_disjoint_batches(
    session_factory: Factory, register: Register, clock: FrozenClock
) -> None:
    runs: Counter[uuid.UUID] = Counter()

    def work(session: Session, ctx: JobContext) -> None:
        runs[ctx.job_id] += 1

    kind = register(work)
    ids = {enqueue(session_factory, kind, {"i": i}, run_after=clock.now) for i in range(10)}
    a = Worker(session_factory, name="a", batch_size=4)
    b = Worker(session_factory, name="b", batch_size=4)

    first, second, third = a.claim(), b.claim(), a.claim()
    assert (len(first), len(second), len(third)) == (4, 4, 2)
    assert set(first) | set(second) | set(third) == ids
    assert b.claim() == []
    for job_id in second:
        assert a.run_job(job_id) is False  # not a's job
    for job_id in first + third:
        assert a.run_job(job_id) is True
    for job_id in second:
        assert b.run_job(job_id) is True
    assert runs == dict.fromkeys(ids, 1)


# --- schedules ---------------------------------------------------------------------------


@pytest.fixture
def hourly(register: Register) -> str:
    def tick(session: Session, ctx: JobContext) -> None:
        pass

    kind = register(tick)
    registry.schedule(kind, every=timedelta(hours=1), payload={"source": "test"})
    return kind


def test_a_schedule_is_enqueued_once_per_period_however_many_workers_ask(
    session_factory: Factory, hourly: str, clock: FrozenClock
) -> None:
    clock.now = clock.now.replace(minute=10, second=0)
    workers = [Worker(session_factory, name=f"w{i}") for i in range(3)]

    every_schedule = len(registry.schedules())
    assert [w.enqueue_due_schedules() for w in workers] == [every_schedule, 0, 0]
    clock.advance(timedelta(minutes=45))  # still the same hour
    assert [w.enqueue_due_schedules() for w in workers] == [0, 0, 0]
    assert count_jobs(session_factory, hourly) == 1

    clock.advance(timedelta(minutes=10))  # the next hour
    assert workers[1].enqueue_due_schedules() >= 1
    assert [w.enqueue_due_schedules() for w in workers] == [0, 0, 0]

    with session_factory() as s:
        rows = list(s.scalars(select(Job).where(Job.kind == hourly)))
    assert len(rows) == 2
    assert len({r.idempotency_key for r in rows}) == 2
    assert all(json.loads(r.payload) == {"source": "test"} for r in rows)


def test_unregistering_removes_the_schedule(register: Register) -> None:
    def tick(session: Session, ctx: JobContext) -> None:
        pass

    kind = register(tick)
    registry.schedule(kind, every=timedelta(hours=1))
    assert kind in {s.kind for s in registry.schedules()}
    registry.unregister(kind)
    assert kind not in {s.kind for s in registry.schedules()}
    assert registry.get_handler(kind) is None


# --- the operators' API and the CLI ------------------------------------------------------


def test_retrying_a_dead_job_over_the_api_is_audited(
    client: TestClient,
    auth_headers: Callable[[Actor], dict[str, str]],
    make_actor: Callable[..., Actor],
    session_factory: Factory,
) -> None:
    job_id = enqueue(session_factory, "test.dead", max_attempts=1)
    with unit_of_work(session_factory) as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.status, job.attempts, job.last_error = JobStatus.DEAD, 1, "Boom"
    operator = make_actor(Role.ALLIANCE_ADMIN, username="operator")

    denied = client.post(
        f"/api/jobs/{job_id}/retry", headers=auth_headers(make_actor(Role.CLINICIAN))
    )
    assert denied.status_code == 403
    resp = client.post(f"/api/jobs/{job_id}/retry", headers=auth_headers(operator))
    assert resp.status_code == 200, resp.text
    assert (resp.json()["status"], resp.json()["attempts"]) == ("pending", 0)
    assert (
        client.post(f"/api/jobs/{job_id}/retry", headers=auth_headers(operator)).status_code == 409
    )
    with session_factory() as s:
        row = s.scalar(select(AuditEvent).where(AuditEvent.resource_id == str(job_id)))
    assert row is not None
    assert (row.action, row.resource_type, row.actor_username) == ("retry", "Job", "operator")


def test_worker_burst_command_drains_the_queue(
    scratch_db: ScratchDatabase, register: Register, run_cli: CliRun
) -> None:
    def work(session: Session, ctx: JobContext) -> None:
        pass

    def fail(session: Session, ctx: JobContext) -> None:
        raise Boom("nope")

    ok_id = enqueue(scratch_db.factory, register(work))
    bad_id = enqueue(scratch_db.factory, register(fail))

    result = run_cli(scratch_db.url, "worker", "--burst")

    assert result.exit_code == 0, result.output
    assert "1 failed" in result.output
    assert get_job(scratch_db.factory, ok_id).status is JobStatus.DONE
    bad = get_job(scratch_db.factory, bad_id)
    assert (bad.status, bad.last_error) == (JobStatus.PENDING, "Boom: nope")


# --- concurrency on PostgreSQL (committed data, a database of its own) -------------------


@pytest.mark.postgres
def test_concurrent_workers_run_every_job_exactly_once(
    scratch_db: ScratchDatabase, register: Register
) -> None:
    with scratch_db.engine.begin() as conn:
        conn.execute(
            text("CREATE TABLE job_runs (job_id VARCHAR(36) NOT NULL, worker TEXT NOT NULL)")
        )
    calls: Counter[uuid.UUID] = Counter()
    lock = threading.Lock()

    def work(session: Session, ctx: JobContext) -> None:
        with lock:
            calls[ctx.job_id] += 1
        session.execute(
            text("INSERT INTO job_runs (job_id, worker) VALUES (:j, :w)"),
            {"j": str(ctx.job_id), "w": threading.current_thread().name},
        )

    kind = register(work)
    with unit_of_work(scratch_db.factory) as s:
        ids = {jobs.enqueue(s, kind, {"i": i}).id for i in range(200)}

    n_workers = 4
    barrier = threading.Barrier(n_workers)
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            barrier.wait()
            Worker(scratch_db.factory, name=name, batch_size=5).run_until_idle()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(f"w{i}",), name=f"w{i}") for i in range(n_workers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors

    assert calls == dict.fromkeys(ids, 1)
    with scratch_db.factory() as s:
        per_job = Counter(uuid.UUID(j) for j in s.scalars(text("SELECT job_id FROM job_runs")))
        workers_used = set(s.scalars(text("SELECT DISTINCT worker FROM job_runs")))
        statuses = Counter(s.scalars(select(Job.status).where(Job.kind == kind)))
        report = audit.verify(s)
    assert per_job == dict.fromkeys(ids, 1)
    assert statuses == {JobStatus.DONE: 200}
    assert len(workers_used) >= 2, workers_used  # they really ran side by side
    assert report.ok, report.problems


@pytest.mark.postgres
def test_concurrent_workers_enqueue_a_schedule_once(
    scratch_db: ScratchDatabase, hourly: str, clock: FrozenClock
) -> None:
    n_workers = 6
    barrier = threading.Barrier(n_workers)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            Worker(scratch_db.factory, name=f"s{i}").enqueue_due_schedules()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    with scratch_db.factory() as s:
        by_kind = Counter(s.scalars(select(Job.kind)))
    assert by_kind[hourly] == 1
    assert set(by_kind.values()) == {1}  # every registered schedule, once


@pytest.mark.postgres
def test_concurrent_use_cases_enqueue_the_same_idempotent_work_once(
    scratch_db: ScratchDatabase,
) -> None:
    """The second use case must not fail because the first one's job is not yet committed."""
    first_enqueued = threading.Event()
    results: dict[str, uuid.UUID] = {}
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with unit_of_work(scratch_db.factory) as s:
                results["first"] = jobs.enqueue(s, "test.same", {}, idempotency_key="same:1").id
                first_enqueued.set()
                time.sleep(0.3)  # the second use case runs into our uncommitted row meanwhile
        except BaseException as exc:  # pragma: no cover - reported below
            first_enqueued.set()
            errors.append(exc)

    def second() -> None:
        first_enqueued.wait(10)
        try:
            with unit_of_work(scratch_db.factory) as s:
                results["second"] = jobs.enqueue(s, "test.same", {}, idempotency_key="same:1").id
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert not errors, errors
    assert results["first"] == results["second"]
    assert count_jobs(scratch_db.factory, "test.same") == 1
