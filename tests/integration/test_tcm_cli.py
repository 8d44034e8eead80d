"""``medalliance tcm``: lookups and the safety check from the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from medalliance.cli import app

runner = CliRunner()


def test_tcm_herbs_by_initials() -> None:
    result = runner.invoke(app, ["tcm", "herbs", "dg"])
    assert result.exit_code == 0
    assert result.output.splitlines()[0].startswith("当归\tDanggui")


def test_tcm_check_blocks_with_exit_2_and_names_sources() -> None:
    result = runner.invoke(app, ["tcm", "check", "附子:9", "法半夏:9", "--json"])
    assert result.exit_code == 2
    findings = json.loads(result.output)
    assert [f["rule"] for f in findings] == ["eighteen_incompatible"]
    assert findings[0]["source"]


def test_tcm_check_clean_and_unknown() -> None:
    clean = runner.invoke(app, ["tcm", "check", "桂枝:9", "白芍:9"])
    assert clean.exit_code == 0 and "not been clinically reviewed" in clean.output
    unknown = runner.invoke(app, ["tcm", "check", "当规:9"])
    assert unknown.exit_code == 1 and "当归" in unknown.output
    bad = runner.invoke(app, ["tcm", "check", "当归:abc"])
    assert bad.exit_code == 1
    zero = runner.invoke(app, ["tcm", "check", "当归:0"])
    assert zero.exit_code == 1 and "dose_g" in zero.output
