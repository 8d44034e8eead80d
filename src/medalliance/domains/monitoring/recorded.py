"""Devices recorded from another system (a FHIR Device: an implant, a wheelchair, a home
meter): kept at the actor's institution with what the record says about them (UDI,
lot, dates, name, status), without a gateway — they send no readings. A device of a
patient is assigned to them from the time it is recorded (the record carries no start):
writing that is a write of the patient's record, so it passes the access policy and is
audited like any other (``patients_service.local_record_for_write``); a device without a
patient is registry data and needs ``registry:manage``, as registering one does."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.access.permissions import Permission
from medalliance.audit import service as audit
from medalliance.domains.monitoring import schemas
from medalliance.domains.monitoring.models import Device, DeviceAssignment
from medalliance.domains.monitoring.service import _require
from medalliance.domains.patients import service as patients_service
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import Conflict, InvalidInput


def record_device(*, session: Session, actor: Actor, data: schemas.DeviceRecord) -> Device:
    record_id = None
    if data.patient_id is not None:
        record_id = patients_service.local_record_for_write(
            session, actor, data.patient_id, "Device"
        ).id
    else:
        _require(actor, Permission.REGISTRY_MANAGE)
    if actor.institution_id is None:
        raise InvalidInput("A recorded device belongs to an institution: act for one.")
    # The same device recorded twice at one member is a duplicate; another member may
    # record it too (its own record of the patient's implant).
    if data.serial is not None and session.scalar(
        select(Device.id).where(
            Device.serial == data.serial,
            Device.institution_id == actor.institution_id,
            Device.udi_di.is_(None) if data.udi_di is None else Device.udi_di == data.udi_di,
        )
    ):
        raise Conflict(
            f"Your institution has recorded the device with serial {data.serial!r}.",
            field="serial",
        )
    device = Device(
        institution_id=actor.institution_id,
        gateway_id=None,
        device_type=data.device_type,
        model=data.model,
        serial=data.serial,
        active=data.status in (None, "active"),
        status=data.status,
        name=data.name,
        udi_di=data.udi_di,
        udi_carrier=data.udi_carrier,
        lot_number=data.lot_number,
        manufactured_at=data.manufactured_at,
        expires_at=data.expires_at,
    )
    session.add(device)
    session.flush()
    if record_id is not None:
        # no responsible user: a recorded device raises no alerts
        session.add(
            DeviceAssignment(
                device_id=device.id,
                patient_record_id=record_id,
                institution_id=device.institution_id,
                start=utcnow(),
                end=None,
                responsible_user_id=None,
                assigned_by=actor.user_id,
            )
        )
        session.flush()
    audit.record(
        session,
        actor,
        action="create",
        resource_type="Device",
        resource_id=device.id,
        patient_id=data.patient_id,
        detail={
            "recorded": True,
            "serial": device.serial,
            "type": str(device.device_type),
            "udi_di": device.udi_di,
        },
    )
    return device
