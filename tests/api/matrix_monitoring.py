"""Access-matrix entries for remote monitoring. Targets live at ``home``; a clinician
or admin of ``other`` is refused (403, or 404 where the device is simply not theirs)."""

from __future__ import annotations

import uuid

from medalliance.access.permissions import Permission as P  # noqa: N817 - the table reads better
from medalliance.domains.monitoring.catalogue import DeviceType
from medalliance.domains.monitoring.models import Alert, AlertStatus, ThresholdOverride
from medalliance.domains.monitoring.thresholds import AlertRule, Severity
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role
from tests.api.access_matrix import Call, MatrixContext, RouteSpec, unique
from tests.factories.monitoring import assign, make_device, make_gateway
from tests.factories.patients import make_patient

CLINICAL = (Role.CLINICIAN,)
ADMIN = (Role.INSTITUTION_ADMIN,)


def _readings(ctx: MatrixContext) -> Call:
    gateway = make_gateway(ctx.home, user=ctx.user)
    device = make_device(gateway, DeviceType.BP_MONITOR)
    _, record = make_patient(ctx.home)
    assign(device, record)
    reading = {
        "device": device.serial,
        "type": "blood_pressure",
        "measured_at": utcnow().isoformat(),
        "unit": "mm[Hg]",
        "systolic": 132,
        "diastolic": 84,
    }
    return Call(json={"readings": [reading]})


def _new_gateway(ctx: MatrixContext) -> Call:
    return Call(
        json={
            "code": unique("gw"),
            "name": "Ward 3 hub",
            "username": unique("gwuser"),
            "password": "a-long-gateway-secret",
            "institution_code": ctx.home.code,
        }
    )


def _new_device(ctx: MatrixContext) -> Call:
    gateway = make_gateway(ctx.home)
    return Call(
        json={
            "gateway_id": str(gateway.id),
            "device_type": "glucometer",
            "model": "Sinocare GA-3",
            "serial": unique("SN"),
        }
    )


def _assignment(ctx: MatrixContext) -> Call:
    device = make_device(make_gateway(ctx.home))
    person, _ = make_patient(ctx.home)
    return Call(
        path_params={"device_id": device.id},
        json={"patient_id": str(person.id), "start": utcnow().isoformat()},
    )


def _end(ctx: MatrixContext) -> Call:
    device = make_device(make_gateway(ctx.home))
    _, record = make_patient(ctx.home)
    assignment = assign(device, record)
    return Call(path_params={"assignment_id": assignment.id}, json={"end": utcnow().isoformat()})


def _patient(ctx: MatrixContext) -> Call:
    person, _ = make_patient(ctx.home)
    return Call(path_params={"patient_id": person.id})


def _set_threshold(ctx: MatrixContext) -> Call:
    person, _ = make_patient(ctx.home)
    return Call(
        path_params={"patient_id": person.id, "rule": "low_spo2"},
        json={"threshold": 88, "reason": "COPD"},
    )


def _existing_threshold(ctx: MatrixContext) -> Call:
    person, record = make_patient(ctx.home)
    ctx.session.add(
        ThresholdOverride(
            patient_record_id=record.id,
            institution_id=ctx.home.id,
            rule=AlertRule.LOW_SPO2,
            threshold=88,
            reason="COPD",
        )
    )
    ctx.session.flush()
    return Call(path_params={"patient_id": person.id, "rule": "low_spo2"})


def _alert(ctx: MatrixContext) -> uuid.UUID:
    _, record = make_patient(ctx.home)
    now = utcnow()
    alert = Alert(
        patient_record_id=record.id,
        institution_id=ctx.home.id,
        rule=AlertRule.HYPERTENSIVE_CRISIS,
        severity=Severity.CRITICAL,
        status=AlertStatus.OPEN,
        title="Hypertensive crisis",
        message="BP 200/130 mmHg",
        criterion="SBP > 180 and/or DBP > 120 mmHg",
        source="[S47]",
        value=200,
        occurrences=1,
        raised_at=now,
        last_seen_at=now,
        detail={},
    )
    ctx.session.add(alert)
    ctx.session.flush()
    return alert.id


def _alert_call(ctx: MatrixContext) -> Call:
    return Call(path_params={"alert_id": _alert(ctx)})


def _alert_action(ctx: MatrixContext) -> Call:
    return Call(path_params={"alert_id": _alert(ctx), "action": "acknowledge"}, json={})


def _spec(method: str, path: str, access: str, prepare: object, **extra: object) -> RouteSpec:
    return RouteSpec(method, path, access, prepare=prepare, **extra)  # type: ignore[arg-type]


BASE = "/api/monitoring"
MONITORING_ROUTES: list[RouteSpec] = [
    _spec("POST", f"{BASE}/readings", P.DEVICE_INGEST, _readings, foreign=(Role.DEVICE_GATEWAY,)),
    _spec("POST", f"{BASE}/gateways", P.REGISTRY_MANAGE, _new_gateway, foreign=ADMIN),
    _spec("GET", f"{BASE}/gateways", P.REGISTRY_READ, lambda ctx: Call()),
    _spec("POST", f"{BASE}/devices", P.REGISTRY_MANAGE, _new_device, foreign=ADMIN),
    _spec("GET", f"{BASE}/devices", P.REGISTRY_READ, lambda ctx: Call()),
    _spec(
        "POST",
        f"{BASE}/devices/{{device_id}}/assignments",
        P.PATIENT_WRITE,
        _assignment,
        foreign=CLINICAL,
        foreign_status=404,
    ),
    _spec(
        "POST", f"{BASE}/assignments/{{assignment_id}}/end", P.PATIENT_WRITE, _end, foreign=CLINICAL
    ),
    _spec(
        "GET",
        f"{BASE}/patients/{{patient_id}}/readings",
        P.PATIENT_READ,
        _patient,
        foreign=CLINICAL,
    ),
    _spec(
        "GET",
        f"{BASE}/patients/{{patient_id}}/thresholds",
        P.PATIENT_READ,
        _patient,
        foreign=CLINICAL,
    ),
    _spec(
        "PUT",
        f"{BASE}/patients/{{patient_id}}/thresholds/{{rule}}",
        P.MONITORING_THRESHOLDS,
        _set_threshold,
        foreign=CLINICAL,
    ),
    _spec(
        "DELETE",
        f"{BASE}/patients/{{patient_id}}/thresholds/{{rule}}",
        P.MONITORING_THRESHOLDS,
        _existing_threshold,
        foreign=CLINICAL,
    ),
    _spec("GET", f"{BASE}/alerts", P.PATIENT_READ, lambda ctx: Call()),
    _spec("GET", f"{BASE}/alerts/{{alert_id}}", P.PATIENT_READ, _alert_call, foreign=CLINICAL),
    _spec(
        "POST",
        f"{BASE}/alerts/{{alert_id}}/{{action}}",
        P.PATIENT_WRITE,
        _alert_action,
        foreign=CLINICAL,
    ),
    _spec("GET", f"{BASE}/desk", P.PATIENT_READ, lambda ctx: Call()),
    _spec("GET", f"{BASE}/dead-letters", P.JOBS_MANAGE, lambda ctx: Call()),
]
