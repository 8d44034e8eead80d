"""Demo remote monitoring: a gateway per monitoring institution, a device kit per
patient chosen from the patient's diagnoses, three weeks of synthetic readings, and the
alerts the rules raise on the last two days (plus a few patients whose devices fell
silent). History is bulk-inserted; only the recent readings go through the rules.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from medalliance.access import accounts
from medalliance.access.models import User
from medalliance.domains.alliance.models import Institution
from medalliance.domains.monitoring import alerts
from medalliance.domains.monitoring import jobs as monitoring_jobs
from medalliance.domains.monitoring.catalogue import (
    MEASUREMENTS,
    DeviceType,
    GlucoseContext,
    MeasurementType,
)
from medalliance.domains.monitoring.models import (
    Device,
    DeviceAssignment,
    DeviceGateway,
    Reading,
)
from medalliance.domains.monitoring.rules import ReadingFacts
from medalliance.domains.patients.models import PatientRecord
from medalliance.domains.records import service as records_service
from medalliance.kernel.clock import utcnow
from medalliance.kernel.ids import new_id, stable_id
from medalliance.kernel.roles import Role

RANDOM_SEED = 20261125
DAYS = 21
EVALUATED_DAYS = 2  # the rules run over the most recent readings only
# Where the demo accounts work (demo/seed.py): clinician at the lead hospital, gp and
# care manager at a community centre; their desks show these patients.
MONITORING_INSTITUTIONS = ("QH-LEAD", "QH-DC-01", "QH-DC")
PATIENTS = 200
MODELS = {
    DeviceType.BP_MONITOR: "Omron U10",
    DeviceType.GLUCOMETER: "Sinocare GA-3",
    DeviceType.PULSE_OXIMETER: "Yuwell YX306",
    DeviceType.SCALE: "Xiaomi Body Scale 2",
    DeviceType.ACTIVITY_TRACKER: "Huawei Band 8",
}


@dataclass
class MonitoringSeedSummary:
    patients: int = 0
    devices: int = 0
    readings: int = 0
    alerts: int = 0


def _gateway_account(session: Session, institution: Institution, password: str) -> User:
    username = "gateway" if institution.code == "QH-DC-01" else f"gateway-{institution.code}"
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        user = accounts.create_account(
            session,
            username=username,
            password=password,
            role=Role.DEVICE_GATEWAY,
            display_name=f"{institution.code} home-monitoring hub",
            institution_id=institution.id,
            practitioner_id=None,
        )
    return user


def _kit(codes: set[str]) -> list[DeviceType]:
    kit = [DeviceType.BP_MONITOR]  # every monitored patient measures BP
    if any(c.startswith("E11") for c in codes):
        kit.append(DeviceType.GLUCOMETER)
    if any(c.startswith("J44") for c in codes):
        kit.append(DeviceType.PULSE_OXIMETER)
    if any(c.startswith("I50") for c in codes):
        kit.append(DeviceType.SCALE)
    kit.append(DeviceType.ACTIVITY_TRACKER)
    return kit


def _series(
    rng: random.Random,
    device_type: DeviceType,
    day: datetime,
    unstable: bool,
    base: dict[str, float],
) -> list[dict[str, Any]]:
    """One day of readings from one device; unstable patients sometimes cross a threshold."""
    spike = unstable and rng.random() < 0.25
    out: list[dict[str, Any]] = []
    if device_type is DeviceType.BP_MONITOR:
        for hour in (7, 19):
            sbp = rng.gauss(base["sbp"], 8) + (rng.uniform(35, 60) if spike and hour == 7 else 0)
            dbp = rng.gauss(base["dbp"], 5) + (rng.uniform(15, 30) if spike and hour == 7 else 0)
            at = day.replace(hour=hour, minute=rng.randrange(60))
            out.append(
                {"m": MeasurementType.BLOOD_PRESSURE, "at": at, "v": round(sbp), "d": round(dbp)}
            )
            out.append({"m": MeasurementType.HEART_RATE, "at": at, "v": round(rng.gauss(74, 7))})
    elif device_type is DeviceType.GLUCOMETER:
        fasting = rng.gauss(base["glucose"], 0.8) if not spike else rng.uniform(2.6, 3.8)
        out.append(
            {
                "m": MeasurementType.GLUCOSE,
                "at": day.replace(hour=6, minute=30),
                "v": round(fasting, 1),
                "ctx": GlucoseContext.FASTING,
            }
        )
        out.append(
            {
                "m": MeasurementType.GLUCOSE,
                "at": day.replace(hour=14),
                "v": round(rng.gauss(base["glucose"] + 2.5, 1.2), 1),
                "ctx": GlucoseContext.POST_MEAL,
            }
        )
    elif device_type is DeviceType.PULSE_OXIMETER:
        spo2 = rng.gauss(93, 1.5) - (rng.uniform(5, 8) if spike else 0)
        out.append(
            {"m": MeasurementType.SPO2, "at": day.replace(hour=9), "v": round(min(spo2, 99))}
        )
    elif device_type is DeviceType.SCALE:
        base["kg"] += rng.gauss(0, 0.2) + (1.4 if spike else 0)
        out.append(
            {"m": MeasurementType.WEIGHT, "at": day.replace(hour=7), "v": round(base["kg"], 1)}
        )
    elif device_type is DeviceType.ACTIVITY_TRACKER:
        end = day.replace(hour=22)
        out.append(
            {
                "m": MeasurementType.STEPS,
                "at": end,
                "v": max(0, round(rng.gauss(5500, 2000))),
                "start": day.replace(hour=0),
            }
        )
    return out


def seed_monitoring(
    session: Session, institutions: dict[str, Institution], *, password: str
) -> MonitoringSeedSummary:
    summary = MonitoringSeedSummary()
    if session.scalar(select(DeviceGateway.id).limit(1)) is not None:
        return summary  # seeded before
    rng = random.Random(RANDOM_SEED)  # noqa: S311 - synthetic data
    now = utcnow().replace(second=0, microsecond=0)
    chosen: list[PatientRecord] = []
    share = PATIENTS // len(MONITORING_INSTITUTIONS)
    for code in MONITORING_INSTITUTIONS:
        if code not in institutions:
            continue
        chosen.extend(
            session.scalars(
                select(PatientRecord)
                .where(PatientRecord.institution_id == institutions[code].id)
                .order_by(PatientRecord.id)
                .limit(share)
            )
        )
    codes = records_service.active_diagnosis_codes(session, [r.id for r in chosen])
    gateways: dict[uuid.UUID, DeviceGateway] = {}
    responsible: dict[uuid.UUID, uuid.UUID | None] = {}
    for code in MONITORING_INSTITUTIONS:
        if code not in institutions:
            continue
        institution = institutions[code]
        user = _gateway_account(session, institution, password)
        gateway = DeviceGateway(
            id=stable_id("gateway", code),
            code=f"{code.lower()}-hub",
            name=f"{institution.name_zh} 居家监测网关",
            institution_id=institution.id,
            user_id=user.id,
            active=True,
        )
        session.add(gateway)
        gateways[institution.id] = gateway
        responsible[institution.id] = session.scalar(
            select(User.id).where(
                User.institution_id == institution.id, User.role == Role.CLINICIAN
            )
        )
    session.flush()

    devices: list[dict[str, Any]] = []
    assignments: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    start = now - timedelta(days=DAYS)
    for n, record in enumerate(chosen):
        gateway = gateways[record.institution_id]
        unstable = rng.random() < 0.12
        silent = not unstable and rng.random() < 0.04  # devices stopped sending 5 days ago
        base = {
            "sbp": rng.gauss(138, 10),
            "dbp": rng.gauss(84, 6),
            "glucose": rng.gauss(6.8, 0.8),
            "kg": rng.gauss(66, 9),
        }
        for device_type in _kit(codes.get(record.id, set())):
            device_id = new_id()
            devices.append(
                {
                    "id": device_id,
                    "institution_id": record.institution_id,
                    "gateway_id": gateway.id,
                    "device_type": device_type,
                    "model": MODELS[device_type],
                    "serial": f"DEMO-{device_type.value[:3].upper()}-{n:04d}",
                    "active": True,
                }
            )
            assignments.append(
                {
                    "id": new_id(),
                    "device_id": device_id,
                    "patient_record_id": record.id,
                    "institution_id": record.institution_id,
                    "start": start - timedelta(days=1),
                    "end": None,
                    "responsible_user_id": responsible[record.institution_id],
                    "assigned_by": responsible[record.institution_id],
                }
            )
            last_day = DAYS - 5 if silent else DAYS
            for d in range(last_day):
                day = start + timedelta(days=d)
                for r in _series(rng, device_type, day, unstable and d >= DAYS - 4, base):
                    if r["at"] > now:
                        continue
                    spec = MEASUREMENTS[r["m"]]
                    rows.append(
                        {
                            "id": new_id(),
                            "device_id": device_id,
                            "measurement": r["m"],
                            "measured_at": r["at"],
                            "patient_record_id": record.id,
                            "institution_id": record.institution_id,
                            "gateway_id": gateway.id,
                            "loinc": spec.loinc[0],
                            "unit": spec.unit,
                            "value": r["v"],
                            "diastolic": r.get("d"),
                            "glucose_context": r.get("ctx"),
                            "period_start": r.get("start"),
                            "received_at": r["at"],
                        }
                    )
    session.execute(insert(Device), devices)
    session.execute(insert(DeviceAssignment), assignments)
    for i in range(0, len(rows), 5000):
        session.execute(insert(Reading), rows[i : i + 5000])
    summary.patients, summary.devices, summary.readings = len(chosen), len(devices), len(rows)

    recent = [r for r in rows if r["measured_at"] >= now - timedelta(days=EVALUATED_DAYS)]
    owner = {a["device_id"]: a for a in assignments}
    stored = [
        alerts.StoredReading(
            id=r["id"],
            patient_record_id=r["patient_record_id"],
            institution_id=r["institution_id"],
            responsible_user_id=owner[r["device_id"]]["responsible_user_id"],
            facts=ReadingFacts(r["measurement"], r["measured_at"], r["value"], r["diastolic"]),
        )
        for r in recent
    ]
    raised = alerts.evaluate_readings(session, stored)
    silent_alerts = monitoring_jobs.check_silent_patients(session, now)
    summary.alerts = len({a for ids in raised.values() for a in ids}) + len(silent_alerts)
    return summary
