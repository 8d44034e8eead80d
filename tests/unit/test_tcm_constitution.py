"""The constitution scoring against the formula, thresholds and worked examples of
ZYYXH/T157-2009 as given in reference/constitution.md."""

from __future__ import annotations

import pytest

from medalliance.domains.tcm import constitution as c


def test_the_questionnaire_has_the_standards_item_counts() -> None:
    q = c.questionnaire()
    counts = {s.code: len(s.items) for s in q.scales}
    assert counts == {"A": 8, "B": 8, "C": 7, "D": 8, "E": 8, "F": 7, "G": 7, "H": 7, "I": 7}
    assert len(q.required("female")) == len(q.required("male")) == 60  # "60 条目"
    reverse = [i for i, r in q.scales[0].items if r]
    assert len(reverse) == 6  # 2 positive + 6 reverse-scored 平和质 items
    # Shared items are asked once: 疲乏 is 气虚 1 and 平和 2.
    assert q.scales[0].items[1] == ("B1", True)


@pytest.mark.parametrize(
    ("raw", "count", "expected"), [(8, 8, 0.0), (40, 8, 100.0), (24, 8, 50.0), (6, 6, 0.0)]
)
def test_transformed_score_formula(raw: int, count: int, expected: float) -> None:
    assert c.transformed(raw, count) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("score", "result"), [(40, "yes"), (39.9, "tendency"), (30, "tendency"), (29.9, "no")]
)
def test_biased_thresholds(score: float, result: str) -> None:
    assert c.biased_result(score) == result


def test_worked_example_1_qi_deficiency_overrides_balanced() -> None:
    # 平和 75, 气虚 56, others < 40 → not 平和质 → 气虚质.
    assert c.balanced_result(75, [56, 10, 10]) == "no"
    assert c.biased_result(56) == "yes"


def test_worked_example_2_basically_balanced_with_tendency() -> None:
    # 平和 75, 痰湿 32, all others < 30 → 基本是平和质，有痰湿质倾向.
    assert c.balanced_result(75, [32, 10, 20]) == "basically_yes"
    assert c.biased_result(32) == "tendency"
    assert c.balanced_result(75, [29, 10]) == "yes"
    assert c.balanced_result(59, [0, 0]) == "no"


def test_assess_reverse_scores_and_uses_six_damp_heat_items() -> None:
    q = c.questionnaire()
    answers = dict.fromkeys(q.required("male"), 3)
    result = c.assess(answers, "male")
    # All 3s: every scale (reverse or not) scores (3n - n) / 4n = 50.
    assert set(result.scores.values()) == {50.0}
    assert result.results["A"] == "no" and result.results["F"] == "yes"
    assert c.missing_items(answers, "male") == []
    del answers["F7"]
    assert c.missing_items(answers, "male") == ["F7"]
    assert c.missing_items({}, "unknown")[-2:] == ["F6", "F7"]
