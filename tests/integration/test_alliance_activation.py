"""Deactivating and reactivating registry entries at the service level (the JSON API's
PATCH with ``active`` and the web's status buttons go through the same checks)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.access import accounts
from medalliance.access.schemas import UserCreate
from medalliance.audit import service as audit
from medalliance.audit.models import AuditEvent
from medalliance.domains.alliance import schemas
from medalliance.domains.alliance import service as svc
from medalliance.domains.alliance.models import BedStatus, Institution, Tier
from medalliance.kernel.errors import Conflict, InvalidInput, PermissionDenied
from medalliance.kernel.roles import Role
from tests.conftest import actor_for
from tests.factories.alliance import BedFactory, DepartmentFactory, InstitutionFactory


@pytest.fixture
def lead(session: Session) -> Institution:
    institution: Institution = InstitutionFactory(tier=Tier.LEAD)
    return institution


@pytest.fixture
def member(session: Session, lead: Institution) -> Institution:
    institution: Institution = InstitutionFactory(
        alliance_id=lead.alliance_id, tier=Tier.PRIMARY, lead_institution_id=lead.id
    )
    return institution


def test_patch_active_false_on_a_lead_of_active_members_is_refused(
    session: Session, lead: Institution, member: Institution
) -> None:
    admin = actor_for(Role.ALLIANCE_ADMIN)
    with pytest.raises(Conflict) as refused:
        svc.update_institution(
            session=session,
            actor=admin,
            code=lead.code,
            data=schemas.InstitutionUpdate(active=False),
        )
    assert refused.value.extra == {"reason": "leads-active-members", "members": member.code}
    svc.set_institution_active(session=session, actor=admin, code=member.code, active=False)
    svc.set_institution_active(session=session, actor=admin, code=lead.code, active=False)
    assert not lead.active and not member.active
    # The member cannot come back while its lead is closed.
    with pytest.raises(Conflict) as blocked:
        svc.set_institution_active(session=session, actor=admin, code=member.code, active=True)
    assert blocked.value.extra["reason"] == "lead-inactive"
    audit.flush_pending(session)
    actions = session.scalars(
        select(AuditEvent.action).where(AuditEvent.resource_type == "Institution")
    ).all()
    assert list(actions).count("deactivate") == 2


def test_only_an_alliance_admin_deactivates_an_institution(
    session: Session, member: Institution
) -> None:
    own_admin = actor_for(Role.INSTITUTION_ADMIN, institution=member)
    with pytest.raises(PermissionDenied):
        svc.set_institution_active(session=session, actor=own_admin, code=member.code, active=False)
    assert member.active


def test_nothing_new_is_assigned_to_a_deactivated_institution_or_department(
    session: Session, lead: Institution, member: Institution
) -> None:
    admin = actor_for(Role.ALLIANCE_ADMIN)
    ward = DepartmentFactory(institution_id=lead.id)
    svc.set_department_active(session=session, actor=admin, department_id=ward.id, active=False)
    with pytest.raises(InvalidInput) as bed:
        svc.create_bed(
            session=session, actor=admin, department_id=ward.id, data=schemas.BedCreate(code="X1")
        )
    assert bed.value.extra["reason"] == "department-inactive"
    with pytest.raises(InvalidInput) as practitioner:
        svc.create_practitioner(
            session=session,
            actor=admin,
            data=schemas.PractitionerCreate(
                institution_code=lead.code,
                department_id=ward.id,
                name="王医生",
                title="attending_physician",
                discipline="western",
                licence_number="110300000007777",
            ),
        )
    assert practitioner.value.field == "department_id"
    svc.set_institution_active(session=session, actor=admin, code=member.code, active=False)
    with pytest.raises(InvalidInput):
        svc.create_department(
            session=session,
            actor=admin,
            institution_code=member.code,
            data=schemas.DepartmentCreate(
                code="NEW", name_zh="新科", name_en="New", discipline="western"
            ),
        )
    with pytest.raises(InvalidInput) as account:
        accounts.create_user(
            session=session,
            actor=admin,
            data=UserCreate(
                username="dr.closed",
                password="x" * 16,
                role=Role.CLINICIAN,
                institution_code=member.code,
            ),
        )
    assert account.value.field == "institution_code"
    with pytest.raises(InvalidInput) as lead_link:
        svc.update_institution(
            session=session,
            actor=admin,
            code=lead.code,
            data=schemas.InstitutionUpdate(lead_institution_code=member.code),
        )
    assert lead_link.value.field == "lead_institution_code"


def test_a_department_with_an_occupied_bed_cannot_be_closed_by_patch_either(
    session: Session, lead: Institution
) -> None:
    own_admin = actor_for(Role.INSTITUTION_ADMIN, institution=lead)
    ward = DepartmentFactory(institution_id=lead.id)
    BedFactory(department_id=ward.id, status=BedStatus.OCCUPIED)
    with pytest.raises(Conflict) as refused:
        svc.update_department(
            session=session,
            actor=own_admin,
            department_id=ward.id,
            data=schemas.DepartmentUpdate(active=False),
        )
    assert refused.value.extra == {"reason": "occupied-beds", "occupied": 1}
    assert ward.active
    with pytest.raises(Conflict) as again:
        svc.set_department_active(
            session=session, actor=own_admin, department_id=ward.id, active=True
        )
    assert again.value.extra["reason"] == "already-active"
