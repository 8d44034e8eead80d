"""The central monitoring desk: the monitored patients of the actor's institution
with open alerts, latest readings and daily trends, most urgent first."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from medalliance.access import policy
from medalliance.domains.monitoring import schemas
from medalliance.domains.monitoring.models import (
    ACTIVE_ALERT_STATUSES,
    Alert,
    DeviceAssignment,
    Reading,
)
from medalliance.domains.monitoring.thresholds import RANK
from medalliance.domains.patients import service as patients_service
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.pagination import PageRequest, PageResult


def _monitored_records(session: Session, actor: Actor, *, mine_only: bool) -> list[uuid.UUID]:
    now = utcnow()
    query = select(DeviceAssignment.patient_record_id).where(
        DeviceAssignment.institution_id == actor.institution_id,
        DeviceAssignment.start <= now,
        or_(DeviceAssignment.end.is_(None), DeviceAssignment.end > now),
    )
    if mine_only:
        query = query.where(DeviceAssignment.responsible_user_id == actor.user_id)
    return list(dict.fromkeys(session.scalars(query)))


def desk(
    session: Session,
    actor: Actor,
    *,
    mine_only: bool,
    trend_days: int,
    page: PageRequest,
) -> PageResult[schemas.DeskPatient]:
    if actor.institution_id is None:
        return PageResult(items=[], total=0)
    records = _monitored_records(session, actor, mine_only=mine_only)
    if not records:
        return PageResult(items=[], total=0)
    active = list(
        session.scalars(
            select(Alert).where(
                Alert.institution_id == actor.institution_id,
                Alert.status.in_(ACTIVE_ALERT_STATUSES),
                Alert.patient_record_id.in_(records),
            )
        )
    )
    by_record: dict[uuid.UUID, list[Alert]] = defaultdict(list)
    for alert in active:
        by_record[alert.patient_record_id].append(alert)
    last_at = dict(
        session.execute(
            select(Reading.patient_record_id, func.max(Reading.measured_at))
            .where(Reading.patient_record_id.in_(records))
            .group_by(Reading.patient_record_id)
        ).all()
    )
    never = utcnow() - timedelta(days=36500)

    def urgency(record_id: uuid.UUID) -> tuple[int, int, float, float]:
        alerts = by_record.get(record_id, [])
        if alerts:
            best = min(RANK[a.severity] for a in alerts)
            oldest = min(a.raised_at for a in alerts).timestamp()
            return (0, best, oldest, 0.0)
        return (1, 99, 0.0, -(last_at.get(record_id) or never).timestamp())

    ordered = sorted(records, key=urgency)
    chosen = ordered[page.offset : page.offset + page.limit]
    persons = patients_service.persons_of_records(session, chosen)
    since = utcnow() - timedelta(days=trend_days)
    recent: dict[uuid.UUID, list[Reading]] = defaultdict(list)
    for reading in session.scalars(
        select(Reading)
        .where(Reading.patient_record_id.in_(chosen), Reading.measured_at >= since)
        .order_by(Reading.measured_at)
    ):
        recent[reading.patient_record_id].append(reading)
    items = []
    for record_id in chosen:
        person_id, name = persons[record_id]
        policy.enforce(
            session,
            actor,
            patients_service.facts_or_404(session, person_id),
            policy.AccessAction.READ,
            resource_type="MonitoringDesk",
            resource_id=person_id,
            owner_institution_id=actor.institution_id,
        )
        alerts = sorted(by_record.get(record_id, []), key=lambda a: (RANK[a.severity], a.raised_at))
        items.append(
            schemas.DeskPatient(
                patient_id=person_id,
                name=name,
                open_alerts=len(alerts),
                highest_severity=alerts[0].severity if alerts else None,
                alerts=[
                    schemas.AlertRead.model_validate(a).model_copy(update={"patient_id": person_id})
                    for a in alerts
                ],
                latest=_latest(recent[record_id]),
                trends=_trends(recent[record_id]),
                last_reading_at=last_at.get(record_id),
            )
        )
    return PageResult(items=items, total=len(ordered))


def _latest(readings: list[Reading]) -> list[schemas.LatestReading]:
    latest: dict[str, Reading] = {}
    for r in readings:  # ascending, so the last wins
        latest[str(r.measurement)] = r
    return [
        schemas.LatestReading(
            measurement=r.measurement,
            measured_at=r.measured_at,
            value=r.value,
            diastolic=r.diastolic,
            unit=r.unit,
        )
        for r in latest.values()
    ]


def _trends(readings: list[Reading]) -> dict[str, list[schemas.TrendPoint]]:
    days: dict[str, dict[str, list[Reading]]] = defaultdict(lambda: defaultdict(list))
    for r in readings:
        days[str(r.measurement)][r.measured_at.date().isoformat()].append(r)
    trends: dict[str, list[schemas.TrendPoint]] = {}
    for measurement, by_day in days.items():
        points = []
        for day, rows in sorted(by_day.items()):
            diastolic = [r.diastolic for r in rows if r.diastolic is not None]
            points.append(
                schemas.TrendPoint(
                    day=day,
                    mean=round(sum(r.value for r in rows) / len(rows), 2),
                    mean_diastolic=round(sum(diastolic) / len(diastolic), 2) if diastolic else None,
                    count=len(rows),
                )
            )
        trends[measurement] = points
    return trends
