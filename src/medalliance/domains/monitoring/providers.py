"""Readings and alerts on the patient timeline.

Both are paged sources: the timeline counts and pages them in SQL (on the
(patient_record_id, measured_at) index for readings), so a patient on continuous
glucose monitoring — hundreds of readings a day — costs one page, not their history.
Each reading is its own entry, not a daily summary: an entry is a row the clinician
can open and an alert can point at; the desk shows the daily means, alerts stand on
the timeline as entries of their own, and ``types=`` leaves readings out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medalliance.domains.monitoring.models import Alert, Reading
from medalliance.domains.records.timeline import EntryTable, RawEntry, register_paged_source


def _reading(r: Sequence[Any]) -> RawEntry:
    rid, at, institution_id, measurement, value, diastolic, unit, loinc = r
    shown = f"{value:g}" if diastolic is None else f"{value:g}/{diastolic:g}"
    return RawEntry(
        "reading",
        rid,
        at,
        institution_id,
        f"{measurement}: {shown} {unit}",
        detail={"loinc": loinc},
    )


def _alert(r: Sequence[Any]) -> RawEntry:
    aid, at, institution_id, title, message, status, rule, severity, source = r
    return RawEntry(
        "monitoring_alert",
        aid,
        at,
        institution_id,
        f"{title}: {message}",
        str(status),
        detail={"rule": str(rule), "severity": str(severity), "source": source},
    )


def _register() -> None:
    r, a = Reading, Alert
    register_paged_source(
        "reading",
        table=EntryTable(r.id, r.measured_at, r.institution_id, r.patient_record_id),
        columns=[c.expression for c in (r.measurement, r.value, r.diastolic, r.unit, r.loinc)],
        build=_reading,
    )
    register_paged_source(
        "monitoring_alert",
        table=EntryTable(a.id, a.raised_at, a.institution_id, a.patient_record_id),
        columns=[
            c.expression for c in (a.title, a.message, a.status, a.rule, a.severity, a.source)
        ],
        build=_alert,
    )


_register()
