"""The ingestion pipeline shared by HTTP and MQTT: check each reading on its own,
insert the good ones idempotently, evaluate the alert rules, audit per patient.

Idempotency is the database's: a unique constraint on (device, measurement,
measured_at) and ``INSERT … ON CONFLICT DO NOTHING RETURNING id`` (PostgreSQL and
SQLite both support it), so a retried batch or a redelivered MQTT message cannot store
a reading twice, even when two workers race. Nothing here commits: the caller's unit
of work does, and only then answers (HTTP) or acknowledges (MQTT).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from medalliance.audit import service as audit
from medalliance.db.upsert import InsertIgnoringConflicts
from medalliance.domains.monitoring import alerts
from medalliance.domains.monitoring.catalogue import (
    DEVICE_MEASUREMENTS,
    MEASUREMENTS,
    DeviceType,
    MeasurementType,
)
from medalliance.domains.monitoring.models import (
    Device,
    DeviceAssignment,
    DeviceGateway,
    Reading,
)
from medalliance.domains.monitoring.rules import ReadingFacts
from medalliance.domains.monitoring.schemas import ReadingIn
from medalliance.domains.patients.models import PatientRecord
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.ids import new_id
from medalliance.kernel.roles import Role

# Device clocks drift; a reading a few minutes "ahead" is clock skew, not the future.
MAX_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(slots=True)
class Outcome:
    index: int
    status: str  # stored | duplicate | rejected
    reason: str | None = None
    reading_id: uuid.UUID | None = None
    alerts: list[uuid.UUID] = field(default_factory=list)
    raw: Any = None


def gateway_actor(gateway: DeviceGateway, *, request_id: str | None = None) -> Actor:
    """The actor a gateway's writes are audited under (its own account)."""
    return Actor(
        user_id=gateway.user_id,
        username=f"gateway:{gateway.code}",
        role=Role.DEVICE_GATEWAY,
        institution_id=gateway.institution_id,
        request_id=request_id,
    )


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
    return "; ".join(parts)


def _check(reading: ReadingIn, device: _Device | None, now: datetime) -> str | None:
    if device is None:
        return f"unknown device {reading.device!r} for this gateway"
    if reading.type not in DEVICE_MEASUREMENTS[device.device_type]:
        return f"a {device.device_type} does not measure {reading.type}"
    spec = MEASUREMENTS[reading.type]
    if not spec.accepts(reading.unit):
        allowed = ", ".join([spec.unit, *spec.conversions])
        return f"unit {reading.unit!r} does not fit {reading.type} (use {allowed})"
    if reading.measured_at > now + MAX_CLOCK_SKEW:
        return f"measured_at {reading.measured_at.isoformat()} is in the future"
    values = (
        {"systolic": reading.systolic, "diastolic": reading.diastolic}
        if reading.type is MeasurementType.BLOOD_PRESSURE
        else {"value": reading.value}
    )
    for name, raw in values.items():
        assert raw is not None
        value = spec.to_stored_unit(raw, reading.unit)
        if not spec.low <= value <= spec.high:
            return (
                f"{name} {raw:g} {reading.unit} is not a possible {reading.type} "
                f"(accepted {spec.low:g}–{spec.high:g} {spec.unit})"
            )
    if reading.pulse is not None:
        hr = MEASUREMENTS[MeasurementType.HEART_RATE]
        if not hr.low <= reading.pulse <= hr.high:
            return f"pulse {reading.pulse:g} /min is not a possible heart rate"
    return None


def _assignment_at(assignments: Sequence[_Assignment], at: datetime) -> _Assignment | None:
    for a in assignments:
        if a.start <= at and (a.end is None or at < a.end):
            return a
    return None


def _rows_for(
    reading: ReadingIn,
    device: _Device,
    assignment: _Assignment,
    gateway: DeviceGateway,
    received_at: datetime,
) -> list[dict[str, Any]]:
    spec = MEASUREMENTS[reading.type]
    base = {
        "device_id": device.id,
        "measured_at": reading.measured_at,
        "patient_record_id": assignment.patient_record_id,
        "institution_id": assignment.institution_id,
        "gateway_id": gateway.id,
        "received_at": received_at,
        "diastolic": None,
        "glucose_context": None,
        "period_start": None,
    }
    if reading.type is MeasurementType.BLOOD_PRESSURE:
        assert reading.systolic is not None and reading.diastolic is not None
        rows = [
            base
            | {
                "id": new_id(),
                "measurement": reading.type,
                "loinc": spec.loinc[0],
                "unit": spec.unit,
                "value": reading.systolic,
                "diastolic": reading.diastolic,
            }
        ]
        if reading.pulse is not None:
            hr = MEASUREMENTS[MeasurementType.HEART_RATE]
            rows.append(
                base
                | {
                    "id": new_id(),
                    "measurement": MeasurementType.HEART_RATE,
                    "loinc": hr.loinc[0],
                    "unit": hr.unit,
                    "value": reading.pulse,
                }
            )
        return rows
    assert reading.value is not None
    return [
        base
        | {
            "id": new_id(),
            "measurement": reading.type,
            "loinc": spec.loinc[0],
            "unit": spec.unit,
            "value": round(spec.to_stored_unit(reading.value, reading.unit), 4),
            "glucose_context": reading.context,
            "period_start": reading.period_start,
        }
    ]


# SQLite's path (PostgreSQL COPYs, below).
_NEW_READINGS = InsertIgnoringConflicts(
    cast(Table, Reading.__table__),
    on=["device_id", "measurement", "measured_at"],
    returning=[cast(Table, Reading.__table__).c.id],
)


_COLUMNS = (
    "id",
    "device_id",
    "measurement",
    "measured_at",
    "patient_record_id",
    "institution_id",
    "gateway_id",
    "loinc",
    "unit",
    "value",
    "diastolic",
    "glucose_context",
    "period_start",
    "received_at",
)
_COLUMN_LIST = ", ".join(_COLUMNS)
_STAGING = "readings_incoming"


def _copy_then_insert(session: Session, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
    """PostgreSQL: COPY the batch into a session-local staging table, then one
    INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING id. COPY avoids building and
    parsing a statement with thousands of parameters."""
    connection = session.connection().connection.driver_connection
    assert connection is not None
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} "
            "(LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cursor.copy(f"COPY {_STAGING} ({_COLUMN_LIST}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(
                    [
                        None if row[c] is None else str(row[c]) if c in _ENUMS else row[c]
                        for c in _COLUMNS
                    ]
                )
        # Emptying the staging table in the same statement: the next batch (in this
        # transaction) starts empty, one round trip fewer.
        cursor.execute(
            f"WITH batch AS (DELETE FROM {_STAGING} RETURNING *) "  # noqa: S608 - constant names
            f"INSERT INTO readings ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM batch "
            "ON CONFLICT (device_id, measurement, measured_at) DO NOTHING RETURNING id"
        )
        return {r[0] for r in cursor.fetchall()}


_ENUMS = frozenset({"measurement", "glucose_context"})


def insert_idempotent(session: Session, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
    """Insert, skipping rows whose natural key exists; return the ids actually stored."""
    if not rows:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        return _copy_then_insert(session, rows)
    # SQLite: an executemany of one cached statement, batched by SQLAlchemy into
    # multi-row INSERTs with RETURNING ("insertmanyvalues").
    result = session.connection().execute(_NEW_READINGS.for_session(session), rows)
    return set(result.scalars())


def ingest(
    session: Session,
    *,
    gateway: DeviceGateway,
    items: Sequence[Any],
    actor: Actor,
    transport: str,
) -> list[Outcome]:
    """Store a batch from one gateway; one outcome per item, in order."""
    now = utcnow()
    outcomes: list[Outcome] = []
    parsed: list[tuple[int, ReadingIn]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            outcomes.append(Outcome(index, "rejected", "a reading must be a JSON object", raw=item))
            continue
        try:
            parsed.append((index, ReadingIn.model_validate(item)))
            outcomes.append(Outcome(index, "pending", raw=item))
        except ValidationError as exc:
            outcomes.append(Outcome(index, "rejected", _reason(exc), raw=item))

    devices, by_device, persons = _devices_of(session, gateway, {r.device for _, r in parsed})

    rows: list[dict[str, Any]] = []
    owner: dict[uuid.UUID, tuple[int, _Assignment]] = {}  # row id -> (item, assignment)
    keys: dict[tuple[uuid.UUID, str, datetime], int] = {}
    for index, reading in parsed:
        outcome = outcomes[index]
        device = devices.get(reading.device)
        problem = _check(reading, device, now)
        if problem is None:
            assert device is not None
            assignment = _assignment_at(by_device[device.id], reading.measured_at)
            if assignment is None:
                problem = (
                    f"device {reading.device!r} was not assigned to a patient at "
                    f"{reading.measured_at.isoformat()}"
                )
        if problem is not None:
            outcome.status, outcome.reason = "rejected", problem
            continue
        assert device is not None and assignment is not None
        key = (device.id, str(reading.type), reading.measured_at)
        if key in keys:
            outcome.status, outcome.reason = "duplicate", f"same reading as item {keys[key]}"
            continue
        keys[key] = index
        new_rows = _rows_for(reading, device, assignment, gateway, now)
        outcome.reading_id = new_rows[0]["id"]
        for row in new_rows:
            owner[row["id"]] = (index, assignment)
        rows.extend(new_rows)

    stored = insert_idempotent(session, rows)
    fresh: list[alerts.StoredReading] = []
    for row in rows:
        row_id = row["id"]
        index, assignment = owner[row_id]
        outcome = outcomes[index]
        is_new = row_id in stored
        if row_id == outcome.reading_id:
            outcome.status = "stored" if is_new else "duplicate"
            if not is_new:
                outcome.reading_id = None
                outcome.reason = "already stored"
        if is_new:
            fresh.append(
                alerts.StoredReading(
                    id=row_id,
                    patient_record_id=assignment.patient_record_id,
                    institution_id=assignment.institution_id,
                    responsible_user_id=assignment.responsible_user_id,
                    facts=ReadingFacts(
                        row["measurement"], row["measured_at"], row["value"], row["diastolic"]
                    ),
                )
            )
    raised = alerts.evaluate_readings(session, fresh)
    for outcome in outcomes:
        if outcome.reading_id is not None:
            outcome.alerts = raised.get(outcome.reading_id, [])
    _audit(session, actor, gateway, fresh, persons, transport)
    return outcomes


@dataclass(frozen=True, slots=True)
class _Device:
    id: uuid.UUID
    serial: str
    device_type: DeviceType


@dataclass(frozen=True, slots=True)
class _Assignment:
    patient_record_id: uuid.UUID
    institution_id: uuid.UUID
    responsible_user_id: uuid.UUID | None
    start: datetime
    end: datetime | None


def _devices_of(
    session: Session, gateway: DeviceGateway, serials: set[str]
) -> tuple[dict[str, _Device], dict[uuid.UUID, list[_Assignment]], dict[uuid.UUID, uuid.UUID]]:
    """The gateway's active devices named in the batch, their assignments and each
    assigned record's person (for the audit), in one statement. Plain rows, not ORM
    objects: a batch touches hundreds of devices and only reads them."""
    devices: dict[str, _Device] = {}
    by_device: dict[uuid.UUID, list[_Assignment]] = defaultdict(list)
    persons: dict[uuid.UUID, uuid.UUID] = {}
    if not serials:
        return devices, by_device, persons
    # Core, not ORM, execution: the rows are plain tuples and the ORM's loading
    # machinery would only wrap them.
    rows = session.connection().execute(
        select(
            Device.id,
            Device.serial,
            Device.device_type,
            DeviceAssignment.patient_record_id,
            DeviceAssignment.institution_id,
            DeviceAssignment.responsible_user_id,
            DeviceAssignment.start,
            DeviceAssignment.end,
            PatientRecord.person_id,
        )
        .outerjoin(DeviceAssignment, DeviceAssignment.device_id == Device.id)
        .outerjoin(PatientRecord, PatientRecord.id == DeviceAssignment.patient_record_id)
        .where(
            Device.serial.in_(serials),
            Device.gateway_id == gateway.id,
            Device.active.is_(True),
        )
    )
    for device_id, serial, kind, record_id, institution_id, responsible, start, end, person in rows:
        assert serial is not None  # matched on it
        if serial not in devices:
            devices[serial] = _Device(device_id, serial, kind)
        if record_id is not None:
            by_device[device_id].append(
                _Assignment(record_id, institution_id, responsible, start, end)
            )
            persons[record_id] = person
    return devices, by_device, persons


def _audit(
    session: Session,
    actor: Actor,
    gateway: DeviceGateway,
    fresh: Sequence[alerts.StoredReading],
    persons: dict[uuid.UUID, uuid.UUID],
    transport: str,
) -> None:
    """One audit event per patient per batch, naming how many readings were stored
    and the span of their measurement times (see the README on why per batch). The
    gateway holds no patient-data permission: its right to write comes from the
    device being registered to it and assigned to the patient (an assignment a
    clinician made under the policy)."""
    spans: dict[uuid.UUID, list[Any]] = {}  # record -> [count, first, last]
    for r in fresh:
        at = r.facts.measured_at
        span = spans.get(r.patient_record_id)
        if span is None:
            spans[r.patient_record_id] = [1, at, at]
        else:
            span[0] += 1
            span[1], span[2] = min(span[1], at), max(span[2], at)
    for record_id, (count, first, last) in spans.items():
        audit.record(
            session,
            actor,
            action="create",
            resource_type="Observation",
            patient_id=persons[record_id],
            reason="device assigned to the patient, registered to this gateway",
            detail={
                "readings": count,
                "measured_from": first.astimezone(UTC).isoformat(),
                "measured_to": last.astimezone(UTC).isoformat(),
                "gateway": gateway.code,
                "transport": transport,
            },
        )
