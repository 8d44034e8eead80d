"""Use cases of remote monitoring besides ingestion: gateways, devices, assignments,
per-patient thresholds, reading a patient's readings."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medalliance.access import accounts, policy
from medalliance.access.models import User
from medalliance.access.permissions import Permission
from medalliance.audit import service as audit
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.monitoring import schemas
from medalliance.domains.monitoring.catalogue import DeviceType, MeasurementType
from medalliance.domains.monitoring.models import (
    DeadLetter,
    Device,
    DeviceAssignment,
    DeviceGateway,
    Reading,
    ThresholdOverride,
)
from medalliance.domains.monitoring.thresholds import DEFAULTS, AlertRule
from medalliance.domains.patients import service as patients_service
from medalliance.kernel.actor import Actor
from medalliance.kernel.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from medalliance.kernel.pagination import PageRequest, PageResult
from medalliance.kernel.roles import Role


def _require(actor: Actor, permission: Permission) -> None:
    if not actor.can(permission):
        raise PermissionDenied(f"Role {actor.role} lacks permission {permission}.")


def _managed_institution(session: Session, actor: Actor, code: str | None) -> uuid.UUID:
    """Alliance admins name the member; institution admins manage their own."""
    _require(actor, Permission.REGISTRY_MANAGE)
    if code is not None:
        institution = alliance_service.find_institution(session, code)
        if institution is None:
            raise InvalidInput(f"No institution with code {code!r}.", field="institution_code")
        if not actor.can(Permission.ALLIANCE_MANAGE) and institution.id != actor.institution_id:
            raise PermissionDenied("You can only manage your own institution.")
        return institution.id
    if actor.institution_id is None:
        raise InvalidInput("Say which institution (institution_code).", field="institution_code")
    return actor.institution_id


def _flush_unique(session: Session, message: str, field: str) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise Conflict(message, field=field) from exc


# --- gateways -------------------------------------------------------------------------


def create_gateway(*, session: Session, actor: Actor, data: schemas.GatewayCreate) -> DeviceGateway:
    """A gateway and its own account (role device_gateway), in one step."""
    institution_id = _managed_institution(session, actor, data.institution_code)
    if session.scalar(select(DeviceGateway.id).where(DeviceGateway.code == data.code)):
        raise Conflict(f"The gateway code {data.code!r} is taken.", field="code")
    if session.scalar(select(User.id).where(User.username == data.username)):
        raise Conflict(f"The username {data.username!r} is taken.", field="username")
    user = accounts.create_account(
        session,
        username=data.username,
        password=data.password,
        role=Role.DEVICE_GATEWAY,
        display_name=data.name,
        institution_id=institution_id,
        practitioner_id=None,
    )
    gateway = DeviceGateway(
        code=data.code, name=data.name, institution_id=institution_id, user_id=user.id, active=True
    )
    session.add(gateway)
    _flush_unique(session, f"The gateway code {data.code!r} is taken.", "code")
    audit.record(
        session,
        actor,
        action="create",
        resource_type="DeviceGateway",
        resource_id=gateway.id,
        detail={"code": gateway.code, "username": user.username},
    )
    return gateway


def list_gateways(session: Session, actor: Actor) -> list[DeviceGateway]:
    _require(actor, Permission.REGISTRY_READ)
    query = select(DeviceGateway).order_by(DeviceGateway.code)
    if not actor.can(Permission.ALLIANCE_MANAGE):
        query = query.where(DeviceGateway.institution_id == actor.institution_id)
    return list(session.scalars(query))


def gateway_of_account(session: Session, user_id: uuid.UUID | None) -> DeviceGateway:
    gateway = session.scalar(
        select(DeviceGateway).where(
            DeviceGateway.user_id == user_id, DeviceGateway.active.is_(True)
        )
    )
    if gateway is None:
        raise PermissionDenied("This account is not an active registered device gateway.")
    return gateway


def gateway_by_code(session: Session, code: str) -> DeviceGateway | None:
    return session.scalar(
        select(DeviceGateway).where(DeviceGateway.code == code, DeviceGateway.active.is_(True))
    )


# --- devices ---------------------------------------------------------------------------


def create_device(*, session: Session, actor: Actor, data: schemas.DeviceCreate) -> Device:
    gateway = session.get(DeviceGateway, data.gateway_id)
    if gateway is None:
        raise InvalidInput(f"No gateway {data.gateway_id}.", field="gateway_id")
    _require(actor, Permission.REGISTRY_MANAGE)
    if not actor.can(Permission.ALLIANCE_MANAGE) and gateway.institution_id != actor.institution_id:
        raise PermissionDenied("You can only manage your own institution's devices.")
    if data.device_type is DeviceType.OTHER:
        raise InvalidInput(
            "A device registered with a gateway sends readings: give its monitoring type.",
            field="device_type",
        )
    if session.scalar(
        select(Device.id).where(Device.serial == data.serial, Device.gateway_id.is_not(None))
    ):
        raise Conflict(f"A device with serial {data.serial!r} exists.", field="serial")
    device = Device(
        institution_id=gateway.institution_id,
        gateway_id=gateway.id,
        device_type=data.device_type,
        model=data.model,
        serial=data.serial,
        active=True,
    )
    session.add(device)
    _flush_unique(session, f"A device with serial {data.serial!r} exists.", "serial")
    audit.record(
        session,
        actor,
        action="create",
        resource_type="Device",
        resource_id=device.id,
        detail={"serial": device.serial, "type": str(device.device_type)},
    )
    return device


def list_devices(
    session: Session, actor: Actor, *, gateway_id: uuid.UUID | None, page: PageRequest
) -> PageResult[Device]:
    _require(actor, Permission.REGISTRY_READ)
    query = select(Device)
    if not actor.can(Permission.ALLIANCE_MANAGE):
        query = query.where(Device.institution_id == actor.institution_id)
    if gateway_id is not None:
        query = query.where(Device.gateway_id == gateway_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Device.serial).limit(page.limit).offset(page.offset))
    return PageResult(items=list(rows), total=total)


# --- assignments -------------------------------------------------------------------------


def _overlaps(
    session: Session, device_id: uuid.UUID, start: datetime, end: datetime | None
) -> bool:
    query = select(DeviceAssignment.id).where(
        DeviceAssignment.device_id == device_id,
        or_(DeviceAssignment.end.is_(None), DeviceAssignment.end > start),
    )
    if end is not None:
        query = query.where(DeviceAssignment.start < end)
    return session.scalar(query.limit(1)) is not None


def assign_device(
    *,
    session: Session,
    actor: Actor,
    device_id: uuid.UUID,
    data: schemas.AssignmentCreate,
) -> DeviceAssignment:
    device = session.get(Device, device_id)
    if device is None or (device.institution_id != actor.institution_id):
        raise NotFound(f"No device {device_id} at your institution.")
    record_id = patients_service.local_record_for_write(
        session, actor, data.patient_id, "DeviceAssignment"
    ).id
    if not device.active:
        raise Conflict("The device is retired.", field="device_id")
    if _overlaps(session, device.id, data.start, data.end):
        raise Conflict(
            "The device is assigned to a patient in that period; end that assignment first.",
            field="start",
        )
    responsible = data.responsible_user_id or actor.user_id
    if data.responsible_user_id is not None:
        user = session.get(User, data.responsible_user_id)
        if user is None or user.institution_id != actor.institution_id or not user.active:
            raise InvalidInput(
                "The responsible user must be an active account of your institution.",
                field="responsible_user_id",
            )
    assignment = DeviceAssignment(
        device_id=device.id,
        patient_record_id=record_id,
        institution_id=device.institution_id,
        start=data.start,
        end=data.end,
        responsible_user_id=responsible,
        assigned_by=actor.user_id,
    )
    session.add(assignment)
    session.flush()
    return assignment


def end_assignment(
    *, session: Session, actor: Actor, assignment_id: uuid.UUID, end: datetime
) -> DeviceAssignment:
    assignment = session.get(DeviceAssignment, assignment_id)
    if assignment is None:
        raise NotFound(f"No assignment {assignment_id}.")
    person_id = patients_service.person_of_record(session, assignment.patient_record_id)
    assert person_id is not None
    policy.enforce(
        session,
        actor,
        patients_service.facts_or_404(session, person_id),
        policy.AccessAction.WRITE,
        resource_type="DeviceAssignment",
        resource_id=assignment_id,
        audit_action="update",
        owner_institution_id=assignment.institution_id,
    )
    if end <= assignment.start:
        raise InvalidInput("end must be after the assignment's start", field="end")
    if assignment.end is not None and assignment.end <= end:
        raise Conflict("The assignment has already ended.", field="end")
    assignment.end = end
    session.flush()
    return assignment


# --- thresholds ------------------------------------------------------------------------

# Which rules take a second number, and what it means.
_SECOND = {
    AlertRule.HYPERTENSIVE_CRISIS: "diastolic mmHg",
    AlertRule.HYPERTENSIVE_URGENCY: "diastolic mmHg",
    AlertRule.HF_WEIGHT_GAIN: "window in days",
}


def thresholds(session: Session, actor: Actor, person_id: uuid.UUID) -> list[schemas.ThresholdRead]:
    policy.enforce(
        session,
        actor,
        patients_service.facts_or_404(session, person_id),
        policy.AccessAction.READ,
        resource_type="MonitoringThreshold",
        resource_id=person_id,
    )
    overrides: dict[AlertRule, ThresholdOverride] = {}
    if actor.institution_id is not None:
        record = patients_service.local_record(session, person_id, actor.institution_id)
        if record is not None:
            overrides = {
                o.rule: o
                for o in session.scalars(
                    select(ThresholdOverride).where(
                        ThresholdOverride.patient_record_id == record.id
                    )
                )
            }
    return [
        schemas.ThresholdRead(
            rule=d.rule,
            severity=d.severity,
            title=d.title,
            default_threshold=d.threshold,
            default_second_threshold=d.second_threshold,
            default_criterion=d.criterion,
            source=d.source,
            override=(
                None
                if d.rule not in overrides
                else schemas.OverrideRead.model_validate(overrides[d.rule])
            ),
        )
        for d in DEFAULTS.values()
    ]


def set_threshold(
    *,
    session: Session,
    actor: Actor,
    person_id: uuid.UUID,
    rule: AlertRule,
    data: schemas.OverrideSet,
) -> ThresholdOverride:
    """A clinician's per-patient threshold (audited with the old and new values)."""
    _require(actor, Permission.MONITORING_THRESHOLDS)
    if data.second_threshold is not None and rule not in _SECOND:
        raise InvalidInput(f"{rule} takes a single threshold", field="second_threshold")
    if rule is AlertRule.HF_WEIGHT_GAIN and (data.second_threshold or 3) > 31:
        raise InvalidInput("the weight-gain window is at most 31 days", field="second_threshold")
    record_id = patients_service.local_record_for_write(
        session, actor, person_id, "MonitoringThreshold"
    ).id
    assert actor.institution_id is not None
    existing = session.scalar(
        select(ThresholdOverride).where(
            ThresholdOverride.patient_record_id == record_id, ThresholdOverride.rule == rule
        )
    )
    before = None if existing is None else (existing.threshold, existing.second_threshold)
    if existing is None:
        existing = ThresholdOverride(
            patient_record_id=record_id, institution_id=actor.institution_id, rule=rule
        )
        session.add(existing)
    existing.threshold = data.threshold
    existing.second_threshold = data.second_threshold
    existing.reason = data.reason
    existing.set_by = actor.user_id
    session.flush()
    audit.record(
        session,
        actor,
        action="update" if before else "create",
        resource_type="MonitoringThreshold",
        resource_id=existing.id,
        patient_id=person_id,
        reason=data.reason,
        detail={
            "rule": str(rule),
            "before": None if before is None else list(before),
            "after": [data.threshold, data.second_threshold],
            "default": DEFAULTS[rule].criterion,
        },
    )
    return existing


def clear_threshold(
    *, session: Session, actor: Actor, person_id: uuid.UUID, rule: AlertRule
) -> None:
    _require(actor, Permission.MONITORING_THRESHOLDS)
    record_id = patients_service.local_record_for_write(
        session, actor, person_id, "MonitoringThreshold"
    ).id
    existing = session.scalar(
        select(ThresholdOverride).where(
            ThresholdOverride.patient_record_id == record_id, ThresholdOverride.rule == rule
        )
    )
    if existing is None:
        raise NotFound(f"No override of {rule} for this patient.")
    audit.record(
        session,
        actor,
        action="delete",
        resource_type="MonitoringThreshold",
        resource_id=existing.id,
        patient_id=person_id,
        detail={"rule": str(rule), "before": [existing.threshold, existing.second_threshold]},
    )
    session.delete(existing)
    session.flush()


# --- readings --------------------------------------------------------------------------


def patient_readings(
    session: Session,
    actor: Actor,
    person_id: uuid.UUID,
    *,
    measurement: MeasurementType | None,
    since: datetime | None,
    until: datetime | None,
    page: PageRequest,
) -> PageResult[Reading]:
    """The patient's readings from every member the policy lets the actor see."""
    facts = patients_service.facts_or_404(session, person_id)
    policy.enforce(
        session,
        actor,
        facts,
        policy.AccessAction.READ,
        resource_type="Observation",
        resource_id=person_id,
        audit_action="search",
    )
    visible = [
        institution_id
        for institution_id in facts.institution_ids
        if policy.decide(
            session,
            actor,
            facts,
            policy.AccessAction.READ,
            owner_institution_id=institution_id,
        ).allowed
    ]
    query = select(Reading).where(
        Reading.patient_record_id.in_(patients_service.record_ids_query(person_id)),
        Reading.institution_id.in_(visible),
    )
    if measurement is not None:
        query = query.where(Reading.measurement == measurement)
    if since is not None:
        query = query.where(Reading.measured_at >= since)
    if until is not None:
        query = query.where(Reading.measured_at < until)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Reading.measured_at.desc()).limit(page.limit).offset(page.offset)
    )
    return PageResult(items=list(rows), total=total)


def dead_letters(
    session: Session, actor: Actor, *, gateway_code: str | None, page: PageRequest
) -> PageResult[DeadLetter]:
    """What the MQTT worker could not store, newest first (for the operators)."""
    _require(actor, Permission.JOBS_MANAGE)
    query = select(DeadLetter)
    if gateway_code is not None:
        query = query.where(DeadLetter.gateway_code == gateway_code)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(DeadLetter.received_at.desc()).limit(page.limit).offset(page.offset)
    )
    audit.record(session, actor, action="search", resource_type="MonitoringDeadLetter", detail={})
    return PageResult(items=list(rows), total=total)
