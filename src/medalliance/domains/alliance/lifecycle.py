"""What activating and deactivating registry entries depends on, and the rule that
nothing new is assigned to a deactivated institution or department.

The service's use cases call these checks (the JSON API's PATCH with ``active`` and the
web's status buttons alike). Each refusal carries a ``reason`` (and the codes it names)
in its ``extra``, so an adapter can say it in the user's language.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.domains.alliance.models import Bed, BedStatus, Department, Institution
from medalliance.kernel.errors import Conflict, InvalidInput


def check_institution_can_close(session: Session, institution: Institution) -> None:
    led = session.scalars(
        select(Institution.code)
        .where(Institution.lead_institution_id == institution.id, Institution.active.is_(True))
        .order_by(Institution.code)
    ).all()
    if led:
        raise Conflict(
            f"Institution {institution.code!r} still leads active members "
            f"({', '.join(led)}); give them another lead institution first.",
            field="active",
            reason="leads-active-members",
            members=", ".join(led),
        )


def check_institution_can_reopen(session: Session, institution: Institution) -> None:
    if institution.lead_institution_id is None:
        return
    lead = session.get(Institution, institution.lead_institution_id)
    if lead is not None and not lead.active:
        raise Conflict(
            f"Its lead institution {lead.code!r} is deactivated; reactivate it or choose "
            "another lead first.",
            field="active",
            reason="lead-inactive",
            registry_code=lead.code,
        )


def require_active_institution(institution: Institution, field: str | None = None) -> None:
    if not institution.active:
        raise InvalidInput(
            f"Institution {institution.code!r} is deactivated: nothing new can be assigned to it.",
            field=field,
            reason="institution-inactive",
            registry_code=institution.code,
        )


def check_department_can_close(session: Session, department: Department) -> None:
    occupied = session.scalar(
        select(func.count())
        .select_from(Bed)
        .where(Bed.department_id == department.id, Bed.status == BedStatus.OCCUPIED)
    )
    if occupied:
        raise Conflict(
            f"Department {department.code!r} has {occupied} occupied bed(s); discharge or "
            "transfer the patients first.",
            field="active",
            reason="occupied-beds",
            occupied=occupied,
        )


def check_department_can_reopen(session: Session, department: Department) -> None:
    institution = session.get(Institution, department.institution_id)
    if institution is not None and not institution.active:
        raise Conflict(
            f"Its institution {institution.code!r} is deactivated; reactivate it first.",
            field="active",
            reason="institution-inactive",
            registry_code=institution.code,
        )


def require_active_department(department: Department, field: str | None = None) -> None:
    if not department.active:
        raise InvalidInput(
            f"Department {department.code!r} is deactivated: nothing new can be assigned to it.",
            field=field,
            reason="department-inactive",
            registry_code=department.code,
        )
