"""The chart's sections, each loaded into its tab with HTMX (or opened on its own).

Every section calls the service the JSON API calls for the same data, so the access
policy and the audit trail apply exactly as there."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession
from medalliance.domains.monitoring import service as monitoring_service
from medalliance.domains.records import timeline as records_timeline
from medalliance.domains.results import service as results_service
from medalliance.domains.results.schemas import ITEM_CODE
from medalliance.domains.tcm import assessments
from medalliance.domains.tcm import service as tcm_service
from medalliance.kernel.errors import PermissionDenied
from medalliance.kernel.pagination import PageRequest
from medalliance.web import charts, i18n
from medalliance.web.render import render
from medalliance.web.session import WebUser, require_permission

router = APIRouter(prefix="/patients/{patient_id}/chart")

Reader = Annotated[WebUser, Depends(require_permission(Permission.PATIENT_READ))]
PatientId = Annotated[uuid.UUID, Path()]
N_ = i18n.N_
TIMELINE_PAGE = 50
PRESCRIPTIONS_SHOWN = 20
READINGS_READ = 1000
SPARK_POINTS = 30

ENTRY_TYPES: dict[str, str] = {
    "encounter": N_("Encounter"),
    "diagnosis": N_("Diagnosis"),
    "allergy": N_("Allergy"),
    "medication": N_("Medication"),
    "note": N_("Note"),
    "procedure": N_("Procedure"),
    "result": N_("Result"),
    "prescription": N_("Prescription"),
    "constitution": N_("Constitution"),
    "reading": N_("Reading"),
    "monitoring_alert": N_("Monitoring alert"),
}
MEASUREMENTS: dict[str, str] = {
    "blood_pressure": N_("Blood pressure"),
    "heart_rate": N_("Heart rate"),
    "glucose": N_("Blood glucose"),
    "spo2": N_("SpO2"),
    "weight": N_("Weight"),
    "body_temperature": N_("Body temperature"),
    "steps": N_("Steps"),
}
SEVERITIES: dict[str, str] = {"block": N_("Blocks"), "warn": N_("Warning"), "info": N_("Note")}
STATUSES: dict[str, str] = {
    "draft": N_("Draft"),
    "signed": N_("Signed"),
    "cancelled": N_("Cancelled"),
    "active": N_("Active"),
    "resolved": N_("Resolved"),
    "inactive": N_("Inactive"),
    "entered-in-error": N_("Entered in error"),
    "final": N_("Final"),
    "preliminary": N_("Preliminary"),
    "corrected": N_("Corrected"),
    "open": N_("Open"),
    "acknowledged": N_("Acknowledged"),
    "escalated": N_("Escalated"),
    "planned": N_("Planned"),
    "in-progress": N_("In progress"),
    "finished": N_("Finished"),
    # orders recorded from another system keep its MedicationRequest status
    "stopped": N_("Stopped"),
    "completed": N_("Completed"),
    "on-hold": N_("On hold"),
    "unknown": N_("Unknown"),
}


def _section(request: Request, name: str, patient_id: uuid.UUID, **ctx: Any) -> Response:
    template = f"patients/sections/{name}.html"
    if request.headers.get("hx-request"):
        return render(request, template, patient_id=patient_id, **ctx)
    # Opened directly (a bookmark, no script): the chart page with this tab open.
    return render(
        request, "patients/section_page.html", section=template, patient_id=patient_id, **ctx
    )


def _labels() -> dict[str, Any]:
    return {
        "ENTRY_TYPES": ENTRY_TYPES,
        "MEASUREMENTS": MEASUREMENTS,
        "SEVERITIES": SEVERITIES,
        "STATUSES": STATUSES,
    }


@router.get("/timeline")
def timeline(
    request: Request,
    session: DbSession,
    user: Reader,
    patient_id: PatientId,
    type: Annotated[str, Query(max_length=40)] = "",
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    wanted = [type] if type in ENTRY_TYPES else None
    result = records_timeline.timeline(
        session, user.actor, patient_id, types=wanted, limit=TIMELINE_PAGE, offset=offset
    )
    return _section(
        request,
        "timeline",
        patient_id,
        timeline=result,
        type=type if wanted else "",
        offset=offset,
        limit=TIMELINE_PAGE,
        **_labels(),
    )


@router.get("/diagnoses")
def diagnoses(
    request: Request, session: DbSession, user: Reader, patient_id: PatientId
) -> Response:
    result = records_timeline.timeline(
        session, user.actor, patient_id, types=["diagnosis"], limit=500
    )
    return _section(request, "diagnoses", patient_id, timeline=result, **_labels())


def _point(at: Any, value: float, flagged: bool, extra: str) -> charts.Point:
    return charts.Point(value, flagged, f"{i18n.format_datetime(at, 'short')} {value:g} {extra}")


@router.get("/results")
def results(request: Request, session: DbSession, user: Reader, patient_id: PatientId) -> Response:
    rows, hidden = results_service.list_results(session, user.actor, patient_id)
    reads = [results_service.to_read(session, r) for r in rows]
    by_item: dict[str, list[Any]] = defaultdict(list)
    for read in reads:  # newest first
        by_item[read.item_code].append(read)
    items = []
    for code, series in by_item.items():
        numeric = [r for r in reversed(series) if r.value_numeric is not None][-SPARK_POINTS:]
        spark = charts.sparkline(
            [
                _point(r.effective_at, r.value_numeric, bool(r.abnormal_flag), r.unit or "")
                for r in numeric
            ]
        )
        items.append({"code": code, "latest": series[0], "count": len(series), "spark": spark})
    return _section(request, "results", patient_id, items=items, hidden=hidden, **_labels())


@router.get("/results/{item_code}")
def trend(
    request: Request,
    session: DbSession,
    user: Reader,
    patient_id: PatientId,
    item_code: Annotated[str, Path(pattern=ITEM_CODE)],
) -> Response:
    series = results_service.trend(session, user.actor, patient_id, item_code)
    numeric = [p for p in series.points if p.value is not None]
    chart = charts.trend_chart(
        [
            _point(p.at, p.value, bool(p.abnormal_flag), p.institution_code)
            for p in numeric
            if p.value is not None
        ],
        label=series.item_name or series.item_code,
    )
    return _section(request, "trend", patient_id, trend=series, chart=chart, **_labels())


@router.get("/prescriptions")
def prescriptions(
    request: Request, session: DbSession, user: Reader, patient_id: PatientId
) -> Response:
    listed = records_timeline.timeline(
        session, user.actor, patient_id, types=["prescription"], limit=PRESCRIPTIONS_SHOWN
    )
    shown = []
    for entry in listed.entries:
        prescription = tcm_service.get_prescription(session, user.actor, entry.id)
        shown.append({"entry": entry, "rx": prescription})
    return _section(
        request,
        "prescriptions",
        patient_id,
        prescriptions=shown,
        total=listed.total,
        hidden=listed.hidden_institutions,
        **_labels(),
    )


@router.get("/constitution")
def constitution(
    request: Request, session: DbSession, user: Reader, patient_id: PatientId
) -> Response:
    history = assessments.history(session, user.actor, patient_id)
    return _section(request, "constitution", patient_id, history=history, **_labels())


@router.get("/devices")
def devices(request: Request, session: DbSession, user: Reader, patient_id: PatientId) -> Response:
    readings = monitoring_service.patient_readings(
        session,
        user.actor,
        patient_id,
        measurement=None,
        since=None,
        until=None,
        page=PageRequest(limit=READINGS_READ, offset=0),
    )
    series: dict[tuple[uuid.UUID, str], list[Any]] = defaultdict(list)
    for reading in readings.items:  # newest first
        series[(reading.device_id, str(reading.measurement))].append(reading)
    names = _device_names(session, user, {device for device, _m in series})
    groups = []
    for (device_id, measurement), rows in sorted(series.items(), key=lambda kv: kv[0][1]):
        recent = list(reversed(rows[:SPARK_POINTS]))
        groups.append(
            {
                "device": names.get(device_id, str(device_id)[:8]),
                "measurement": measurement,
                "latest": rows[0],
                "count": len(rows),
                "spark": charts.sparkline(
                    [_point(r.measured_at, r.value, False, r.unit) for r in recent]
                ),
            }
        )
    return _section(
        request, "devices", patient_id, groups=groups, total=readings.total, **_labels()
    )


def _device_names(
    session: DbSession, user: WebUser, wanted: set[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Model and serial of the devices the user's registry scope shows (others by id)."""
    if not wanted:
        return {}
    try:
        listed = monitoring_service.list_devices(
            session, user.actor, gateway_id=None, page=PageRequest(limit=500, offset=0)
        )
    except PermissionDenied:
        return {}
    return {d.id: f"{d.model} · {d.serial}" for d in listed.items if d.id in wanted}
