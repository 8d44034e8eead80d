"""The alert rules, table-driven against WORKFLOWS.md §4.3 (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from medalliance.domains.monitoring.catalogue import MEASUREMENTS, MeasurementType
from medalliance.domains.monitoring.rules import (
    Override,
    PatientContext,
    ReadingFacts,
    evaluate,
    silent_for,
)
from medalliance.domains.monitoring.thresholds import DEFAULTS, AlertRule

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
BP, GLU, SPO2, WT = (
    MeasurementType.BLOOD_PRESSURE,
    MeasurementType.GLUCOSE,
    MeasurementType.SPO2,
    MeasurementType.WEIGHT,
)


def _rules(reading: ReadingFacts, ctx: PatientContext | None = None) -> list[AlertRule]:
    return [f.rule for f in evaluate(reading, ctx or PatientContext())]


@pytest.mark.parametrize(
    ("sbp", "dbp", "expected"),
    [
        (179, 109, []),
        (180, 80, [AlertRule.HYPERTENSIVE_URGENCY]),  # ≥ 180 [S42][S43]
        (150, 110, [AlertRule.HYPERTENSIVE_URGENCY]),  # ≥ 110
        (180, 120, [AlertRule.HYPERTENSIVE_URGENCY]),  # crisis needs > 180 / > 120
        (181, 80, [AlertRule.HYPERTENSIVE_CRISIS]),  # > 180 [S47]
        (160, 121, [AlertRule.HYPERTENSIVE_CRISIS]),  # > 120
    ],
)
def test_blood_pressure(sbp: float, dbp: float, expected: list[AlertRule]) -> None:
    assert _rules(ReadingFacts(BP, T0, sbp, dbp)) == expected


@pytest.mark.parametrize(
    ("mmol", "expected"),
    [
        (2.9, [AlertRule.HYPOGLYCAEMIA_LEVEL_2]),
        (3.0, [AlertRule.HYPOGLYCAEMIA_LEVEL_1]),  # < 3.9 and ≥ 3.0 [S45]
        (3.89, [AlertRule.HYPOGLYCAEMIA_LEVEL_1]),
        (3.9, []),
        (16.6, []),
        (16.7, [AlertRule.HYPERGLYCAEMIA_EMERGENCY]),  # ≥ 16.7 [S43]
    ],
)
def test_glucose(mmol: float, expected: list[AlertRule]) -> None:
    assert _rules(ReadingFacts(GLU, T0, mmol)) == expected


@pytest.mark.parametrize(
    ("value", "copd", "fires"),
    [
        (90, False, False),
        (89.9, False, True),
        (89, True, False),
        (88, True, False),
        (87, True, True),
    ],
)
def test_spo2_floor_is_88_for_copd(value: float, copd: bool, fires: bool) -> None:
    findings = evaluate(ReadingFacts(SPO2, T0, value), PatientContext(has_copd=copd))
    assert bool(findings) is fires
    if findings and copd:
        assert "[S50]" in findings[0].source


def test_an_override_wins_and_names_the_reason_and_the_default() -> None:
    ctx = PatientContext(overrides={AlertRule.LOW_SPO2: Override(92, None, "post-op target")})
    (finding,) = evaluate(ReadingFacts(SPO2, T0, 91), ctx)
    assert "post-op target" in finding.source and "[S51]" in finding.source
    ctx = PatientContext(
        overrides={AlertRule.HYPERTENSIVE_URGENCY: Override(170, None, "stroke history")}
    )
    # The override keeps the default diastolic cut-off when it gives none.
    assert _rules(ReadingFacts(BP, T0, 171, 80), ctx) == [AlertRule.HYPERTENSIVE_URGENCY]
    assert _rules(ReadingFacts(BP, T0, 150, 110), ctx) == [AlertRule.HYPERTENSIVE_URGENCY]


def _weights(*pairs: tuple[float, float]) -> list[tuple[datetime, float]]:
    return [(T0 - timedelta(days=d), kg) for d, kg in pairs]


@pytest.mark.parametrize(
    ("history", "now_kg", "fires"),
    [
        (_weights((2, 70.0)), 72.0, False),  # exactly 2 kg is not "> 2"
        (_weights((2, 70.0)), 72.1, True),
        (_weights((4, 70.0), (1, 71.5)), 72.1, False),  # the 70 kg is outside 3 days
        (_weights((3, 70.0)), 72.5, True),  # the window includes day 3
        ([], 90.0, False),
    ],
)
def test_heart_failure_weight_gain(
    history: list[tuple[datetime, float]], now_kg: float, fires: bool
) -> None:
    ctx = PatientContext(has_heart_failure=True, weights=history)
    assert bool(evaluate(ReadingFacts(WT, T0, now_kg), ctx)) is fires
    # Not a heart-failure patient, no rule set by a clinician: no weight alerts.
    assert evaluate(ReadingFacts(WT, T0, now_kg), PatientContext(weights=history)) == []


def test_no_readings_counts_from_the_last_reading_or_the_assignment() -> None:
    ctx = PatientContext()
    days = DEFAULTS[AlertRule.NO_READINGS].threshold
    assert silent_for(T0 - timedelta(days=days - 0.1), T0 - timedelta(days=30), T0, ctx) is None
    finding = silent_for(T0 - timedelta(days=days), T0 - timedelta(days=30), T0, ctx)
    assert finding is not None and "site policy" in finding.source
    assert silent_for(None, T0 - timedelta(days=1), T0, ctx) is None
    never = silent_for(None, T0 - timedelta(days=5), T0, ctx)
    assert never is not None and "none since" in never.message


def test_every_rule_and_code_has_a_source() -> None:
    for rule in DEFAULTS.values():
        assert (rule.source and "[S" in rule.source) or "site policy" in rule.source
    assert MEASUREMENTS[MeasurementType.SPO2].loinc == ("59408-5", "2708-6")
    assert "not verified" in (MEASUREMENTS[MeasurementType.GLUCOSE].code_note or "")
