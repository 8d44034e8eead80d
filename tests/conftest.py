"""Test fixtures: a real database migrated with ``alembic upgrade head`` once per run,
and a SAVEPOINT per test that is rolled back afterwards.

The database comes from ``MEDALLIANCE_TEST_DATABASE_URL``. Without it the suite uses
PostgreSQL on 127.0.0.1:5432 when it answers and SQLite otherwise; in CI
(``CI=true``) an unreachable PostgreSQL is an error, never a silent fallback.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from medalliance import wiring
from medalliance.access import tokens
from medalliance.access.permissions import permissions_for
from medalliance.app import create_app
from medalliance.config import Settings
from medalliance.db import migrate
from medalliance.db.engine import build_engine, normalise_url
from medalliance.domains.alliance.models import Institution
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role
from tests.factories import bind_session

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/medalliance_test"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_SECRET = "test-secret-key-that-is-long-enough-for-hs256-signing"


def _postgres_reachable(url: str) -> bool:
    admin = make_url(url).set(database="postgres")
    try:
        engine = create_engine(admin, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


def _create_postgres_database(url: str) -> str:
    """A fresh database named after the given one plus a random suffix, so several
    runs on one server (engineers, CI) never clobber each other; dropped afterwards."""
    parsed = make_url(url)
    base = parsed.database or "medalliance_test"
    assert base.replace("_", "").isalnum(), "unsafe test database name"
    name = f"{base}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return parsed.set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(url: str) -> None:
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    admin.dispose()


def _choose_url(tmp_dir: Path) -> str:
    url = os.environ.get("MEDALLIANCE_TEST_DATABASE_URL")
    if url:
        return normalise_url(url)
    if _postgres_reachable(DEFAULT_PG_URL):
        return DEFAULT_PG_URL
    if IN_CI:
        raise RuntimeError("CI=true but PostgreSQL at 127.0.0.1:5432 is not reachable")
    return f"sqlite:///{tmp_dir / 'medalliance-test.db'}"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        url = _choose_url(Path(tmp))
        if url.startswith("postgresql"):
            if not _postgres_reachable(url):
                if IN_CI:
                    raise RuntimeError(f"CI=true but PostgreSQL is not reachable at {url}")
                pytest.skip("PostgreSQL not reachable")
            url = _create_postgres_database(url)
        else:
            path = make_url(url).database
            if path and path != ":memory:":
                for suffix in ("", "-wal", "-shm"):  # start from an empty file every run
                    Path(path + suffix).unlink(missing_ok=True)
        wiring.load_all()
        try:
            migrate.upgrade(url)
            yield url
        finally:
            if url.startswith("postgresql"):
                _drop_postgres_database(url)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = build_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def dialect(engine: Engine) -> str:
    return engine.dialect.name


@pytest.fixture(autouse=True)
def _skip_postgres_only(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("postgres") is None:
        return
    name = request.getfixturevalue("dialect")
    if name != "postgresql":
        pytest.skip("PostgreSQL-only test")


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(autouse=True)
def _skip_browser_without_chromium(request: pytest.FixtureRequest) -> None:
    """Browser tests need Debian's chromium (`.ci/run` installs it): skipped without it
    on a workstation, an error in CI."""
    if request.node.get_closest_marker("browser") is None or CHROMIUM.exists():
        return
    if IN_CI:
        pytest.fail(f"CI=true but {CHROMIUM} is missing (apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """One outer transaction per test, rolled back at the end."""
    conn = engine.connect()
    outer = conn.begin()
    try:
        yield conn
    finally:
        if outer.is_active:
            outer.rollback()
        conn.close()


@pytest.fixture
def session_factory(connection: Connection) -> sessionmaker[Session]:
    """Sessions whose commits only release a SAVEPOINT inside the test's transaction."""
    return sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as sess:
        bind_session(sess)
        yield sess
        bind_session(None)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, secret_key=TEST_SECRET, demo_mode=False)


@pytest.fixture
def app(settings: Settings, session_factory: sessionmaker[Session], session: Session) -> FastAPI:
    return create_app(settings, session_factory)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def actor_for(
    role: Role,
    *,
    institution: Institution | None = None,
    user_id: uuid.UUID | None = None,
    username: str | None = None,
) -> Actor:
    """The one helper that builds an actor for service-level tests."""
    return Actor(
        user_id=user_id or uuid.uuid4(),
        username=username or f"test-{role}",
        role=role,
        institution_id=None if institution is None else institution.id,
        permissions=permissions_for(role),
    )


@pytest.fixture
def make_actor() -> Callable[..., Actor]:
    return actor_for


def bearer_for(actor: Actor, secret: str = TEST_SECRET) -> dict[str, str]:
    """Authorization header for an actor, without a password round-trip."""
    assert actor.user_id is not None and actor.role is not None
    token = tokens.encode_access_token(
        tokens.AccessClaims(
            user_id=actor.user_id,
            username=actor.username,
            role=actor.role,
            institution_id=actor.institution_id,
            practitioner_id=actor.practitioner_id,
            expires_at=utcnow() + timedelta(minutes=15),
        ),
        secret=secret,
        issued_at=utcnow(),
        ttl=timedelta(minutes=15),
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth_headers() -> Callable[[Actor], dict[str, str]]:
    return bearer_for
