"""``audit.discard_since``: events of work a savepoint undid leave the buffer; events
that must survive a rollback (denials) and those buffered before the mark stay."""

from __future__ import annotations

from sqlalchemy.orm import Session

from medalliance.audit import service as audit
from medalliance.kernel.actor import Actor
from medalliance.kernel.roles import Role

ACTOR = Actor(user_id=None, username="t", role=Role.CLINICIAN)


def buffer(session: Session, action: str, *, survives: bool = False) -> None:
    audit.record(session, ACTOR, action=action, resource_type="Thing", survives_rollback=survives)


def actions(session: Session) -> list[str]:
    return [d.action for d in session.info.get(audit.PENDING_KEY, [])]


def test_drops_what_came_after_the_mark_but_denials() -> None:
    session = Session()
    buffer(session, "before")
    mark = audit.pending_mark(session)
    buffer(session, "written")
    buffer(session, "denied", survives=True)
    buffer(session, "also-written")

    assert audit.discard_since(session, mark) == 2
    assert actions(session) == ["before", "denied"]


def test_a_mark_on_an_empty_buffer_and_nothing_after_it() -> None:
    session = Session()
    mark = audit.pending_mark(session)
    assert mark == 0
    assert audit.discard_since(session, mark) == 0
    assert actions(session) == []
    buffer(session, "later")
    assert actions(session) == ["later"]
