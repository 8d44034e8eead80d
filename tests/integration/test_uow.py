"""The unit of work: data and audit rows commit together or not at all; events marked
``survives_rollback`` are written in a fresh transaction when the use case fails."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from medalliance.audit import service as audit
from medalliance.audit.chain import GENESIS_HASH
from medalliance.audit.models import AuditChainHead, AuditEvent
from medalliance.db.uow import commit, unit_of_work
from medalliance.domains.alliance.models import Alliance
from medalliance.kernel.actor import Actor
from medalliance.kernel.roles import Role
from tests.factories.alliance import AllianceFactory

Factory = sessionmaker[Session]


class UseCaseFailed(Exception):
    pass


def head(factory: Factory) -> tuple[int, str]:
    with factory() as s:
        row = s.get(AuditChainHead, audit.HEAD_ID)
        assert row is not None, "the migration creates the chain head"
        return row.last_seq, row.last_hash


def events_after(factory: Factory, seq: int) -> list[AuditEvent]:
    with factory() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.seq > seq).order_by("seq")))


def alliance_exists(factory: Factory, code: str) -> bool:
    with factory() as s:
        return s.scalar(select(Alliance.id).where(Alliance.code == code)) is not None


def run(factory: Factory, use_case: Callable[[Session], None]) -> None:
    with unit_of_work(factory) as s:
        use_case(s)


@pytest.fixture
def actor(make_actor: Callable[..., Actor]) -> Actor:
    return make_actor(Role.CLINICIAN, username="uow-tester")


def test_data_and_audit_events_commit_together(session_factory: Factory, actor: Actor) -> None:
    seq0, hash0 = head(session_factory)

    with unit_of_work(session_factory) as s:
        s.add(AllianceFactory.build(code="UOW-OK"))
        audit.record(s, actor, action="create", resource_type="Alliance", resource_id="UOW-OK")
        audit.record(s, actor, action="read", resource_type="Alliance", resource_id="UOW-OK")
        # Buffered, not yet written: nothing reaches the table before the commit.
        assert s.scalar(select(AuditEvent).where(AuditEvent.seq > seq0)) is None

    assert alliance_exists(session_factory, "UOW-OK")
    rows = events_after(session_factory, seq0)
    assert [r.seq for r in rows] == [seq0 + 1, seq0 + 2]
    assert [r.action for r in rows] == ["create", "read"]
    assert rows[0].prev_hash == hash0
    assert rows[1].prev_hash == rows[0].hash
    assert all(r.actor_username == "uow-tester" and r.outcome == "success" for r in rows)
    assert head(session_factory) == (seq0 + 2, rows[1].hash)


def test_failure_rolls_back_data_and_ordinary_events(
    session_factory: Factory, actor: Actor
) -> None:
    before = head(session_factory)

    def use_case(s: Session) -> None:
        s.add(AllianceFactory.build(code="UOW-FAIL"))
        s.flush()
        audit.record(s, actor, action="create", resource_type="Alliance")
        raise UseCaseFailed

    with pytest.raises(UseCaseFailed):
        run(session_factory, use_case)

    assert not alliance_exists(session_factory, "UOW-FAIL")
    assert events_after(session_factory, before[0]) == []
    assert head(session_factory) == before


def test_survivors_are_written_after_a_rollback_without_a_gap(
    session_factory: Factory, actor: Actor
) -> None:
    seq0, hash0 = head(session_factory)

    def use_case(s: Session) -> None:
        s.add(AllianceFactory.build(code="UOW-SURV"))
        audit.record(s, actor, action="read", resource_type="Patient")
        audit.record(
            s,
            actor,
            action="read",
            resource_type="Patient",
            outcome=audit.Outcome.DENIED,
            reason="no consent",
            survives_rollback=True,
        )
        raise UseCaseFailed

    with pytest.raises(UseCaseFailed):
        run(session_factory, use_case)

    assert not alliance_exists(session_factory, "UOW-SURV")
    rows = events_after(session_factory, seq0)
    assert len(rows) == 1
    (denied,) = rows
    assert (denied.seq, denied.outcome, denied.reason) == (seq0 + 1, "denied", "no consent")
    assert denied.prev_hash == hash0
    with session_factory() as s:
        assert audit.verify(s).ok


def test_audit_rows_flushed_in_a_failed_commit_are_rolled_back_with_it(
    session_factory: Factory, actor: Actor
) -> None:
    """The commit fails after the chain rows were inserted: they go with the transaction,
    and the survivors are still written afterwards."""
    seq0, _ = head(session_factory)

    def refuse(_session: Session) -> None:
        raise UseCaseFailed("commit refused")

    def use_case(s: Session) -> None:
        s.add(AllianceFactory.build(code="UOW-COMMIT-FAIL"))
        audit.record(s, actor, action="create", resource_type="Alliance")
        audit.record(
            s,
            actor,
            action="login",
            resource_type="User",
            outcome=audit.Outcome.FAILURE,
            survives_rollback=True,
        )
        event.listen(s, "before_commit", refuse, once=True)

    with pytest.raises(UseCaseFailed):
        run(session_factory, use_case)

    assert not alliance_exists(session_factory, "UOW-COMMIT-FAIL")
    rows = events_after(session_factory, seq0)
    assert [(r.seq, r.action, r.outcome) for r in rows] == [(seq0 + 1, "login", "failure")]
    with session_factory() as s:
        assert audit.verify(s).ok


def test_survivors_are_written_when_the_final_flush_fails(
    session_factory: Factory, actor: Actor, session: Session
) -> None:
    AllianceFactory(code="UOW-DUP")
    seq0, _ = head(session_factory)

    def use_case(s: Session) -> None:
        s.add(AllianceFactory.build(code="UOW-DUP"))  # flushed only at commit: duplicate
        audit.record(
            s,
            actor,
            action="write",
            resource_type="Patient",
            outcome=audit.Outcome.DENIED,
            survives_rollback=True,
        )

    with pytest.raises(IntegrityError):
        run(session_factory, use_case)

    rows = events_after(session_factory, seq0)
    assert [(r.seq, r.outcome) for r in rows] == [(seq0 + 1, "denied")]


def test_helper_commit_mid_use_case_keeps_what_was_committed(
    session_factory: Factory, actor: Actor
) -> None:
    """Routers such as the login call ``commit`` themselves before raising."""
    seq0, _ = head(session_factory)

    def use_case(s: Session) -> None:
        audit.record(s, actor, action="login", resource_type="User")
        commit(s)
        audit.record(s, actor, action="after", resource_type="User")
        raise UseCaseFailed

    with pytest.raises(UseCaseFailed):
        run(session_factory, use_case)

    assert [r.action for r in events_after(session_factory, seq0)] == ["login"]


def test_seq_stays_contiguous_across_units_of_work(session_factory: Factory, actor: Actor) -> None:
    seq0, _ = head(session_factory)
    for n in (1, 3, 2):
        with unit_of_work(session_factory) as s:
            for i in range(n):
                audit.record(s, actor, action=f"a{n}-{i}", resource_type="Thing")

    def lost(s: Session) -> None:
        audit.record(s, actor, action="lost", resource_type="Thing")
        raise UseCaseFailed

    with pytest.raises(UseCaseFailed):
        run(session_factory, lost)
    with unit_of_work(session_factory) as s:
        audit.record(s, actor, action="last", resource_type="Thing")

    rows = events_after(session_factory, seq0)
    assert [r.seq for r in rows] == list(range(seq0 + 1, seq0 + 8))
    assert "lost" not in {r.action for r in rows}
    with session_factory() as s:
        report = audit.verify(s)
    assert report.ok, report.problems
    assert report.rows_checked == seq0 + 7


def test_an_empty_unit_of_work_leaves_the_chain_alone(session_factory: Factory) -> None:
    before = head(session_factory)
    with unit_of_work(session_factory):
        pass
    assert head(session_factory) == before
    assert before[0] > 0 or before[1] == GENESIS_HASH
