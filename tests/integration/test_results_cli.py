"""`medalliance hl7 import` and `medalliance results seed-catalogue`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from medalliance.cli import app
from medalliance.db.engine import build_engine, build_session_factory
from medalliance.domains.results.models import Hl7Message, Result
from tests.factories.results import obx, oru

runner = CliRunner()


@pytest.fixture
def demo_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    monkeypatch.setenv("MEDALLIANCE_DATABASE_URL", url)
    from medalliance.config import get_settings

    get_settings.cache_clear()
    seeded = runner.invoke(app, ["demo", "--seed-only", "--patients", "0"])
    assert seeded.exit_code == 0, seeded.output
    yield url
    get_settings.cache_clear()


def _counts(url: str) -> tuple[int, int]:
    engine = build_engine(url)
    try:
        with build_session_factory(engine)() as session:
            return (
                int(session.scalar(select(func.count()).select_from(Hl7Message)) or 0),
                int(session.scalar(select(func.count()).select_from(Result)) or 0),
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize("command", [["hl7"], ["hl7", "import"], ["results"]])
def test_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_hl7_import_stores_acknowledges_duplicates_and_rejects(
    demo_db: str, tmp_path: Path
) -> None:
    assert "0 item(s) added" in runner.invoke(app, ["results", "seed-catalogue"]).output
    good = tmp_path / "good.hl7"
    good.write_text(oru("CLI-1", "QH-LEAD").replace("\r", "\n"), encoding="utf-8")
    bad = tmp_path / "bad.hl7"
    bad.write_text(
        oru("CLI-2", "QH-LEAD", observations=[obx(1, "14749-6", "5.0", "mg")]), encoding="utf-8"
    )
    first = runner.invoke(app, ["hl7", "import", str(good)])
    assert first.exit_code == 0, first.output
    assert "AA CLI-1 (1 result(s) stored)" in first.output
    assert _counts(demo_db) == (1, 1)
    again = runner.invoke(app, ["hl7", "import", str(good), str(bad)])
    assert again.exit_code == 1
    assert "duplicate, already stored" in again.output
    assert "AE OBX^1^6" in again.output
    assert _counts(demo_db) == (1, 1)
    foreign = runner.invoke(app, ["hl7", "import", "--account", "nobody", str(good)])
    assert foreign.exit_code == 1 and "no single active interface_gateway" in foreign.output
