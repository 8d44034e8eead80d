"""The central monitoring desk: the monitored patients of the user's institution, most
urgent first, with their open alerts and their readings as charts (ECharts, served from
the package); acknowledge, escalate and resolve alerts with a note. The panel refreshes itself
(HTMX polling) unless the user is typing in it. Escalating an alert (open or
acknowledged) notifies the institution's on-call clinicians. The same use cases as
GET /api/monitoring/desk and POST /api/monitoring/alerts/{id}/{action}."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession
from medalliance.api.problems import status_for
from medalliance.domains.monitoring import alerts, desk, schemas
from medalliance.domains.monitoring.catalogue import MeasurementType
from medalliance.domains.monitoring.thresholds import AlertRule, Severity
from medalliance.kernel.errors import DomainError, PermissionDenied
from medalliance.kernel.pagination import PageRequest
from medalliance.web import i18n
from medalliance.web.forms import FormErrors
from medalliance.web.pages.clinical_forms import PostedForm, attempt, text
from medalliance.web.render import flash, redirect, render
from medalliance.web.session import WebUser, require_permission

router = APIRouter(prefix="/desk")
Reader = Annotated[WebUser, Depends(require_permission(Permission.PATIENT_READ))]
Writer = Annotated[WebUser, Depends(require_permission(Permission.PATIENT_WRITE))]
N_ = i18n.N_
PAGE_SIZE = 20
REFRESH_SECONDS = 30
NOTE_MAX = 2000

SEVERITY_LABELS: dict[str, str] = {
    Severity.CRITICAL: N_("Critical"),
    Severity.HIGH: N_("High"),
    Severity.MEDIUM: N_("Medium"),
}
STATUS_LABELS = {
    "open": N_("Open"),
    "acknowledged": N_("Acknowledged"),
    "escalated": N_("Escalated"),
    "resolved": N_("Resolved"),
}
RULE_LABELS: dict[str, str] = {
    AlertRule.HYPERTENSIVE_CRISIS: N_("Hypertensive crisis"),
    AlertRule.HYPERTENSIVE_URGENCY: N_("Very high blood pressure"),
    AlertRule.HYPOGLYCAEMIA_LEVEL_2: N_("Hypoglycaemia, level 2"),
    AlertRule.HYPOGLYCAEMIA_LEVEL_1: N_("Hypoglycaemia, level 1"),
    AlertRule.HYPERGLYCAEMIA_EMERGENCY: N_("Very high glucose"),
    AlertRule.LOW_SPO2: N_("Low oxygen saturation"),
    AlertRule.HF_WEIGHT_GAIN: N_("Weight gain (heart failure)"),
    AlertRule.NO_READINGS: N_("No readings"),
}
# UCUM codes as a clinician reads them (the code stays in the data and the API).
UNITS_SHOWN = {"mm[Hg]": "mmHg", "{steps}": "", "Cel": "°C"}
MEASUREMENT_LABELS: dict[str, str] = {
    MeasurementType.BLOOD_PRESSURE: N_("Blood pressure"),
    MeasurementType.HEART_RATE: N_("Heart rate"),
    MeasurementType.GLUCOSE: N_("Glucose"),
    MeasurementType.SPO2: N_("SpO2"),
    MeasurementType.WEIGHT: N_("Weight"),
    MeasurementType.BODY_TEMPERATURE: N_("Body temperature"),
    MeasurementType.STEPS: N_("Steps"),
}


def _chart(patient: schemas.DeskPatient) -> str:
    """The daily means per measurement as JSON for desk.js (a data attribute, no
    inline script: the CSP forbids it)."""
    series: list[dict[str, Any]] = []
    for measurement, points in patient.trends.items():
        label = i18n.gettext(MEASUREMENT_LABELS.get(measurement, measurement))
        series.append(
            {"name": label, "data": [[p.day, p.mean] for p in points], "measurement": measurement}
        )
        if any(p.mean_diastolic is not None for p in points):
            series.append(
                {
                    "name": label + " · " + i18n.gettext(N_("diastolic")),
                    "data": [[p.day, p.mean_diastolic] for p in points],
                    "measurement": measurement,
                }
            )
    return json.dumps({"series": series}, ensure_ascii=False)


def _panel_context(
    session: DbSession, user: WebUser, mine: bool, offset: int, days: int
) -> dict[str, Any]:
    result = desk.desk(
        session,
        user.actor,
        mine_only=mine,
        trend_days=days,
        page=PageRequest(limit=PAGE_SIZE, offset=offset),
    )
    return {
        "patients": result.items,
        "total": result.total,
        "offset": offset,
        "limit": PAGE_SIZE,
        "mine": mine,
        "days": days,
        "charts": {p.patient_id: _chart(p) for p in result.items},
        "severity_labels": SEVERITY_LABELS,
        "status_labels": STATUS_LABELS,
        "rule_labels": RULE_LABELS,
        "measurement_labels": MEASUREMENT_LABELS,
        "units": UNITS_SHOWN,
        "may_act": user.can(Permission.PATIENT_WRITE),
        "refresh_seconds": REFRESH_SECONDS,
    }


DONE = {
    "acknowledge": N_("Alert acknowledged."),
    "escalate": N_("Alert escalated; the on-call clinicians are notified."),
    "resolve": N_("Alert resolved."),
}
Mine = Annotated[bool, Query()]
Offset = Annotated[int, Query(ge=0, le=100_000)]
Days = Annotated[int, Query(ge=1, le=90)]


@router.get("")
def desk_page(
    request: Request,
    session: DbSession,
    user: Reader,
    mine: Mine = False,
    offset: Offset = 0,
    days: Days = 7,
) -> Response:
    """The desk; an HTMX request (the periodic refresh) gets the patient list alone."""
    template = "desk/_panel.html" if request.headers.get("hx-request") else "desk/desk.html"
    return render(request, template, **_panel_context(session, user, mine, offset, days))


@router.post("/alerts/{alert_id}/{action}")
def alert_action(
    request: Request,
    alert_id: uuid.UUID,
    action: Literal["acknowledge", "escalate", "resolve"],
    session: DbSession,
    user: Writer,
    form: PostedForm,
) -> Response:
    """open → acknowledged → resolved, or escalated (from open or acknowledged; the
    on-call clinicians are notified), with an optional note (kept on the alert)."""
    note = text(form, "note") or None
    back = text(form, "back")
    back = back if back.startswith("/desk") else "/desk"
    errors = FormErrors()
    if note is not None and len(note) > NOTE_MAX:
        errors.add(f"note-{alert_id}", N_("This is too long."))
    status = 422
    if not errors:
        try:
            attempt(
                session,
                lambda: alerts.transition(
                    session=session, actor=user.actor, alert_id=alert_id, action=action, note=note
                ),
            )
        except PermissionDenied:
            raise
        except DomainError as exc:
            status = status_for(exc)
            errors.add(f"note-{alert_id}", exc.detail)
    if errors:
        context = _panel_context(session, user, False, 0, 7)
        shown = {a.id for p in context["patients"] for a in p.alerts}
        # An alert no longer on the desk (resolved meanwhile) has no row to show its
        # error beside: the page says it at the top instead.
        unshown = None if alert_id in shown else next(iter(errors.values()))
        return render(
            request, "desk/desk.html", status, errors=errors, action_error=unshown, **context
        )
    response = redirect(request, back)
    flash(response, DONE[action], kind="success")
    return response
