"""factory_boy factories, one module per domain, bound to the test's session."""

from __future__ import annotations

from sqlalchemy.orm import Session

_current: list[Session | None] = [None]


def bind_session(session: Session | None) -> None:
    _current[0] = session


def current_session() -> Session:
    session = _current[0]
    if session is None:
        raise RuntimeError("factories need the `session` fixture")
    return session
