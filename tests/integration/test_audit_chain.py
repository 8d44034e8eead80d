"""The hash-chained audit trail: append-only triggers, verification that names the
tampered row, concurrent writers, and the auditors' JSON API."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from medalliance.audit import service as audit
from medalliance.audit.chain import HASHED_FIELDS, row_hash
from medalliance.audit.models import AuditChainHead, AuditEvent
from medalliance.db.uow import unit_of_work
from medalliance.kernel.actor import Actor
from medalliance.kernel.roles import Role
from tests.integration.conftest import ScratchDatabase, disable_audit_trigger

Factory = sessionmaker[Session]


def last_seq(factory: Factory) -> int:
    with factory() as s:
        head = s.get(AuditChainHead, audit.HEAD_ID)
        assert head is not None
        return head.last_seq


def write_events(
    factory: Factory,
    actor: Actor,
    n: int,
    *,
    patient_id: uuid.UUID | None = None,
    outcome: audit.Outcome = audit.Outcome.SUCCESS,
    detail: dict[str, object] | None = None,
) -> list[int]:
    """n events, one unit of work each; returns their seq."""
    start = last_seq(factory)
    for i in range(n):
        with unit_of_work(factory) as s:
            audit.record(
                s,
                actor,
                action=f"test-{i}",
                resource_type="Thing",
                patient_id=patient_id,
                outcome=outcome,
                detail=detail,
            )
    return list(range(start + 1, start + n + 1))


def verify(factory: Factory) -> audit.VerifyReport:
    with factory() as s:
        return audit.verify(s)


@pytest.fixture
def clinician(make_actor: Callable[..., Actor]) -> Actor:
    return make_actor(Role.CLINICIAN, username="chain-writer")


@pytest.fixture
def auditor(make_actor: Callable[..., Actor]) -> Actor:
    return make_actor(Role.AUDITOR, username="the-auditor")


# --- the chain ---------------------------------------------------------------------------


def test_rows_are_contiguous_and_each_hashes_its_predecessor(
    session_factory: Factory, clinician: Actor
) -> None:
    seqs = write_events(session_factory, clinician, 4, detail={"k": "v", "n": 1})
    with session_factory() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.seq >= seqs[0] - 1).order_by("seq"))
        rows_list = list(rows)
    by_seq = {r.seq: r for r in rows_list}
    for seq in seqs:
        row = by_seq[seq]
        if seq - 1 in by_seq:
            assert row.prev_hash == by_seq[seq - 1].hash
        assert row.hash == row_hash(row.prev_hash, {f: getattr(row, f) for f in HASHED_FIELDS})
        assert json.loads(row.detail) == {"k": "v", "n": 1}
    report = verify(session_factory)
    assert report.ok, report.problems
    assert report.rows_checked == seqs[-1]


def test_a_plain_update_is_refused_by_the_database(
    connection: Connection, session_factory: Factory, clinician: Actor
) -> None:
    (seq,) = write_events(session_factory, clinician, 1)
    with pytest.raises(DBAPIError, match="append-only"), connection.begin_nested():
        connection.execute(text("UPDATE audit_events SET reason = 'x' WHERE seq = :s"), {"s": seq})
    assert (
        connection.scalar(text("SELECT reason FROM audit_events WHERE seq = :s"), {"s": seq})
        is None
    )


def test_a_plain_delete_is_refused_by_the_database(
    connection: Connection, session_factory: Factory, clinician: Actor
) -> None:
    (seq,) = write_events(session_factory, clinician, 1)
    with pytest.raises(DBAPIError, match="append-only"), connection.begin_nested():
        connection.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": seq})
    assert (
        connection.scalar(text("SELECT count(*) FROM audit_events WHERE seq = :s"), {"s": seq}) == 1
    )


@pytest.mark.postgres
def test_truncate_is_refused_on_postgres(
    connection: Connection, session_factory: Factory, clinician: Actor
) -> None:
    write_events(session_factory, clinician, 1)
    with pytest.raises(DBAPIError, match="append-only"), connection.begin_nested():
        connection.execute(text("TRUNCATE audit_events"))


def test_verify_names_a_row_edited_behind_the_triggers_back(
    connection: Connection, session_factory: Factory, clinician: Actor
) -> None:
    seqs = write_events(session_factory, clinician, 5)
    target = seqs[2]
    disable_audit_trigger(connection, "audit_events_no_update")
    connection.execute(
        text("UPDATE audit_events SET actor_username = 'someone-else' WHERE seq = :s"),
        {"s": target},
    )

    report = verify(session_factory)

    assert not report.ok
    assert [(p.seq, p.kind) for p in report.problems] == [(target, "edited")]
    assert f"row {target} " in report.problems[0].message


def test_verify_follows_a_recomputed_hash_to_the_broken_link(
    connection: Connection, session_factory: Factory, clinician: Actor
) -> None:
    """An attacker who also rewrites the edited row's hash breaks the next row's link."""
    seqs = write_events(session_factory, clinician, 4)
    target = seqs[1]
    disable_audit_trigger(connection, "audit_events_no_update")
    with session_factory() as s:
        row = s.get(AuditEvent, target)
        assert row is not None
        fields = {f: getattr(row, f) for f in HASHED_FIELDS} | {"reason": "forged"}
        forged = row_hash(row.prev_hash, fields)
    connection.execute(
        text("UPDATE audit_events SET reason = 'forged', hash = :h WHERE seq = :s"),
        {"h": forged, "s": target},
    )

    report = verify(session_factory)

    assert [(p.seq, p.kind) for p in report.problems] == [(target + 1, "broken-link")]


def test_verify_names_a_deleted_middle_row_as_missing(
    connection: Connection, session_factory: Factory, clinician: Actor
) -> None:
    seqs = write_events(session_factory, clinician, 5)
    disable_audit_trigger(connection, "audit_events_no_delete")
    connection.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": seqs[2]})

    report = verify(session_factory)

    assert [(p.seq, p.kind) for p in report.problems] == [(seqs[3], "missing")]
    assert f"rows {seqs[2]}..{seqs[2]} are missing" in report.problems[0].message


def test_verify_detects_deleted_newest_rows_through_the_chain_head(
    connection: Connection, session_factory: Factory, clinician: Actor
) -> None:
    seqs = write_events(session_factory, clinician, 5)
    disable_audit_trigger(connection, "audit_events_no_delete")
    connection.execute(text("DELETE FROM audit_events WHERE seq >= :s"), {"s": seqs[3]})

    report = verify(session_factory)

    assert [(p.seq, p.kind) for p in report.problems] == [(seqs[4], "truncated")]
    assert f"ends at row {seqs[2]}" in report.problems[0].message


@pytest.mark.postgres
def test_rows_chained_in_python_and_by_the_database_function_verify_as_one_chain(
    session_factory: Factory, clinician: Actor
) -> None:
    """Rows written before the append function (chained in Python) and after it, in
    any order and with text that JSON escapes, form one chain that verifies."""
    awkward = {"quote": '"', "backslash": "\\", "newline": "a\nb", "zh": "王秀英", "emoji": "🩺"}
    start = last_seq(session_factory)
    for in_python in (True, False, True, False):
        with unit_of_work(session_factory) as s:
            for n in range(3):
                audit.record(
                    s,
                    clinician,
                    action=f"mixed-{in_python}-{n}",
                    resource_type="Thing",
                    reason='原因: "引号" \\ \t',
                    detail=awkward | {"n": n},
                )
            drafts = audit.take_pending(s)
            s.flush()
            if in_python:
                audit._append_here(s.connection(), drafts)
            else:
                audit._append_in_database(s.connection(), drafts)

    with session_factory() as s:
        rows = list(s.scalars(select(AuditEvent).where(AuditEvent.seq > start).order_by("seq")))
    assert [r.seq for r in rows] == list(range(start + 1, start + 13))
    assert all(r.prev_hash == p.hash for p, r in itertools.pairwise(rows))
    assert json.loads(rows[-1].detail) == awkward | {"n": 2}
    assert verify(session_factory).ok


# --- concurrent writers (committed data in a database of their own) ---------------------


def run_at_once(threads_n: int, body: Callable[[int], None]) -> None:
    """``body(n)`` in ``threads_n`` threads released together; re-raise what failed."""
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait()
            body(n)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads_n)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=60)
    assert not errors, errors


@pytest.mark.postgres
def test_concurrent_writers_keep_the_chain_gapless_and_valid(
    scratch_db: ScratchDatabase, make_actor: Callable[..., Actor]
) -> None:
    threads_n, rounds = 8, 15

    def writer(n: int) -> None:
        actor = make_actor(Role.CLINICIAN, username=f"writer-{n}")
        for i in range(rounds):
            with unit_of_work(scratch_db.factory) as s:
                # 1 or 2 events per transaction
                for j in range(1 + (i + n) % 2):
                    audit.record(s, actor, action=f"w{n}-{i}-{j}", resource_type="Thing")

    run_at_once(threads_n, writer)

    expected = sum(1 + (i + n) % 2 for n in range(threads_n) for i in range(rounds))
    with scratch_db.factory() as s:
        seqs = list(s.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)))
        actions = list(s.scalars(select(AuditEvent.action)))
        report = audit.verify(s)
    assert seqs == list(range(1, expected + 1))
    assert len(set(actions)) == expected
    assert report.ok, report.problems
    assert report.rows_checked == expected


@pytest.mark.postgres
def test_the_database_function_and_the_python_append_serialise_on_the_head(
    scratch_db: ScratchDatabase, make_actor: Callable[..., Actor]
) -> None:
    """Writers of both kinds at once (e.g. during a rolling upgrade): both lock the
    head row, so the chain stays gapless and valid."""
    threads_n, rounds = 6, 10

    def writer(n: int) -> None:
        actor = make_actor(Role.CLINICIAN, username=f"mixed-{n}")
        append = audit._append_here if n % 2 else audit._append_in_database
        for i in range(rounds):
            with scratch_db.factory() as s, s.begin():
                for j in range(1 + i % 2):
                    audit.record(s, actor, action=f"m{n}-{i}-{j}", resource_type="Thing")
                append(s.connection(), audit.take_pending(s))

    run_at_once(threads_n, writer)

    expected = threads_n * sum(1 + i % 2 for i in range(rounds))
    with scratch_db.factory() as s:
        seqs = list(s.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)))
        report = audit.verify(s)
    assert seqs == list(range(1, expected + 1))
    assert report.ok, report.problems


@pytest.mark.postgres
def test_a_session_that_read_the_head_earlier_still_appends_after_others(
    scratch_db: ScratchDatabase, clinician: Actor
) -> None:
    """E.g. the checkpoint job or GET /api/audit/verify: they read the chain head, then
    append their own event, while other transactions append in between."""
    with unit_of_work(scratch_db.factory) as reader:
        seen = reader.get(AuditChainHead, audit.HEAD_ID)
        assert seen is not None and seen.last_seq == 0
        with unit_of_work(scratch_db.factory) as other:
            audit.record(other, clinician, action="meanwhile", resource_type="Thing")
        audit.record(reader, clinician, action="after-reading-head", resource_type="Thing")

    with scratch_db.factory() as s:
        rows = list(s.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
        report = audit.verify(s)
    assert [(r.seq, r.action) for r in rows] == [(1, "meanwhile"), (2, "after-reading-head")]
    assert report.ok, report.problems


# --- the auditors' API -------------------------------------------------------------------


def test_search_filters_by_patient_action_and_outcome_and_is_itself_audited(
    client: TestClient,
    auth_headers: Callable[[Actor], dict[str, str]],
    session_factory: Factory,
    clinician: Actor,
    auditor: Actor,
) -> None:
    p1, p2 = uuid.uuid4(), uuid.uuid4()
    denied = audit.Outcome.DENIED
    write_events(session_factory, clinician, 3, patient_id=p1)
    write_events(session_factory, clinician, 2, patient_id=p1, outcome=denied)
    write_events(session_factory, clinician, 4, patient_id=p2)
    headers = auth_headers(auditor) | {"X-Request-Id": "req-audit-search-1"}

    resp = client.get("/api/audit/events", params={"patient_id": str(p1)}, headers=headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body) == 5 and resp.headers["X-Total-Count"] == "5"
    assert {e["patient_id"] for e in body} == {str(p1)}
    assert [e["seq"] for e in body] == sorted((e["seq"] for e in body), reverse=True)

    resp = client.get(
        "/api/audit/events",
        params={"patient_id": str(p1), "outcome": "denied"},
        headers=auth_headers(auditor),
    )
    assert [e["outcome"] for e in resp.json()] == ["denied", "denied"]

    resp = client.get(
        "/api/audit/events",
        params={"patient_id": str(p2), "action": "test-1"},
        headers=auth_headers(auditor),
    )
    assert [(e["patient_id"], e["action"]) for e in resp.json()] == [(str(p2), "test-1")]

    with session_factory() as s:
        searches = list(
            s.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.action == "search",
                    AuditEvent.resource_type == "AuditEvent",
                    AuditEvent.actor_user_id == auditor.user_id,
                )
                .order_by(AuditEvent.seq)
            )
        )
    assert len(searches) == 3
    first = searches[0]
    assert first.patient_id == p1
    assert first.actor_role == "auditor"
    assert first.request_id == "req-audit-search-1"
    assert json.loads(first.detail) == {"returned": 5}
    assert searches[2].patient_id == p2


@pytest.mark.parametrize(
    ("role", "status"), [(None, 401), (Role.CLINICIAN, 403), (Role.ALLIANCE_ADMIN, 403)]
)
def test_only_auditors_read_the_trail(
    client: TestClient,
    auth_headers: Callable[[Actor], dict[str, str]],
    make_actor: Callable[..., Actor],
    role: Role | None,
    status: int,
) -> None:
    headers = {} if role is None else auth_headers(make_actor(role))
    for path in ("/api/audit/events", "/api/audit/verify"):
        resp = client.get(path, headers=headers)
        assert resp.status_code == status, (path, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")


def test_verify_endpoint_reports_ok_and_is_audited(
    client: TestClient,
    auth_headers: Callable[[Actor], dict[str, str]],
    session_factory: Factory,
    clinician: Actor,
    auditor: Actor,
) -> None:
    seqs = write_events(session_factory, clinician, 3)

    resp = client.get("/api/audit/verify", headers=auth_headers(auditor))

    assert resp.status_code == 200, resp.text
    assert resp.json() == {"ok": True, "rows_checked": seqs[-1], "problems": []}
    with session_factory() as s:
        row = s.scalar(select(AuditEvent).where(AuditEvent.seq == seqs[-1] + 1))
    assert row is not None
    assert (row.action, row.actor_username) == ("verify", "the-auditor")
    assert json.loads(row.detail) == {"ok": True, "rows": seqs[-1]}
    assert verify(session_factory).ok


def test_verify_endpoint_reports_the_edited_row(
    client: TestClient,
    auth_headers: Callable[[Actor], dict[str, str]],
    connection: Connection,
    session_factory: Factory,
    clinician: Actor,
    auditor: Actor,
) -> None:
    seqs = write_events(session_factory, clinician, 3)
    disable_audit_trigger(connection, "audit_events_no_update")
    connection.execute(
        text("UPDATE audit_events SET outcome = 'success', action = 'x' WHERE seq = :s"),
        {"s": seqs[0]},
    )

    resp = client.get("/api/audit/verify", headers=auth_headers(auditor))

    assert resp.status_code == 200
    body = resp.json()
    assert body["ok"] is False
    assert [(p["seq"], p["kind"]) for p in body["problems"]] == [(seqs[0], "edited")]
