"""What a reading can be: measurement types, their LOINC codes and UCUM units, the
units a gateway may send, and the range a value must fall in to be a measurement at all.

Codes and units are copied from ../shared/reference/care/WORKFLOWS.md §4.4 (FHIR
vital-signs value set [S53]; LOINC codes checked there in public mapping code). Its
caveats are kept as ``code_note``:

* glucose in mmol/L: 14743-9 is what mmol/L meters commonly send, "but public code
  disagrees on its meaning — verify in LOINC"; we store it with that warning and do
  not claim it was verified;
* SpO2: 2708-6 alone means arterial, so home oximeters carry 59408-5 as well;
* steps: 55423-8, and Open mHealth requires an interval for a step count [S55].

The plausible ranges are NOT clinical thresholds: they only separate a measurement from
a device fault or a typing error (an SpO2 of 140 % is not a reading). Where the
reference gives a range we use it (blood pressure 50–500 mmHg, the national follow-up
form's validation [S41]); elsewhere the limit is physical (a saturation is at most
100 %, a count is never negative) or deliberately wide (site policy, tune per device).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class MeasurementType(StrEnum):
    BLOOD_PRESSURE = "blood_pressure"
    HEART_RATE = "heart_rate"
    GLUCOSE = "glucose"
    SPO2 = "spo2"
    WEIGHT = "weight"
    BODY_TEMPERATURE = "body_temperature"
    STEPS = "steps"


class GlucoseContext(StrEnum):
    FASTING = "fasting"
    POST_MEAL = "post_meal"
    RANDOM = "random"


class DeviceType(StrEnum):
    BP_MONITOR = "bp_monitor"
    GLUCOMETER = "glucometer"
    PULSE_OXIMETER = "pulse_oximeter"
    SCALE = "scale"
    THERMOMETER = "thermometer"
    HEART_RATE_MONITOR = "heart_rate_monitor"
    ACTIVITY_TRACKER = "activity_tracker"
    # A recorded device outside this catalogue (an implant, a wheelchair …): its coded
    # type is kept beside it (FHIR Device.type); it sends no readings.
    OTHER = "other"


# Glucose: 1 mmol/L = 18.016 mg/dL (molar mass of glucose 180.16 g/mol); a unit
# conversion, not a clinical figure.
GLUCOSE_MG_DL_PER_MMOL_L = 18.016


def _identity(value: float) -> float:
    return value


@dataclass(frozen=True, slots=True)
class Measurement:
    type: MeasurementType
    loinc: tuple[str, ...]  # first is the primary code
    unit: str  # UCUM, the unit we store
    display: str
    low: float  # plausible range of the stored value (inclusive)
    high: float
    # Other UCUM units a gateway may send, with the conversion to ``unit``.
    conversions: dict[str, Callable[[float], float]] = field(default_factory=dict)
    components: tuple[tuple[str, str], ...] = ()  # (name, LOINC) for panels
    code_note: str | None = None

    def accepts(self, unit: str) -> bool:
        return unit == self.unit or unit in self.conversions

    def to_stored_unit(self, value: float, unit: str) -> float:
        return value if unit == self.unit else self.conversions[unit](value)


MEASUREMENTS: dict[MeasurementType, Measurement] = {
    m.type: m
    for m in (
        Measurement(
            MeasurementType.BLOOD_PRESSURE,
            ("85354-9",),
            "mm[Hg]",
            "Blood pressure panel",
            50,
            500,  # the follow-up form validates 50–500 mmHg [S41]
            components=(("systolic", "8480-6"), ("diastolic", "8462-4")),
        ),
        Measurement(
            MeasurementType.HEART_RATE,
            ("8867-4",),
            "/min",
            "Heart rate",
            1,
            350,  # wide: beyond any recorded human heart rate
            code_note="Pulse from a BP cuff and from an oximeter both map to 8867-4 [S54].",
        ),
        Measurement(
            MeasurementType.GLUCOSE,
            ("14743-9",),
            "mmol/L",
            "Glucose, capillary blood, glucometer",
            0.1,
            100,  # wide: glucometers read roughly 0.6–33 mmol/L
            conversions={"mg/dL": lambda v: v / GLUCOSE_MG_DL_PER_MMOL_L},
            code_note=(
                "14743-9 is commonly used for mmol/L meters, but public code disagrees on its "
                "meaning; not verified in LOINC (WORKFLOWS.md §4.4). 41653-7 is the mg/dL code."
            ),
        ),
        Measurement(
            MeasurementType.SPO2,
            ("59408-5", "2708-6"),
            "%",
            "Oxygen saturation by pulse oximetry",
            0,
            100,  # a saturation cannot exceed 100 %
            code_note="2708-6 alone means arterial; 59408-5 marks pulse oximetry.",
        ),
        Measurement(
            MeasurementType.WEIGHT,
            ("29463-7",),
            "kg",
            "Body weight",
            0.5,
            500,
            conversions={"g": lambda v: v / 1000, "[lb_av]": lambda v: v * 0.45359237},
        ),
        Measurement(
            MeasurementType.BODY_TEMPERATURE,
            ("8310-5",),
            "Cel",
            "Body temperature",
            25,
            45,  # wide: outside it the thermometer, not the patient, is wrong
            conversions={"[degF]": lambda v: (v - 32) * 5 / 9},
        ),
        Measurement(
            MeasurementType.STEPS,
            ("55423-8",),
            "{steps}",
            "Number of steps (pedometer)",
            0,
            200_000,
            conversions={"{step}": _identity, "1": _identity},
            code_note="Open mHealth requires the counting interval (period_start) [S55].",
        ),
    )
}

# Which readings a device of each type may send.
DEVICE_MEASUREMENTS: dict[DeviceType, frozenset[MeasurementType]] = {
    DeviceType.BP_MONITOR: frozenset({MeasurementType.BLOOD_PRESSURE, MeasurementType.HEART_RATE}),
    DeviceType.GLUCOMETER: frozenset({MeasurementType.GLUCOSE}),
    DeviceType.PULSE_OXIMETER: frozenset({MeasurementType.SPO2, MeasurementType.HEART_RATE}),
    DeviceType.SCALE: frozenset({MeasurementType.WEIGHT}),
    DeviceType.THERMOMETER: frozenset({MeasurementType.BODY_TEMPERATURE}),
    DeviceType.HEART_RATE_MONITOR: frozenset({MeasurementType.HEART_RATE}),
    DeviceType.ACTIVITY_TRACKER: frozenset({MeasurementType.STEPS, MeasurementType.HEART_RATE}),
    DeviceType.OTHER: frozenset(),
}
