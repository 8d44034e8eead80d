"""Monitoring tables: gateways, devices and their assignment to patients, readings,
dead letters, per-patient threshold overrides, and alerts.

Readings and alerts belong to the patient's source record at the monitoring
institution (like the longitudinal record), so the access policy and the timeline
treat them entry by entry.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from medalliance.db.base import Base, IdMixin, TimestampMixin
from medalliance.db.types import str_enum
from medalliance.domains.monitoring.catalogue import DeviceType, GlucoseContext, MeasurementType
from medalliance.domains.monitoring.thresholds import AlertRule, Severity


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


ACTIVE_ALERT_STATUSES = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED, AlertStatus.ESCALATED)
ACTIVE_SQL = "status IN ('open', 'acknowledged', 'escalated')"


class DeviceGateway(IdMixin, TimestampMixin, Base):
    """A phone app or hub that forwards device readings. It signs in with its own
    account (role device_gateway); ``code`` is its name in MQTT topics."""

    __tablename__ = "device_gateways"

    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Device(IdMixin, TimestampMixin, Base):
    """A device of the institution. Either connected (registered with its gateway, it
    sends readings) or recorded (known from another system: an implant, a wheelchair,
    a home meter; no gateway, no readings), with what the record says about it."""

    __tablename__ = "devices"
    __table_args__ = (
        # A connected device is found by its serial (gateways send it): unique among
        # them. Recorded ones may repeat one: two members record the same implant.
        Index(
            "uq_devices_serial",
            "serial",
            unique=True,
            postgresql_where=text("gateway_id IS NOT NULL"),
            sqlite_where=text("gateway_id IS NOT NULL"),
        ),
    )

    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"), index=True)
    # None: a recorded device, not connected through a gateway
    gateway_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("device_gateways.id"), index=True
    )
    device_type: Mapped[DeviceType] = mapped_column(str_enum(DeviceType, "device_type"))
    model: Mapped[str | None] = mapped_column(String(100))
    serial: Mapped[str | None] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Recorded devices: FHIR Device.status as given (active | inactive | entered-in-error
    # | unknown); connected ones answer from ``active``.
    status: Mapped[str | None] = mapped_column(String(20))
    name: Mapped[str | None] = mapped_column(String(200))  # deviceName
    udi_di: Mapped[str | None] = mapped_column(String(100), index=True)  # UDI device identifier
    udi_carrier: Mapped[str | None] = mapped_column(String(500))  # UDI human-readable form
    lot_number: Mapped[str | None] = mapped_column(String(100))
    manufactured_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]


class DeviceAssignment(IdMixin, TimestampMixin, Base):
    """The patient a device measures, for a period [start, end)."""

    __tablename__ = "device_assignments"
    __table_args__ = (Index("ix_device_assignments_device_start", "device_id", "start"),)

    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id"))
    patient_record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("patient_records.id"), index=True
    )
    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"), index=True)
    start: Mapped[datetime]
    end: Mapped[datetime | None]
    # The clinician who gets the alerts (defaults to whoever assigned the device).
    responsible_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    assigned_by: Mapped[uuid.UUID | None]


class Reading(IdMixin, Base):
    """One measurement. Idempotent on (device, type, measured_at): a retried batch or
    a redelivered MQTT message stores nothing twice."""

    __tablename__ = "readings"
    __table_args__ = (
        UniqueConstraint("device_id", "measurement", "measured_at"),
        Index("ix_readings_record_measured", "patient_record_id", "measured_at"),
    )

    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id"))
    measurement: Mapped[MeasurementType] = mapped_column(
        str_enum(MeasurementType, "measurement_type")
    )
    measured_at: Mapped[datetime]
    patient_record_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient_records.id"))
    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"))
    gateway_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("device_gateways.id"))
    loinc: Mapped[str] = mapped_column(String(16))
    unit: Mapped[str] = mapped_column(String(16))  # UCUM
    value: Mapped[float] = mapped_column(Float)  # systolic for blood pressure
    diastolic: Mapped[float | None] = mapped_column(Float)  # blood pressure only
    glucose_context: Mapped[GlucoseContext | None] = mapped_column(
        str_enum(GlucoseContext, "glucose_context")
    )
    period_start: Mapped[datetime | None]  # the counting interval of steps
    received_at: Mapped[datetime]


class DeadLetter(IdMixin, Base):
    """A payload or reading that could not be stored, with the reason; kept so that
    nothing a gateway sent is dropped silently."""

    __tablename__ = "monitoring_dead_letters"

    transport: Mapped[str] = mapped_column(String(16))  # mqtt | http
    topic: Mapped[str | None] = mapped_column(String(300))
    gateway_code: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(index=True)


class ThresholdOverride(IdMixin, TimestampMixin, Base):
    """A clinician's per-patient threshold for one rule (WORKFLOWS.md §4.3: the care
    plan's goal wins over the default)."""

    __tablename__ = "monitoring_threshold_overrides"
    __table_args__ = (UniqueConstraint("patient_record_id", "rule"),)

    patient_record_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient_records.id"))
    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"))
    rule: Mapped[AlertRule] = mapped_column(str_enum(AlertRule, "alert_rule"))
    threshold: Mapped[float] = mapped_column(Float)
    second_threshold: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    set_by: Mapped[uuid.UUID | None]


class Alert(IdMixin, TimestampMixin, Base):
    __tablename__ = "monitoring_alerts"
    __table_args__ = (
        Index("ix_monitoring_alerts_institution_status", "institution_id", "status"),
        Index("ix_monitoring_alerts_record_rule", "patient_record_id", "rule"),
        # One active alert per patient and rule, even when two transactions race.
        Index(
            "uq_monitoring_alerts_active_rule",
            "patient_record_id",
            "rule",
            unique=True,
            postgresql_where=text(ACTIVE_SQL),
            sqlite_where=text(ACTIVE_SQL),
        ),
    )

    patient_record_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient_records.id"))
    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"))
    rule: Mapped[AlertRule] = mapped_column(str_enum(AlertRule, "alert_rule"))
    severity: Mapped[Severity] = mapped_column(str_enum(Severity, "alert_severity"))
    status: Mapped[AlertStatus] = mapped_column(str_enum(AlertStatus, "alert_status"))
    title: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    criterion: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)  # where the threshold comes from
    reading_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("readings.id"))
    value: Mapped[float | None] = mapped_column(Float)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    raised_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[uuid.UUID | None]
    escalated_at: Mapped[datetime | None]
    escalated_by: Mapped[uuid.UUID | None]
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[uuid.UUID | None]
    note: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
