"""Readings and alerts on the patient timeline."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.domains.monitoring.models import Alert, Reading
from medalliance.domains.records import timeline
from medalliance.domains.records.timeline import RawEntry


def _readings(session: Session, records: Sequence[uuid.UUID]) -> list[RawEntry]:
    rows = session.execute(
        select(
            Reading.id,
            Reading.measured_at,
            Reading.institution_id,
            Reading.measurement,
            Reading.value,
            Reading.diastolic,
            Reading.unit,
            Reading.loinc,
        ).where(Reading.patient_record_id.in_(records))
    )
    entries = []
    for rid, at, institution_id, measurement, value, diastolic, unit, loinc in rows:
        shown = f"{value:g}" if diastolic is None else f"{value:g}/{diastolic:g}"
        entries.append(
            RawEntry(
                "reading",
                rid,
                at,
                institution_id,
                f"{measurement}: {shown} {unit}",
                detail={"loinc": loinc},
            )
        )
    return entries


def _alerts(session: Session, records: Sequence[uuid.UUID]) -> list[RawEntry]:
    rows = session.scalars(select(Alert).where(Alert.patient_record_id.in_(records)))
    return [
        RawEntry(
            "monitoring_alert",
            a.id,
            a.raised_at,
            a.institution_id,
            f"{a.title}: {a.message}",
            str(a.status),
            detail={"rule": str(a.rule), "severity": str(a.severity), "source": a.source},
        )
        for a in rows
    ]


timeline.register_source("reading", _readings)
timeline.register_source("monitoring_alert", _alerts)
