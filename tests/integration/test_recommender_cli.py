"""``medalliance tcm …``: recommend, recommend-batch and train-recommender."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medalliance.cli import app
from medalliance.domains.recommender import model as model_module
from medalliance.domains.recommender import service

runner = CliRunner()


def test_recommend_prints_ranked_herbs_and_reports_unknown_symptoms() -> None:
    result = runner.invoke(app, ["tcm", "recommend", "--symptoms", "咳嗽 发烧了", "-k", "4"])
    assert result.exit_code == 0, result.output
    expected = [
        s.herb for s in service.recommend(symptoms=["咳嗽"], k=4, safety=_none()).suggestions
    ]
    for rank, herb in enumerate(expected, start=1):
        assert f"{rank:>3}. {herb}\t" in result.stdout
    assert "发烧了" in result.stderr
    assert "Symptoms used: 咳嗽" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--symptoms", "  ", "-k", "5"], "at least one symptom"),
        (["--symptoms", "咳嗽", "-k", "0"], "between 1 and 50"),
        (["--symptoms", "咳嗽", "-k", "51"], "between 1 and 50"),
        (["--symptoms", "发烧了"], "发烧了"),
    ],
)
def test_recommend_refuses_bad_input(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["tcm", "recommend", *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_recommend_batch_keeps_one_line_per_case(tmp_path: Path) -> None:
    cases = tmp_path / "cases.txt"
    cases.write_text("\ufeff咳嗽 头痛\r\n\r\n发烧了\r\n腹痛\r\n", encoding="utf-8")  # BOM, CRLF
    out = tmp_path / "herbs.txt"
    result = runner.invoke(
        app, ["tcm", "recommend-batch", "--input", str(cases), "--k", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == 5  # four cases, newline-terminated
    for line, symptoms in ((lines[0], ["咳嗽", "头痛"]), (lines[3], ["腹痛"])):
        top = service.recommend(symptoms=symptoms, k=3, safety=_none()).suggestions
        assert line.split(" ") == [s.herb for s in top]
    assert lines[1] == "" and lines[2] == ""
    assert "line 2" in result.stderr and "line 3: None of the symptoms" in result.stderr
    assert "4 case(s), 2 without an answer" in result.stdout


def test_recommend_batch_refuses_a_bad_k_or_a_missing_file(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    missing = runner.invoke(
        app, ["tcm", "recommend-batch", "--input", str(tmp_path / "no.txt"), "--out", str(out)]
    )
    assert missing.exit_code == 2 and "Cannot read" in missing.stderr
    cases = tmp_path / "cases.txt"
    cases.write_text("咳嗽\n", encoding="utf-8")
    bad_k = runner.invoke(
        app, ["tcm", "recommend-batch", "--input", str(cases), "--k", "60", "--out", str(out)]
    )
    assert bad_k.exit_code == 2 and not out.exists()


@pytest.mark.slow
def test_train_recommender_reproduces_the_shipped_model(tmp_path: Path) -> None:
    result = runner.invoke(app, ["tcm", "train-recommender", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "| MLP ensemble + frequency blend | validation |" in result.stdout
    assert "Split (seed 20201): train 18335, validation 2291, test 2291." in result.stdout
    retrained = model_module.load(tmp_path / model_module.MODEL_FILE)
    shipped = model_module.load_shipped()
    assert retrained.blend == shipped.blend
    # The counts are exact; the networks are the same up to floating-point rounding,
    # which differs between CPUs (OpenBLAS picks its kernels by CPU), so bit equality
    # holds only on the machine that trained the shipped model.
    np.testing.assert_array_equal(retrained.conditional, shipped.conditional)
    np.testing.assert_array_equal(retrained.popularity, shipped.popularity)
    for name in ("w1", "w2"):
        mine, theirs = getattr(retrained, name).ravel(), getattr(shipped, name).ravel()
        assert np.corrcoef(mine, theirs)[0, 1] > 0.9999, name
    metadata = json.loads((tmp_path / model_module.METADATA_FILE).read_text(encoding="utf-8"))
    expected = model_module.shipped_metadata()["metrics"]
    assert metadata["metrics"].keys() == expected.keys()
    for method, parts in expected.items():
        for part, values in parts.items():
            for metric, value in values.items():
                got = metadata["metrics"][method][part][metric]
                assert got == pytest.approx(value, abs=1e-3), (method, part, metric)


def _none() -> service.SafetyChecker:
    from medalliance.domains.recommender.safety import NOT_CONNECTED

    return NOT_CONNECTED


@pytest.mark.parametrize(
    "command",
    [["tcm"], ["tcm", "recommend"], ["tcm", "recommend-batch"], ["tcm", "train-recommender"]],
)
def test_tcm_commands_have_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
