"""Record, flush, query and verify the audit trail.

``record`` only buffers an event on the session; ``flush_pending`` writes the buffer
as the last step of the use case's transaction (see ``db.uow``), holding the chain
head's row lock for as short a time as possible. Events marked ``survives_rollback``
(denials, failed logins) are written in a fresh transaction when the use case fails.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Connection, Table, func, insert, select, text, update
from sqlalchemy.orm import Session

from medalliance.audit.chain import (
    GENESIS_HASH,
    HASHED_FIELDS,
    canonical_detail,
    row_hash,
    unsequenced_body,
)
from medalliance.audit.ddl import APPEND_FUNCTION
from medalliance.audit.models import AuditChainHead, AuditEvent
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.ids import new_id
from medalliance.kernel.pagination import PageRequest, PageResult

PENDING_KEY = "medalliance.audit.pending"
HEAD_ID = 1


class Outcome(StrEnum):
    SUCCESS = "success"
    DENIED = "denied"
    FAILURE = "failure"


@dataclass(slots=True)
class AuditDraft:
    action: str
    outcome: Outcome
    actor: Actor
    resource_type: str
    resource_id: str | None
    patient_id: uuid.UUID | None
    purpose_of_use: str | None
    reason: str | None
    detail: dict[str, Any]
    survives_rollback: bool
    recorded_at: datetime = field(default_factory=utcnow)
    event_id: uuid.UUID = field(default_factory=new_id)


def record(
    session: Session,
    actor: Actor,
    *,
    action: str,
    resource_type: str,
    resource_id: str | uuid.UUID | None = None,
    patient_id: uuid.UUID | None = None,
    outcome: Outcome = Outcome.SUCCESS,
    purpose_of_use: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    survives_rollback: bool = False,
) -> AuditDraft:
    """Buffer an audit event; it is written in this session's transaction."""
    draft = AuditDraft(
        action=action,
        outcome=outcome,
        actor=actor,
        resource_type=resource_type,
        resource_id=None if resource_id is None else str(resource_id),
        patient_id=patient_id,
        purpose_of_use=purpose_of_use,
        reason=reason,
        detail=detail or {},
        survives_rollback=survives_rollback,
    )
    pending: list[AuditDraft] = session.info.setdefault(PENDING_KEY, [])
    pending.append(draft)
    return draft


def take_pending(session: Session) -> list[AuditDraft]:
    pending: list[AuditDraft] = session.info.pop(PENDING_KEY, [])
    return pending


def pending_mark(session: Session) -> int:
    """Where the session's buffer ends now; pass it to ``discard_since`` later."""
    return len(session.info.get(PENDING_KEY, []))


def discard_since(session: Session, mark: int, *, keep_denials: bool = True) -> int:
    """Drop the events buffered after ``mark`` (see ``pending_mark``), except those that
    must survive a rollback (denials): for work undone by a rolled-back savepoint, whose
    events must not reach the trail. Returns how many were dropped.

    ``keep_denials=False`` drops those too: only for an attempt that is then redone
    step by step, which audits each denial again."""
    pending: list[AuditDraft] = session.info.setdefault(PENDING_KEY, [])
    kept = [d for d in pending[mark:] if d.survives_rollback and keep_denials]
    dropped = len(pending) - mark - len(kept)
    del pending[mark:]
    pending.extend(kept)
    return dropped


_EVENTS = cast(Table, AuditEvent.__table__)
_HEAD = cast(Table, AuditChainHead.__table__)
# Built once: SQLAlchemy's compiled cache then serves every flush.
_READ_HEAD = (
    select(_HEAD.c.last_seq, _HEAD.c.last_hash).where(_HEAD.c.id == HEAD_ID).with_for_update()
)
_INSERT_EVENTS = insert(_EVENTS)
_UPDATE_HEAD = update(_HEAD).where(_HEAD.c.id == HEAD_ID)
_APPEND = text(f"SELECT {APPEND_FUNCTION}(CAST(:events AS jsonb))")


def _fields(draft: AuditDraft) -> dict[str, Any]:
    """The row's columns but ``seq``, ``prev_hash`` and ``hash`` (set when chained)."""
    actor = draft.actor
    return {
        "event_id": draft.event_id,
        "recorded_at": draft.recorded_at,
        "action": draft.action,
        "outcome": str(draft.outcome),
        "actor_user_id": actor.user_id,
        "actor_username": actor.username,
        "actor_role": None if actor.role is None else str(actor.role),
        "actor_institution_id": actor.institution_id,
        "resource_type": draft.resource_type,
        "resource_id": draft.resource_id,
        "patient_id": draft.patient_id,
        "purpose_of_use": draft.purpose_of_use,
        "reason": draft.reason,
        "request_id": actor.request_id,
        "client_address": actor.client_address,
        "detail": canonical_detail(draft.detail),
    }


def flush_pending(session: Session, drafts: list[AuditDraft] | None = None) -> int:
    """Append buffered events to the chain inside the session's current transaction.

    On PostgreSQL one statement whatever the number of events: the append function
    (``audit.ddl``) locks the head, numbers, hashes and inserts them. Elsewhere three:
    lock and read the head, one INSERT of all the events (hashes chained in Python),
    update the head. Either way the head's row lock serialises writers until commit.
    """
    if drafts is None:
        drafts = take_pending(session)
    if not drafts:
        return 0
    # Pending ORM changes go first: the head lock is then held as briefly as possible.
    session.flush()
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        _append_in_database(connection, drafts)
    else:
        _append_here(connection, drafts)
    # The head may sit in this session's identity map (verify, tests): refresh it there.
    cached = session.identity_map.get(session.identity_key(AuditChainHead, (HEAD_ID,)))
    if cached is not None:
        session.expire(cached)
    return len(drafts)


def _append_in_database(connection: Connection, drafts: list[AuditDraft]) -> None:
    """One round trip: the rows travel as JSON with their unsequenced bodies; the
    function assigns seq and hashes under the head's lock (measured on PostgreSQL with
    one event per call, it took the order check from 11 round trips to 9)."""
    events = []
    for draft in drafts:
        fields = _fields(draft)
        fields["unsequenced"] = unsequenced_body(fields)
        events.append(fields)
    connection.execute(_APPEND, {"events": json.dumps(events, default=str)})


def _append_here(connection: Connection, drafts: list[AuditDraft]) -> None:
    head = connection.execute(_READ_HEAD).one_or_none()
    if head is None:
        seq, prev = 0, GENESIS_HASH
    else:
        seq, prev = head.last_seq, head.last_hash
    rows: list[dict[str, Any]] = []
    for draft in drafts:
        seq += 1
        fields = _fields(draft)
        fields["seq"] = seq
        digest = row_hash(prev, fields)
        fields["prev_hash"], fields["hash"] = prev, digest
        rows.append(fields)
        prev = digest
    # One Core INSERT, compiled once per process, executed with the whole list of
    # parameter sets (SQLite loops in C).
    connection.execute(_INSERT_EVENTS, rows)
    now = utcnow()
    if head is None:
        connection.execute(
            insert(_HEAD).values(id=HEAD_ID, last_seq=seq, last_hash=prev, updated_at=now)
        )
    else:
        connection.execute(_UPDATE_HEAD.values(last_seq=seq, last_hash=prev, updated_at=now))


@dataclass(frozen=True, slots=True)
class AuditFilter:
    patient_id: uuid.UUID | None = None
    actor_user_id: uuid.UUID | None = None
    action: str | None = None
    outcome: str | None = None
    resource_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def search(session: Session, flt: AuditFilter, page: PageRequest) -> PageResult[AuditEvent]:
    query = select(AuditEvent)
    if flt.patient_id is not None:
        query = query.where(AuditEvent.patient_id == flt.patient_id)
    if flt.actor_user_id is not None:
        query = query.where(AuditEvent.actor_user_id == flt.actor_user_id)
    if flt.action is not None:
        query = query.where(AuditEvent.action == flt.action)
    if flt.outcome is not None:
        query = query.where(AuditEvent.outcome == flt.outcome)
    if flt.resource_type is not None:
        query = query.where(AuditEvent.resource_type == flt.resource_type)
    if flt.since is not None:
        query = query.where(AuditEvent.recorded_at >= flt.since)
    if flt.until is not None:
        query = query.where(AuditEvent.recorded_at < flt.until)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(
        query.order_by(AuditEvent.seq.desc()).limit(page.limit).offset(page.offset)
    ).all()
    return PageResult(items=list(items), total=total)


@dataclass(frozen=True, slots=True)
class ChainProblem:
    seq: int | None
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    rows_checked: int
    problems: list[ChainProblem]

    @property
    def ok(self) -> bool:
        return not self.problems


def _iter_rows(session: Session, batch: int = 5000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify(session: Session) -> VerifyReport:
    """Walk the chain; name every edited, inserted or deleted row."""
    problems: list[ChainProblem] = []
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    for row in _iter_rows(session):
        checked += 1
        if row.seq != expected_seq:
            problems.append(
                ChainProblem(
                    row.seq,
                    "missing",
                    f"rows {expected_seq}..{row.seq - 1} are missing (deleted) "
                    f"before row {row.seq}",
                )
            )
        elif row.prev_hash != prev_hash:
            problems.append(
                ChainProblem(
                    row.seq, "broken-link", f"row {row.seq} does not follow row {row.seq - 1}"
                )
            )
        fields = {name: getattr(row, name) for name in HASHED_FIELDS}
        if row_hash(row.prev_hash, fields) != row.hash:
            problems.append(
                ChainProblem(
                    row.seq,
                    "edited",
                    f"row {row.seq} (event {row.event_id}, {row.action} by {row.actor_username}) "
                    "was changed after it was written: its content no longer matches its hash",
                )
            )
        expected_seq, prev_hash = row.seq + 1, row.hash
    head = session.get(AuditChainHead, HEAD_ID)
    last_seq = expected_seq - 1
    if head is None:
        if checked:
            problems.append(ChainProblem(None, "head-missing", "the chain head row is missing"))
    elif head.last_seq != last_seq or head.last_hash != prev_hash:
        problems.append(
            ChainProblem(
                head.last_seq,
                "truncated",
                f"the chain head records row {head.last_seq} as the last, "
                f"but the table ends at row {last_seq}: newest rows were deleted or altered",
            )
        )
    return VerifyReport(rows_checked=checked, problems=problems)
