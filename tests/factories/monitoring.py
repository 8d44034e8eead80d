"""Monitoring factories: a gateway with its account, a device, an assignment."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from medalliance.access.models import User
from medalliance.domains.alliance.models import Institution
from medalliance.domains.monitoring.catalogue import DeviceType
from medalliance.domains.monitoring.models import Device, DeviceAssignment, DeviceGateway
from medalliance.domains.patients.models import PatientRecord
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role
from tests.factories import current_session
from tests.factories.access import UserFactory


def make_gateway(institution: Institution, *, user: User | None = None) -> DeviceGateway:
    session = current_session()
    if user is None:
        user = UserFactory(role=Role.DEVICE_GATEWAY, institution=institution)
    code = f"gw-{uuid.uuid4().hex[:10]}"
    gateway = DeviceGateway(
        code=code, name=f"Gateway {code}", institution_id=institution.id, user_id=user.id
    )
    session.add(gateway)
    session.flush()
    return gateway


def make_device(
    gateway: DeviceGateway,
    device_type: DeviceType = DeviceType.BP_MONITOR,
    serial: str | None = None,
) -> Device:
    session = current_session()
    device = Device(
        institution_id=gateway.institution_id,
        gateway_id=gateway.id,
        device_type=device_type,
        model="Omron HEM-7136",
        serial=serial or f"SN-{uuid.uuid4().hex[:12]}",
        active=True,
    )
    session.add(device)
    session.flush()
    return device


def assign(
    device: Device,
    record: PatientRecord,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    responsible_user_id: uuid.UUID | None = None,
) -> DeviceAssignment:
    session = current_session()
    assignment = DeviceAssignment(
        device_id=device.id,
        patient_record_id=record.id,
        institution_id=device.institution_id,
        start=start or utcnow() - timedelta(days=60),
        end=end,
        responsible_user_id=responsible_user_id,
    )
    session.add(assignment)
    session.flush()
    return assignment
