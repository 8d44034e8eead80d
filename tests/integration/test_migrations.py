"""Migrations are reversible and match the models."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url

from medalliance import wiring
from medalliance.db import migrate
from medalliance.db.base import Base
from medalliance.db.engine import build_engine


@pytest.fixture
def scratch_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of the suite's dialect, dropped afterwards."""
    if not database_url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    name = f"medalliance_scratch_{uuid.uuid4().hex[:8]}"
    admin = create_engine(
        make_url(database_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade_round_trip(scratch_url: str) -> None:
    migrate.upgrade(scratch_url)
    engine = build_engine(scratch_url)
    try:
        assert {"institutions", "users", "audit_events", "jobs"} <= _tables(engine)
        migrate.downgrade(scratch_url, "base")
        assert _tables(engine) == set()
        migrate.upgrade(scratch_url)
        assert _tables(engine) == set(Base.metadata.tables)
    finally:
        engine.dispose()


def test_models_and_migrations_do_not_drift(engine: Engine) -> None:
    """`alembic upgrade head` builds exactly the schema the models describe."""
    wiring.load_all()
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []
