"""The alert rules as pure functions: a reading and what we know about the patient in,
findings out. Each finding carries the criterion it met and that criterion's source
(a per-patient override names the clinician's reason and the default it replaced)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from medalliance.domains.monitoring.catalogue import MeasurementType
from medalliance.domains.monitoring.thresholds import (
    COPD_SPO2_FLOOR,
    COPD_SPO2_SOURCE,
    DEFAULTS,
    AlertRule,
    RuleDefinition,
    Severity,
)


@dataclass(frozen=True, slots=True)
class Override:
    threshold: float
    second_threshold: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class PatientContext:
    """What the rules need to know about the patient besides the reading."""

    overrides: dict[AlertRule, Override] = field(default_factory=dict)
    has_copd: bool = False
    has_heart_failure: bool = False
    # (measured_at, kg) of earlier weights, for the weight-gain window
    weights: Sequence[tuple[datetime, float]] = ()


@dataclass(frozen=True, slots=True)
class ReadingFacts:
    measurement: MeasurementType
    measured_at: datetime
    value: float
    diastolic: float | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    rule: AlertRule
    severity: Severity
    title: str
    message: str
    criterion: str
    source: str
    value: float


@dataclass(frozen=True, slots=True)
class Threshold:
    primary: float
    second: float | None
    criterion: str
    source: str


def threshold(rule: AlertRule, ctx: PatientContext) -> Threshold:
    """The threshold in force for this patient: the override, else the default."""
    default: RuleDefinition = DEFAULTS[rule]
    override = ctx.overrides.get(rule)
    if override is not None:
        second = override.second_threshold
        if second is None:
            second = default.second_threshold
        return Threshold(
            override.threshold,
            second,
            f"per-patient threshold {override.threshold:g}"
            + ("" if second is None else f"/{second:g}"),
            f"clinician override ({override.reason}); default: {default.criterion} — "
            f"{default.source}",
        )
    if rule is AlertRule.LOW_SPO2 and ctx.has_copd:
        return Threshold(COPD_SPO2_FLOOR, None, "SpO2 < 88 % (COPD target floor)", COPD_SPO2_SOURCE)
    return Threshold(default.threshold, default.second_threshold, default.criterion, default.source)


def _finding(rule: AlertRule, t: Threshold, message: str, value: float) -> Finding:
    d = DEFAULTS[rule]
    return Finding(rule, d.severity, d.title, message, t.criterion, t.source, value)


def _blood_pressure(r: ReadingFacts, ctx: PatientContext) -> list[Finding]:
    sbp, dbp = r.value, r.diastolic if r.diastolic is not None else 0.0
    shown = f"{sbp:g}/{dbp:g} mmHg"
    crisis = threshold(AlertRule.HYPERTENSIVE_CRISIS, ctx)
    if sbp > crisis.primary or (crisis.second is not None and dbp > crisis.second):
        return [_finding(AlertRule.HYPERTENSIVE_CRISIS, crisis, f"BP {shown}", sbp)]
    urgent = threshold(AlertRule.HYPERTENSIVE_URGENCY, ctx)
    if sbp >= urgent.primary or (urgent.second is not None and dbp >= urgent.second):
        return [_finding(AlertRule.HYPERTENSIVE_URGENCY, urgent, f"BP {shown}", sbp)]
    return []


def _glucose(r: ReadingFacts, ctx: PatientContext) -> list[Finding]:
    shown = f"glucose {r.value:g} mmol/L"
    level2 = threshold(AlertRule.HYPOGLYCAEMIA_LEVEL_2, ctx)
    if r.value < level2.primary:
        return [_finding(AlertRule.HYPOGLYCAEMIA_LEVEL_2, level2, shown, r.value)]
    level1 = threshold(AlertRule.HYPOGLYCAEMIA_LEVEL_1, ctx)
    if r.value < level1.primary:
        return [_finding(AlertRule.HYPOGLYCAEMIA_LEVEL_1, level1, shown, r.value)]
    high = threshold(AlertRule.HYPERGLYCAEMIA_EMERGENCY, ctx)
    if r.value >= high.primary:
        return [_finding(AlertRule.HYPERGLYCAEMIA_EMERGENCY, high, shown, r.value)]
    return []


def _spo2(r: ReadingFacts, ctx: PatientContext) -> list[Finding]:
    floor = threshold(AlertRule.LOW_SPO2, ctx)
    if r.value < floor.primary:
        return [_finding(AlertRule.LOW_SPO2, floor, f"SpO2 {r.value:g} %", r.value)]
    return []


def _weight(r: ReadingFacts, ctx: PatientContext) -> list[Finding]:
    """Gain over the lowest weight of the preceding window (heart failure only, or
    when a clinician set the rule for this patient)."""
    if not ctx.has_heart_failure and AlertRule.HF_WEIGHT_GAIN not in ctx.overrides:
        return []
    t = threshold(AlertRule.HF_WEIGHT_GAIN, ctx)
    window = timedelta(days=t.second if t.second is not None else 3)
    earlier = [kg for at, kg in ctx.weights if r.measured_at - window <= at < r.measured_at]
    if not earlier:
        return []
    gain = r.value - min(earlier)
    if gain > t.primary:
        message = f"weight {r.value:g} kg, +{gain:.1f} kg within {window.days} days"
        return [_finding(AlertRule.HF_WEIGHT_GAIN, t, message, r.value)]
    return []


_BY_TYPE = {
    MeasurementType.BLOOD_PRESSURE: _blood_pressure,
    MeasurementType.GLUCOSE: _glucose,
    MeasurementType.SPO2: _spo2,
    MeasurementType.WEIGHT: _weight,
}

# Which readings need which context, so the evaluator loads only what is needed.
NEEDS_CONDITIONS = frozenset({MeasurementType.SPO2, MeasurementType.WEIGHT})
NEEDS_WEIGHTS = frozenset({MeasurementType.WEIGHT})


def evaluate(reading: ReadingFacts, ctx: PatientContext) -> list[Finding]:
    rule = _BY_TYPE.get(reading.measurement)
    return [] if rule is None else rule(reading, ctx)


def silent_for(
    last_reading_at: datetime | None, since: datetime, now: datetime, ctx: PatientContext
) -> Finding | None:
    """No reading for N days (counted from the last reading, or from the assignment)."""
    t = threshold(AlertRule.NO_READINGS, ctx)
    last = last_reading_at or since
    if now - last < timedelta(days=t.primary):
        return None
    days = (now - last).days
    message = f"no reading for {days} days" + (
        "" if last_reading_at else " (none since the device was assigned)"
    )
    return _finding(AlertRule.NO_READINGS, t, message, float(days))
