"""Shared fixtures for the audit, access and jobs integration tests.

``scratch_db`` is a throw-away database of the suite's dialect, migrated with
``alembic upgrade head``, for tests that must commit for real: the CLI and the
worker open their own connections, and concurrent threads need separate
transactions. On PostgreSQL each one is cloned from a migrated template database
and dropped afterwards; on SQLite it is a copy of a migrated file.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from medalliance.access import policy
from medalliance.access.policy import CareRelationship, PatientFacts
from medalliance.config import get_settings
from medalliance.db import migrate
from medalliance.db.engine import build_engine, build_session_factory
from medalliance.kernel.actor import Actor

SCRATCH_PREFIX = "ma_scratch_"


@dataclass(frozen=True, slots=True)
class ScratchDatabase:
    url: str
    engine: Engine
    factory: sessionmaker[Session]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name


def _admin_engine(database_url: str) -> Engine:
    return create_engine(
        make_url(database_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )


def _url_for(database_url: str, name: str) -> str:
    return make_url(database_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _scratch_template(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated, never-used database that every scratch database is copied from."""
    if database_url.startswith("postgresql"):
        name = f"{SCRATCH_PREFIX}tpl_{uuid.uuid4().hex[:12]}"
        admin = _admin_engine(database_url)
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            migrate.upgrade(_url_for(database_url, name))
            yield name
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    elif database_url.startswith("sqlite"):
        path = tmp_path_factory.mktemp("scratch-template") / "template.db"
        migrate.upgrade(f"sqlite:///{path}")
        yield str(path)
    else:  # pragma: no cover - only the two supported dialects
        pytest.skip(f"no scratch databases for {database_url}")


@pytest.fixture
def scratch_db(
    _scratch_template: str, database_url: str, tmp_path: Path
) -> Iterator[ScratchDatabase]:
    """A migrated database of its own, committed to for real, removed afterwards."""
    if database_url.startswith("postgresql"):
        name = f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}"
        admin = _admin_engine(database_url)
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{_scratch_template}"'))
        url = _url_for(database_url, name)
        engine = build_engine(url)
        try:
            yield ScratchDatabase(url=url, engine=engine, factory=build_session_factory(engine))
        finally:
            engine.dispose()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    else:
        path = tmp_path / "scratch.db"
        shutil.copyfile(_scratch_template, path)
        url = f"sqlite:///{path}"
        engine = build_engine(url)
        try:
            yield ScratchDatabase(url=url, engine=engine, factory=build_session_factory(engine))
        finally:
            engine.dispose()


CliRun = Callable[..., Result]


@pytest.fixture
def run_cli() -> CliRun:
    """Invoke ``medalliance.cli.app`` in-process against a given database URL."""
    from medalliance.cli import app

    runner = CliRunner()

    def run(database_url: str, *args: str) -> Result:
        get_settings.cache_clear()  # the CLI reads MEDALLIANCE_DATABASE_URL through it
        try:
            return runner.invoke(app, list(args), env={"MEDALLIANCE_DATABASE_URL": database_url})
        finally:
            get_settings.cache_clear()

    return run


@pytest.fixture
def policy_patients() -> Iterator[dict[uuid.UUID, PatientFacts]]:
    """A test patient-facts provider: the patients the test puts in this dict exist.

    The previously registered provider (the patients domain's, if loaded) is restored.
    """
    known: dict[uuid.UUID, PatientFacts] = {}
    saved = list(policy._facts_provider)  # no public "unregister"; restore exactly
    policy.register_patient_facts(lambda _session, patient_id: known.get(patient_id))
    try:
        yield known
    finally:
        policy._facts_provider[:] = saved


@pytest.fixture
def care_links() -> Iterator[set[tuple[uuid.UUID, uuid.UUID]]]:
    """A test care-relationship provider: (user_id, patient_id) pairs linked by a referral."""
    links: set[tuple[uuid.UUID, uuid.UUID]] = set()
    kind = f"test-referral-{uuid.uuid4().hex[:8]}"

    def provider(_session: Session, actor: Actor, patient_id: uuid.UUID) -> CareRelationship | None:
        if actor.user_id is not None and (actor.user_id, patient_id) in links:
            return CareRelationship(kind="referral", reference="REF-TEST-1")
        return None

    policy.register_care_relationship(kind, provider)
    try:
        yield links
    finally:
        policy.unregister_care_relationship(kind)


def disable_audit_trigger(connection: Connection, trigger: str) -> None:
    """What an attacker with owner rights does first: switch off an append-only trigger.

    On PostgreSQL the ALTER TABLE is transactional (and locks the table until the
    transaction ends); on SQLite the DROP TRIGGER is too. Either way it is undone
    when the test's outer transaction rolls back.
    """
    assert trigger in ("audit_events_no_update", "audit_events_no_delete")
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"ALTER TABLE audit_events DISABLE TRIGGER {trigger}")
    else:
        connection.exec_driver_sql(f"DROP TRIGGER {trigger}")
