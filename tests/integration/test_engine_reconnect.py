"""The pool replaces connections the server closed (a restart, ``pg_terminate_backend``,
an idle timeout) before a request uses them, without a ping round trip per checkout."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from medalliance.db.engine import build_engine, normalise_url

pytestmark = pytest.mark.postgres

BACKEND_PID = text("SELECT pg_backend_pid()")


@pytest.fixture
def admin(database_url: str) -> Iterator[Engine]:
    engine = create_engine(
        make_url(database_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    yield engine
    engine.dispose()


def pooled_pids(engine: Engine, n: int) -> list[int]:
    """Check out n connections at once (so the pool holds n), note their backends."""
    connections = [engine.connect() for _ in range(n)]
    try:
        return [int(c.scalar(BACKEND_PID) or 0) for c in connections]
    finally:
        for c in connections:
            c.close()


def terminate(admin: Engine, pids: list[int]) -> None:
    """What a server restart does to each client: FATAL 57P01, then the socket closes."""
    with admin.connect() as conn:
        for pid in pids:
            # the timeout makes it wait until the backend has exited
            assert conn.scalar(text("SELECT pg_terminate_backend(:p, 5000)"), {"p": pid})
    time.sleep(0.05)  # let the FATAL message and the FIN reach the client sockets


def test_connections_the_server_closed_are_replaced_at_checkout(
    database_url: str, admin: Engine
) -> None:
    engine = build_engine(database_url)
    try:
        before = pooled_pids(engine, 3)
        terminate(admin, before)

        after = pooled_pids(engine, 3)  # would raise OperationalError if reused

        assert all(after) and not set(after) & set(before)
        assert engine.pool.checkedin() == 3  # nothing leaked, nothing left broken
    finally:
        engine.dispose()


def test_without_the_check_a_pooled_connection_fails_after_the_restart(
    database_url: str, admin: Engine
) -> None:
    """What the check prevents: a plain pool hands out the dead connection."""
    engine = create_engine(normalise_url(database_url), pool_size=1)
    try:
        (pid,) = pooled_pids(engine, 1)
        terminate(admin, [pid])
        with pytest.raises(OperationalError), engine.connect() as conn:
            conn.scalar(BACKEND_PID)
    finally:
        engine.dispose()


def test_a_live_pooled_connection_is_reused_as_is(database_url: str) -> None:
    engine = build_engine(database_url)
    try:
        (first,) = pooled_pids(engine, 1)
        (second,) = pooled_pids(engine, 1)
        assert first == second
    finally:
        engine.dispose()
