"""Alert thresholds and their sources, copied from ../shared/reference/care/WORKFLOWS.md
§4.3 (the source keys [S..] are that report's §8; the URLs are repeated here so the
package carries its own provenance). Nothing here is invented: a rule without a source
in the reference is not a rule. The one number that is site policy, not clinical
(how many days without a reading count as "silent"), says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AlertRule(StrEnum):
    HYPERTENSIVE_CRISIS = "hypertensive_crisis"
    HYPERTENSIVE_URGENCY = "hypertensive_urgency"
    HYPOGLYCAEMIA_LEVEL_2 = "hypoglycaemia_level_2"
    HYPOGLYCAEMIA_LEVEL_1 = "hypoglycaemia_level_1"
    HYPERGLYCAEMIA_EMERGENCY = "hyperglycaemia_emergency"
    LOW_SPO2 = "low_spo2"
    HF_WEIGHT_GAIN = "hf_weight_gain"
    NO_READINGS = "no_readings"


class Severity(StrEnum):
    """Ordered most urgent first (``RANK``)."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"


RANK = {Severity.CRITICAL: 0, Severity.HIGH: 1, Severity.MEDIUM: 2}

S42 = (
    "[S42] Hypertension follow-up classification (national basic public health service) — "
    "https://www.miaoshou.net/article/oJL9pnRQQYGkaXg6.html"
)
S43 = "[S43] Type 2 diabetes follow-up specification — https://m.wenke99.com/p-13798564.html"
S45 = (
    "[S45] ADA hypoglycaemia classification — "
    "http://care.diabetesjournals.org/highwire/markup/51411/expansion"
)
S47 = (
    "[S47] ACC/AHA 2017 blood pressure categories incl. hypertensive crisis — "
    "http://incrementalhealthcare.com/hypertension-screening/"
)
S49 = (
    "[S49] ESC Heart Failure Association, heartfailurematters.org — "
    "https://www.heartfailurematters.org/en_GB/Understanding-heart-failure/Weight-gain"
)
S50 = "[S50] BTS oxygen guideline — https://bmjopenrespres.bmj.com/content/4/1/e000170"
S51 = (
    "[S51] Cooper 2020, remote patient monitoring for COPD exacerbations — "
    "https://www.dovepress.com/remote-patient-monitoring-for-the-detection-of-copd-"
    "exacerbations-peer-reviewed-fulltext-article-COPD"
)


@dataclass(frozen=True, slots=True)
class RuleDefinition:
    rule: AlertRule
    severity: Severity
    title: str
    threshold: float  # the primary cut-off (systolic, glucose, SpO2, kg, days)
    second_threshold: float | None  # diastolic for BP rules; window days for weight gain
    criterion: str  # human-readable, with the comparison
    source: str
    overridable: bool = True


DEFAULTS: dict[AlertRule, RuleDefinition] = {
    d.rule: d
    for d in (
        RuleDefinition(
            AlertRule.HYPERTENSIVE_CRISIS,
            Severity.CRITICAL,
            "Hypertensive crisis",
            180,
            120,
            "SBP > 180 and/or DBP > 120 mmHg (emergency if organ damage)",
            S47,
        ),
        RuleDefinition(
            AlertRule.HYPERTENSIVE_URGENCY,
            Severity.HIGH,
            "BP at the urgent-referral level",
            180,
            110,
            "SBP ≥ 180 and/or DBP ≥ 110 mmHg: urgent referral after initial handling",
            f"{S42}; {S43}",
        ),
        RuleDefinition(
            AlertRule.HYPOGLYCAEMIA_LEVEL_2,
            Severity.CRITICAL,
            "Hypoglycaemia level 2",
            3.0,
            None,
            "glucose < 3.0 mmol/L (54 mg/dL)",
            S45,
        ),
        RuleDefinition(
            AlertRule.HYPOGLYCAEMIA_LEVEL_1,
            Severity.HIGH,
            "Hypoglycaemia level 1",
            3.9,
            None,
            "glucose < 3.9 mmol/L (70 mg/dL) and ≥ 3.0",
            S45,
        ),
        RuleDefinition(
            AlertRule.HYPERGLYCAEMIA_EMERGENCY,
            Severity.HIGH,
            "Glucose at the diabetes emergency level",
            16.7,
            None,
            "glucose ≥ 16.7 mmol/L (public-health diabetes emergency criterion)",
            S43,
        ),
        RuleDefinition(
            AlertRule.LOW_SPO2,
            Severity.HIGH,
            "Low oxygen saturation",
            90,
            None,
            "SpO2 < 90 %",
            S51,
        ),
        RuleDefinition(
            AlertRule.HF_WEIGHT_GAIN,
            Severity.MEDIUM,
            "Heart-failure weight gain",
            2.0,
            3,
            "weight gain > 2 kg within 3 days: contact the team / adjust the diuretic",
            S49,
        ),
        RuleDefinition(
            AlertRule.NO_READINGS,
            Severity.MEDIUM,
            "No readings",
            3,
            None,
            "no reading from the patient's devices for 3 days",
            "site policy (not a clinical threshold): WORKFLOWS.md §4.3 asks for "
            "'N days' window rules without fixing N; set it per patient",
        ),
    )
}

# COPD: a target of 88–92 % for patients at risk of hypercapnic respiratory failure [S50],
# so the low-SpO2 floor for them is 88 %.
COPD_SPO2_FLOOR = 88.0
COPD_SPO2_SOURCE = f"{S50} (target 88–92 % in COPD)"
# ICD-10 chapters that tell the rules about the patient (matched as code prefixes).
COPD_ICD10_PREFIXES = ("J44",)
HEART_FAILURE_ICD10_PREFIXES = ("I50",)
