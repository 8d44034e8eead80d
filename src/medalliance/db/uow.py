"""One transaction per use case.

The unit of work owns the session. On success it appends the buffered audit events
to the chain and commits; on failure it rolls back and then writes the events that
must outlive the failure (denied access, failed logins) in a transaction of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker

from medalliance.audit import service as audit_service


def commit(session: Session) -> None:
    drafts = audit_service.take_pending(session)
    try:
        audit_service.flush_pending(session, drafts)
        session.commit()
    except BaseException:
        # The commit itself failed (a flush error, a refused COMMIT): put the events
        # back so that the rollback path still writes the ones that must survive.
        session.info[audit_service.PENDING_KEY] = drafts + audit_service.take_pending(session)
        raise


def rollback_keeping_survivors(session: Session, factory: sessionmaker[Session]) -> None:
    survivors = [d for d in audit_service.take_pending(session) if d.survives_rollback]
    session.rollback()
    if not survivors:
        return
    with factory() as fresh:
        audit_service.flush_pending(fresh, survivors)
        fresh.commit()


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    session = factory()
    try:
        yield session
        commit(session)
    except BaseException:
        rollback_keeping_survivors(session, factory)
        raise
    finally:
        session.close()
