"""API shapes of remote monitoring. The reading payload is shared by HTTP and MQTT."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from medalliance.domains.monitoring.catalogue import DeviceType, GlucoseContext, MeasurementType
from medalliance.domains.monitoring.models import AlertStatus
from medalliance.domains.monitoring.thresholds import AlertRule, Severity

CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # safe as one MQTT topic level
MAX_BATCH = 1000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- the reading payload ----------------------------------------------------------------


class ReadingIn(_Strict):
    """One reading as a gateway sends it (over HTTP or MQTT)."""

    device: str = Field(min_length=1, max_length=100, description="The device's serial number")
    type: MeasurementType
    measured_at: AwareDatetime = Field(description="With a UTC offset")
    unit: str = Field(min_length=1, max_length=16, description="UCUM")
    value: float | None = Field(default=None, allow_inf_nan=False)
    systolic: float | None = Field(default=None, allow_inf_nan=False)
    diastolic: float | None = Field(default=None, allow_inf_nan=False)
    pulse: float | None = Field(
        default=None, allow_inf_nan=False, description="Blood pressure only; stored as heart rate"
    )
    context: GlucoseContext | None = Field(default=None, description="Glucose only")
    period_start: AwareDatetime | None = Field(
        default=None, description="Steps: start of the counting interval (required)"
    )

    @model_validator(mode="after")
    def _shape(self) -> ReadingIn:
        bp = self.type is MeasurementType.BLOOD_PRESSURE
        if bp and (self.systolic is None or self.diastolic is None):
            raise ValueError("blood_pressure needs systolic and diastolic")
        if bp and self.value is not None:
            raise ValueError("blood_pressure takes systolic/diastolic, not value")
        if not bp and self.value is None:
            raise ValueError(f"{self.type} needs a value")
        if not bp and (self.systolic, self.diastolic, self.pulse) != (None, None, None):
            raise ValueError("systolic/diastolic/pulse belong to blood_pressure only")
        if self.context is not None and self.type is not MeasurementType.GLUCOSE:
            raise ValueError("context belongs to glucose only")
        if self.type is MeasurementType.STEPS:
            if self.period_start is None:
                raise ValueError("steps need period_start (the counting interval)")
            if self.period_start >= self.measured_at:
                raise ValueError("period_start must be before measured_at")
        elif self.period_start is not None:
            raise ValueError("period_start belongs to steps only")
        return self


class ReadingBatch(BaseModel):
    """Items are checked one by one, so one bad reading does not reject the batch."""

    readings: list[Any] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="Readings shaped like ReadingIn; each is checked on its own",
    )


class ReadingResult(BaseModel):
    index: int
    status: Literal["stored", "duplicate", "rejected"]
    reading_id: uuid.UUID | None = None
    reason: str | None = None
    alerts: list[uuid.UUID] = Field(default_factory=list)


class BatchResult(BaseModel):
    gateway: str
    stored: int
    duplicate: int
    rejected: int
    results: list[ReadingResult]


class ReadingRead(_Read):
    id: uuid.UUID
    device_id: uuid.UUID
    measurement: MeasurementType
    measured_at: datetime
    loinc: str
    unit: str
    value: float
    diastolic: float | None
    glucose_context: GlucoseContext | None
    period_start: datetime | None
    institution_id: uuid.UUID


class DeadLetterRead(_Read):
    id: uuid.UUID
    transport: str
    topic: str | None
    gateway_code: str | None
    reason: str
    payload: str
    received_at: datetime


# --- gateways, devices, assignments -----------------------------------------------------


class GatewayCreate(_Strict):
    code: str = Field(pattern=CODE.pattern, description="Its name in MQTT topics")
    name: str = Field(min_length=1, max_length=200)
    username: str = Field(min_length=3, max_length=150, description="The gateway's own account")
    password: str = Field(min_length=12, max_length=200)
    institution_code: str | None = Field(
        default=None, description="Alliance administrators say which member; others get theirs"
    )


class GatewayRead(_Read):
    id: uuid.UUID
    code: str
    name: str
    institution_id: uuid.UUID
    user_id: uuid.UUID
    active: bool


class DeviceCreate(_Strict):
    gateway_id: uuid.UUID
    device_type: DeviceType
    model: str = Field(min_length=1, max_length=100)
    serial: str = Field(min_length=1, max_length=100)


class DeviceRead(_Read):
    id: uuid.UUID
    institution_id: uuid.UUID
    gateway_id: uuid.UUID | None  # None: recorded from another system, sends no readings
    device_type: DeviceType
    model: str | None
    serial: str | None
    active: bool
    status: str | None = None
    name: str | None = None
    udi_di: str | None = None
    lot_number: str | None = None
    manufactured_at: datetime | None = None
    expires_at: datetime | None = None


class DeviceRecord(_Strict):
    """A device known from another system (FHIR Device): no gateway, no readings."""

    device_type: DeviceType = DeviceType.OTHER
    status: str | None = Field(
        default=None, pattern=r"^(active|inactive|entered-in-error|unknown)$"
    )
    name: str | None = Field(default=None, max_length=200)
    model: str | None = Field(default=None, max_length=100)
    serial: str | None = Field(default=None, min_length=1, max_length=100)
    udi_di: str | None = Field(default=None, max_length=100)
    udi_carrier: str | None = Field(default=None, max_length=500)
    lot_number: str | None = Field(default=None, max_length=100)
    manufactured_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    patient_id: uuid.UUID | None = Field(
        default=None, description="The patient who has the device (assigned from now on)"
    )


class AssignmentCreate(_Strict):
    patient_id: uuid.UUID
    start: AwareDatetime
    end: AwareDatetime | None = None
    responsible_user_id: uuid.UUID | None = Field(
        default=None, description="Who gets the alerts; default: you"
    )

    @model_validator(mode="after")
    def _order(self) -> AssignmentCreate:
        if self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class AssignmentEnd(_Strict):
    end: AwareDatetime


class AssignmentRead(_Read):
    id: uuid.UUID
    device_id: uuid.UUID
    patient_record_id: uuid.UUID
    institution_id: uuid.UUID
    start: datetime
    end: datetime | None
    responsible_user_id: uuid.UUID | None


# --- thresholds and alerts --------------------------------------------------------------


class OverrideSet(_Strict):
    threshold: float = Field(gt=0, allow_inf_nan=False)
    second_threshold: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    reason: str = Field(min_length=3, max_length=2000)


class ThresholdRead(BaseModel):
    rule: AlertRule
    severity: Severity
    title: str
    default_threshold: float
    default_second_threshold: float | None
    default_criterion: str
    source: str
    override: OverrideRead | None = None


class OverrideRead(_Read):
    threshold: float
    second_threshold: float | None
    reason: str
    set_by: uuid.UUID | None
    updated_at: datetime


class AlertAction(_Strict):
    note: str | None = Field(default=None, max_length=2000)


class AlertRead(_Read):
    id: uuid.UUID
    patient_id: uuid.UUID | None = None
    patient_record_id: uuid.UUID
    institution_id: uuid.UUID
    rule: AlertRule
    severity: Severity
    status: AlertStatus
    title: str
    message: str
    criterion: str
    source: str
    reading_id: uuid.UUID | None
    value: float | None
    occurrences: int
    raised_at: datetime
    last_seen_at: datetime
    acknowledged_at: datetime | None
    escalated_at: datetime | None
    resolved_at: datetime | None
    note: str | None


# --- the monitoring desk ----------------------------------------------------------------


class LatestReading(BaseModel):
    measurement: MeasurementType
    measured_at: datetime
    value: float
    diastolic: float | None
    unit: str


class TrendPoint(BaseModel):
    day: str  # ISO date (UTC)
    mean: float
    mean_diastolic: float | None = None
    count: int


class DeskPatient(BaseModel):
    patient_id: uuid.UUID
    name: str
    open_alerts: int
    highest_severity: Severity | None
    alerts: list[AlertRead]
    latest: list[LatestReading]
    trends: dict[str, list[TrendPoint]]
    last_reading_at: datetime | None


ThresholdRead.model_rebuild()
