"""The `medalliance` command line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from medalliance.access.models import User
from medalliance.cli import app
from medalliance.db.engine import build_engine, build_session_factory
from medalliance.domains.alliance.models import Bed, Institution, Practitioner

runner = CliRunner()

COMMANDS = [
    [],
    ["serve"],
    ["demo"],
    ["db"],
    ["db", "upgrade"],
    ["users"],
    ["users", "create"],
    ["audit"],
    ["audit", "verify"],
    ["worker"],
    ["mpi"],
    ["mpi", "link-files"],
    ["mpi", "train"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_serve_refuses_the_default_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDALLIANCE_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.delenv("MEDALLIANCE_SECRET_KEY", raising=False)
    monkeypatch.delenv("MEDALLIANCE_DEMO_MODE", raising=False)
    from medalliance.config import get_settings

    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["serve", "--port", "0"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "MEDALLIANCE_SECRET_KEY" in result.output


@pytest.fixture
def demo_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    monkeypatch.setenv("MEDALLIANCE_DATABASE_URL", url)
    from medalliance.config import get_settings

    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def _count(url: str, model: type) -> int:
    engine = build_engine(url)
    try:
        with build_session_factory(engine)() as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        engine.dispose()


def test_demo_seed_only_is_deterministic_and_idempotent(demo_db: str) -> None:
    first = runner.invoke(app, ["demo", "--seed-only", "--patients", "40"])
    assert first.exit_code == 0, first.output
    assert "admin" in first.output and "medalliance-demo" in first.output
    counts = {m: _count(demo_db, m) for m in (Institution, Practitioner, Bed, User)}
    assert counts[Institution] == 13  # 1 lead, 4 district hospitals, 8 community centres
    assert 35 <= counts[Practitioner] <= 50
    assert counts[User] >= 9

    second = runner.invoke(app, ["demo", "--seed-only", "--patients", "40"])
    assert second.exit_code == 0, second.output
    assert "nothing to add" in second.output
    assert {m: _count(demo_db, m) for m in counts} == counts

    verify = runner.invoke(app, ["audit", "verify"])
    assert verify.exit_code == 0, verify.output


def test_demo_has_an_account_for_every_role(demo_db: str) -> None:
    from medalliance.kernel.roles import Role

    assert runner.invoke(app, ["demo", "--seed-only", "--patients", "40"]).exit_code == 0
    engine = build_engine(demo_db)
    try:
        with build_session_factory(engine)() as session:
            roles = set(session.scalars(select(User.role)).all())
    finally:
        engine.dispose()
    assert roles == set(Role)


def test_users_create_and_duplicate(demo_db: str) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(app, ["demo", "--seed-only", "--patients", "40"]).exit_code == 0
    args = [
        "users",
        "create",
        "--username",
        "dr.li",
        "--password",
        "a-long-password",
        "--role",
        "clinician",
        "--institution",
        "QH-LEAD",
    ]
    created = runner.invoke(app, args)
    assert created.exit_code == 0, created.output
    again = runner.invoke(app, args)
    assert again.exit_code == 1
    assert "taken" in again.output
    weak = runner.invoke(
        app,
        [
            "users",
            "create",
            "--username",
            "x.y",
            "--password",
            "short",
            "--role",
            "nurse",
            "--institution",
            "QH-LEAD",
        ],
    )
    assert weak.exit_code == 2
    assert "password" in weak.output
    unknown = runner.invoke(
        app,
        [
            "users",
            "create",
            "--username",
            "x.z",
            "--password",
            "a-long-password",
            "--role",
            "nurse",
            "--institution",
            "NOPE",
        ],
    )
    assert unknown.exit_code == 1
    assert "NOPE" in unknown.output
