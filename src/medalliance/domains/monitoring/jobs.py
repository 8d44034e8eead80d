"""Scheduled: raise a "no readings" alert for monitored patients whose devices have
been silent for N days (per-patient N via a threshold override)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from medalliance.domains.monitoring import alerts
from medalliance.domains.monitoring.models import DeviceAssignment, Reading
from medalliance.domains.monitoring.rules import PatientContext, silent_for
from medalliance.domains.monitoring.thresholds import AlertRule
from medalliance.jobs.registry import JobContext, handler, schedule
from medalliance.kernel.clock import utcnow

NO_READINGS = "monitoring.no_readings"


def check_silent_patients(session: Session, now: datetime | None = None) -> list[uuid.UUID]:
    """Raise missing alerts; returns the ids of the alerts raised."""
    now = now or utcnow()
    active = list(
        session.scalars(
            select(DeviceAssignment).where(
                DeviceAssignment.start <= now,
                or_(DeviceAssignment.end.is_(None), DeviceAssignment.end > now),
            )
        )
    )
    if not active:
        return []
    by_record: dict[uuid.UUID, list[DeviceAssignment]] = defaultdict(list)
    for a in active:
        by_record[a.patient_record_id].append(a)
    last = dict(
        session.execute(
            select(Reading.patient_record_id, func.max(Reading.measured_at))
            .where(Reading.patient_record_id.in_(list(by_record)))
            .group_by(Reading.patient_record_id)
        ).all()
    )
    overrides = alerts.overrides_for(session, by_record)
    raised = []
    for record_id, assignments in by_record.items():
        since = min(a.start for a in assignments)
        ctx = PatientContext(overrides=overrides.get(record_id, {}))
        finding = silent_for(last.get(record_id), since, now, ctx)
        if finding is None or alerts.active_alert(session, record_id, AlertRule.NO_READINGS):
            continue
        responsible = [a.responsible_user_id for a in assignments if a.responsible_user_id]
        alert = alerts.raise_alert(
            session,
            patient_record_id=record_id,
            institution_id=assignments[0].institution_id,
            finding=finding,
            reading_id=None,
            at=now,
            notify=list(dict.fromkeys(responsible)),
        )
        raised.append(alert.id)
    session.flush()
    return raised


@handler(NO_READINGS)
def _no_readings_job(session: Session, ctx: JobContext) -> None:
    check_silent_patients(session)


schedule(NO_READINGS, every=timedelta(hours=1))
