"""Registry use cases. Writes are administrative changes and are audited."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medalliance.access.permissions import Permission
from medalliance.audit import service as audit
from medalliance.domains.alliance import lifecycle, schemas
from medalliance.domains.alliance.models import (
    Alliance,
    Bed,
    BedStatus,
    Department,
    Institution,
    InstitutionType,
    Practitioner,
    SharingDefault,
    Tier,
)
from medalliance.kernel.actor import Actor
from medalliance.kernel.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from medalliance.kernel.pagination import PageRequest, PageResult

T = TypeVar("T")


def _require(actor: Actor, permission: Permission) -> None:
    if not actor.can(permission):
        raise PermissionDenied(f"Role {actor.role} lacks permission {permission}.")


def _require_manage(actor: Actor, institution_id: uuid.UUID) -> None:
    """Alliance admins manage every member; institution admins only their own."""
    _require(actor, Permission.REGISTRY_MANAGE)
    if actor.can(Permission.ALLIANCE_MANAGE):
        return
    if actor.institution_id != institution_id:
        raise PermissionDenied("You can only manage your own institution.")


def _audit_change(
    session: Session, actor: Actor, action: str, resource_type: str, rid: uuid.UUID, changes: Any
) -> None:
    audit.record(
        session,
        actor,
        action=action,
        resource_type=resource_type,
        resource_id=rid,
        detail={"changes": {k: str(v) for k, v in changes.items()}},
    )


def _flush_unique(session: Session, message: str) -> None:
    """Translate a unique-constraint race into 409 (the pre-check covers the usual case)."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise Conflict(message) from exc


# --- alliances ------------------------------------------------------------------------


def list_alliances(session: Session, actor: Actor) -> list[Alliance]:
    _require(actor, Permission.REGISTRY_READ)
    return list(session.scalars(select(Alliance).order_by(Alliance.code)).all())


def get_alliance(session: Session, actor: Actor, alliance_id: uuid.UUID) -> Alliance:
    _require(actor, Permission.REGISTRY_READ)
    alliance = session.get(Alliance, alliance_id)
    if alliance is None:
        raise NotFound(f"No alliance {alliance_id}.")
    return alliance


def create_alliance(*, session: Session, actor: Actor, data: schemas.AllianceCreate) -> Alliance:
    _require(actor, Permission.ALLIANCE_MANAGE)
    if session.scalar(select(Alliance.id).where(Alliance.code == data.code)) is not None:
        raise Conflict(f"An alliance with code {data.code!r} already exists.", field="code")
    alliance = Alliance(**data.model_dump())
    session.add(alliance)
    _flush_unique(session, f"An alliance with code {data.code!r} already exists.")
    _audit_change(session, actor, "create", "Alliance", alliance.id, data.model_dump())
    return alliance


def update_alliance(
    *, session: Session, actor: Actor, alliance_id: uuid.UUID, data: schemas.AllianceUpdate
) -> Alliance:
    _require(actor, Permission.ALLIANCE_MANAGE)
    alliance = get_alliance(session, actor, alliance_id)
    changes = data.model_dump(exclude_unset=True)
    for key, value in changes.items():
        setattr(alliance, key, value)
    session.flush()
    _audit_change(session, actor, "update", "Alliance", alliance.id, changes)
    return alliance


# --- institutions ---------------------------------------------------------------------


def list_institutions(
    session: Session,
    actor: Actor,
    *,
    tier: Tier | None = None,
    type_: InstitutionType | None = None,
    district: str | None = None,
    lead_code: str | None = None,
    include_inactive: bool = False,
    page: PageRequest,
) -> PageResult[Institution]:
    _require(actor, Permission.REGISTRY_READ)
    query = select(Institution)
    if tier is not None:
        query = query.where(Institution.tier == tier)
    if type_ is not None:
        query = query.where(Institution.type == type_)
    if district is not None:
        query = query.where(Institution.district == district)
    if lead_code is not None:
        lead = get_institution(session, actor, lead_code)
        query = query.where(Institution.lead_institution_id == lead.id)
    if not include_inactive:
        query = query.where(Institution.active.is_(True))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    tier_order = case({"lead": 0, "secondary": 1, "primary": 2}, value=Institution.tier, else_=3)
    rows = session.scalars(
        query.order_by(tier_order, Institution.code).limit(page.limit).offset(page.offset)
    ).all()
    return PageResult(items=list(rows), total=total)


def get_institution(session: Session, actor: Actor, code: str) -> Institution:
    _require(actor, Permission.REGISTRY_READ)
    found = find_institution(session, code)
    if found is None:
        raise NotFound(f"No institution with code {code!r}.")
    return found


def find_institution(session: Session, code: str) -> Institution | None:
    """Lookup for other domains (HL7 MSH-4, FHIR Organization identifiers …)."""
    return session.scalar(select(Institution).where(Institution.code == code))


def institution_by_id(session: Session, institution_id: uuid.UUID) -> Institution | None:
    return session.get(Institution, institution_id)


def _resolve_lead(session: Session, code: str | None) -> Institution | None:
    if code is None:
        return None
    lead = find_institution(session, code)
    if lead is None:
        raise InvalidInput(f"No institution with code {code!r}.", field="lead_institution_code")
    lifecycle.require_active_institution(lead, field="lead_institution_code")
    return lead


def create_institution(
    *, session: Session, actor: Actor, data: schemas.InstitutionCreate
) -> Institution:
    (institution,) = _one_of(create_institutions, session, actor, data)
    return institution


def _resolve_alliance(session: Session, code: str | None, lead: Institution | None) -> Alliance:
    if code is not None:
        alliance = session.scalar(select(Alliance).where(Alliance.code == code))
        if alliance is None:
            raise InvalidInput(f"No alliance with code {code!r}.", field="alliance_code")
        return alliance
    if lead is not None:
        found = session.get(Alliance, lead.alliance_id)
        assert found is not None
        return found
    alliances = session.scalars(select(Alliance).limit(2)).all()
    if len(alliances) != 1:
        raise InvalidInput("Name the alliance (alliance_code).", field="alliance_code")
    return alliances[0]


def update_institution(
    *, session: Session, actor: Actor, code: str, data: schemas.InstitutionUpdate
) -> Institution:
    institution = get_institution(session, actor, code)
    _require_manage(actor, institution.id)
    changes = data.model_dump(exclude_unset=True)
    structural = {"tier", "type", "lead_institution_code", "active"} & changes.keys()
    if structural and not actor.can(Permission.ALLIANCE_MANAGE):
        raise PermissionDenied(
            f"Only an alliance administrator may change {', '.join(sorted(structural))}."
        )
    if "lead_institution_code" in changes:
        lead = _resolve_lead(session, changes.pop("lead_institution_code"))
        if lead is not None and lead.id == institution.id:
            raise InvalidInput("An institution cannot lead itself.", field="lead_institution_code")
        institution.lead_institution_id = None if lead is None else lead.id
    if changes.get("active") is False and institution.active:
        lifecycle.check_institution_can_close(session, institution)
    if changes.get("active") is True and not institution.active:
        lifecycle.check_institution_can_reopen(session, institution)
    for key, value in changes.items():
        setattr(institution, key, value)
    session.flush()
    _audit_change(
        session, actor, "update", "Institution", institution.id, data.model_dump(exclude_unset=True)
    )
    return institution


def set_institution_active(
    *, session: Session, actor: Actor, code: str, active: bool
) -> Institution:
    """Deactivate a member institution (it stays in the registry and in every record
    that names it, but nothing new is assigned to it) or reactivate it. An alliance
    administrator's change; refused while it still leads active members."""
    institution = get_institution(session, actor, code)
    _require(actor, Permission.ALLIANCE_MANAGE)
    _switch_active(
        session,
        actor,
        institution,
        active,
        "Institution",
        lifecycle.check_institution_can_reopen,
        lifecycle.check_institution_can_close,
    )
    return institution


def _switch_active(
    session: Session,
    actor: Actor,
    entry: Institution | Department,
    active: bool,
    kind: str,
    can_reopen: Callable[[Session, Any], None],
    can_close: Callable[[Session, Any], None],
) -> None:
    """Deactivate or reactivate a registry entry, once its lifecycle check allowed it;
    audited as ``deactivate`` / ``reactivate``."""
    if entry.active == active:
        state = "active" if active else "deactivated"
        raise Conflict(
            f"{kind} {entry.code!r} is already {state}.",
            field="active",
            reason=f"already-{state}",
        )
    (can_reopen if active else can_close)(session, entry)
    entry.active = active
    session.flush()
    audit.record(
        session,
        actor,
        action="reactivate" if active else "deactivate",
        resource_type=kind,
        resource_id=entry.id,
        detail={"code": entry.code},
    )


# --- departments ----------------------------------------------------------------------


def list_departments(
    session: Session, actor: Actor, institution_code: str, *, active_only: bool = False
) -> list[Department]:
    """An institution's departments; ``active_only`` for lists that assign to one."""
    institution = get_institution(session, actor, institution_code)
    query = select(Department).where(Department.institution_id == institution.id)
    if active_only:
        query = query.where(Department.active.is_(True))
    return list(session.scalars(query.order_by(Department.code)).all())


def get_department(session: Session, actor: Actor, department_id: uuid.UUID) -> Department:
    _require(actor, Permission.REGISTRY_READ)
    department = session.get(Department, department_id)
    if department is None:
        raise NotFound(f"No department {department_id}.")
    return department


def create_department(
    *, session: Session, actor: Actor, institution_code: str, data: schemas.DepartmentCreate
) -> Department:
    institution = get_institution(session, actor, institution_code)
    _require_manage(actor, institution.id)
    lifecycle.require_active_institution(institution)
    duplicate = session.scalar(
        select(Department.id).where(
            Department.institution_id == institution.id, Department.code == data.code
        )
    )
    message = f"Department {data.code!r} already exists at {institution_code}."
    if duplicate is not None:
        raise Conflict(message, field="code")
    department = Department(**data.model_dump(), institution_id=institution.id, active=True)
    session.add(department)
    _flush_unique(session, message)
    _audit_change(session, actor, "create", "Department", department.id, data.model_dump())
    return department


def update_department(
    *, session: Session, actor: Actor, department_id: uuid.UUID, data: schemas.DepartmentUpdate
) -> Department:
    department = get_department(session, actor, department_id)
    _require_manage(actor, department.institution_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("active") is False and department.active:
        lifecycle.check_department_can_close(session, department)
    if changes.get("active") is True and not department.active:
        lifecycle.check_department_can_reopen(session, department)
    for key, value in changes.items():
        setattr(department, key, value)
    session.flush()
    _audit_change(session, actor, "update", "Department", department.id, changes)
    return department


def set_department_active(
    *, session: Session, actor: Actor, department_id: uuid.UUID, active: bool
) -> Department:
    """Deactivate a department (kept with its history; no new practitioners or beds,
    and it leaves the bed availability) or reactivate it. Refused while a bed of it is
    occupied, and reactivation while its institution is deactivated."""
    department = get_department(session, actor, department_id)
    _require_manage(actor, department.institution_id)
    _switch_active(
        session,
        actor,
        department,
        active,
        "Department",
        lifecycle.check_department_can_reopen,
        lifecycle.check_department_can_close,
    )
    return department


# --- practitioners --------------------------------------------------------------------


def list_practitioners(
    session: Session,
    actor: Actor,
    *,
    institution_code: str | None,
    department_id: uuid.UUID | None,
    page: PageRequest,
) -> PageResult[Practitioner]:
    _require(actor, Permission.REGISTRY_READ)
    query = select(Practitioner)
    if institution_code is not None:
        institution = get_institution(session, actor, institution_code)
        query = query.where(Practitioner.institution_id == institution.id)
    if department_id is not None:
        query = query.where(Practitioner.department_id == department_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Practitioner.name, Practitioner.id).limit(page.limit).offset(page.offset)
    ).all()
    audit.record(
        session,
        actor,
        action="search",
        resource_type="Practitioner",
        detail={"institution": institution_code or "", "returned": len(rows)},
    )
    return PageResult(items=list(rows), total=total)


def get_practitioner(session: Session, actor: Actor, practitioner_id: uuid.UUID) -> Practitioner:
    """A practitioner record holds personal data (licence number): reads are audited."""
    _require(actor, Permission.REGISTRY_READ)
    practitioner = session.get(Practitioner, practitioner_id)
    if practitioner is None:
        raise NotFound(f"No practitioner {practitioner_id}.")
    audit.record(
        session, actor, action="read", resource_type="Practitioner", resource_id=practitioner.id
    )
    return practitioner


def _check_department(
    session: Session, department_id: uuid.UUID | None, institution_id: uuid.UUID
) -> None:
    if department_id is None:
        return
    department = session.get(Department, department_id)
    if department is None or department.institution_id != institution_id:
        raise InvalidInput("The department is not part of this institution.", field="department_id")
    lifecycle.require_active_department(department, field="department_id")


def create_practitioner(
    *, session: Session, actor: Actor, data: schemas.PractitionerCreate
) -> Practitioner:
    (practitioner,) = _one_of(create_practitioners, session, actor, data)
    return practitioner


def update_practitioner(
    *, session: Session, actor: Actor, practitioner_id: uuid.UUID, data: schemas.PractitionerUpdate
) -> Practitioner:
    _require(actor, Permission.REGISTRY_MANAGE)
    practitioner = session.get(Practitioner, practitioner_id)
    if practitioner is None:
        raise NotFound(f"No practitioner {practitioner_id}.")
    _require_manage(actor, practitioner.institution_id)
    changes = data.model_dump(exclude_unset=True)
    if "department_id" in changes:
        _check_department(session, changes["department_id"], practitioner.institution_id)
    for key, value in changes.items():
        setattr(practitioner, key, value)
    session.flush()
    _audit_change(session, actor, "update", "Practitioner", practitioner.id, changes)
    return practitioner


# --- beds -----------------------------------------------------------------------------


def list_beds(session: Session, actor: Actor, department_id: uuid.UUID) -> list[Bed]:
    get_department(session, actor, department_id)
    return list(
        session.scalars(select(Bed).where(Bed.department_id == department_id).order_by(Bed.code))
    )


def create_bed(
    *, session: Session, actor: Actor, department_id: uuid.UUID, data: schemas.BedCreate
) -> Bed:
    department = get_department(session, actor, department_id)
    _require_manage(actor, department.institution_id)
    lifecycle.require_active_department(department)
    message = f"Bed {data.code!r} already exists in this department."
    if session.scalar(
        select(Bed.id).where(Bed.department_id == department_id, Bed.code == data.code)
    ):
        raise Conflict(message, field="code")
    bed = Bed(department_id=department_id, code=data.code, status=data.status, version=1)
    session.add(bed)
    _flush_unique(session, message)
    _audit_change(session, actor, "create", "Bed", bed.id, data.model_dump())
    return bed


def set_bed_status(
    *, session: Session, actor: Actor, bed_id: uuid.UUID, data: schemas.BedStatusUpdate
) -> Bed:
    _require(actor, Permission.BEDS_UPDATE)
    # Lock the row: two changes from the same version must not both pass the check.
    bed = session.get(Bed, bed_id, with_for_update=True)
    if bed is None:
        raise NotFound(f"No bed {bed_id}.")
    department = session.get(Department, bed.department_id)
    assert department is not None
    if (
        not actor.can(Permission.ALLIANCE_MANAGE)
        and actor.institution_id != department.institution_id
    ):
        raise PermissionDenied("You can only change beds of your own institution.")
    if data.expected_version is not None and data.expected_version != bed.version:
        raise Conflict(
            f"The bed changed meanwhile (version {bed.version}, you expected "
            f"{data.expected_version}); reload and try again."
        )
    previous = bed.status
    bed.status, bed.version = data.status, bed.version + 1
    session.flush()
    _audit_change(session, actor, "update", "Bed", bed.id, {"status": f"{previous}->{data.status}"})
    return bed


def bed_availability(
    session: Session, actor: Actor, *, institution_code: str | None = None
) -> list[schemas.BedAvailability]:
    """Beds by status per department, for referrals and admissions."""
    _require(actor, Permission.REGISTRY_READ)
    counts = {status: func.sum(case((Bed.status == status, 1), else_=0)) for status in BedStatus}
    query = (
        select(
            Institution.code,
            Department.id,
            Department.code,
            Department.name_zh,
            Department.name_en,
            *counts.values(),
            func.count(Bed.id),
        )
        .join(Department, Department.institution_id == Institution.id)
        .join(Bed, Bed.department_id == Department.id)
        .where(Institution.active.is_(True), Department.active.is_(True))
        .group_by(
            Institution.code, Department.id, Department.code, Department.name_zh, Department.name_en
        )
        .order_by(Institution.code, Department.code)
    )
    if institution_code is not None:
        get_institution(session, actor, institution_code)
        query = query.where(Institution.code == institution_code)
    result: list[schemas.BedAvailability] = []
    for row in session.execute(query).all():
        result.append(
            schemas.BedAvailability(
                institution_code=row[0],
                department_id=row[1],
                department_code=row[2],
                department_name_zh=row[3],
                department_name_en=row[4],
                free=int(row[5] or 0),
                occupied=int(row[6] or 0),
                cleaning=int(row[7] or 0),
                closed=int(row[8] or 0),
                total=int(row[9] or 0),
            )
        )
    return result


def institution_codes(session: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = session.execute(select(Institution.id, Institution.code).where(Institution.id.in_(ids)))
    return {row[0]: row[1] for row in rows}


def sharing_default_for(session: Session, institution_id: uuid.UUID) -> SharingDefault:
    """The alliance's default for patients' sharing consent (used by the patients domain)."""
    alliance_id = session.scalar(
        select(Institution.alliance_id).where(Institution.id == institution_id)
    )
    alliance = None if alliance_id is None else session.get(Alliance, alliance_id)
    return SharingDefault.OPT_IN if alliance is None else alliance.sharing_default


def department_institution(session: Session, department_id: uuid.UUID) -> uuid.UUID | None:
    """Which institution a department belongs to (for other domains' checks)."""
    return session.scalar(select(Department.institution_id).where(Department.id == department_id))


def practitioner_institution(session: Session, practitioner_id: uuid.UUID) -> uuid.UUID | None:
    return session.scalar(
        select(Practitioner.institution_id).where(Practitioner.id == practitioner_id)
    )


def institutions_by_id(session: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Institution]:
    if not ids:
        return {}
    return {i.id: i for i in session.scalars(select(Institution).where(Institution.id.in_(ids)))}


# --- many at once (imports) -----------------------------------------------------------


def create_institutions(
    *, session: Session, actor: Actor, data: Sequence[schemas.InstitutionCreate]
) -> list[Institution]:
    """``create_institution`` for many members, all or none, in a few statements (the
    hospitals of an import). A bad one raises with ``extra['index']`` naming it."""
    _require(actor, Permission.ALLIANCE_MANAGE)
    if not data:
        return []
    codes = [d.code for d in data]
    taken = set(session.scalars(select(Institution.code).where(Institution.code.in_(codes))))
    leads = {
        i.code: i
        for i in session.scalars(
            select(Institution).where(
                Institution.code.in_({d.lead_institution_code for d in data} - {None})
            )
        )
    }
    alliances: dict[tuple[str | None, uuid.UUID | None], Alliance] = {}
    institutions = []
    for index, d in enumerate(data):
        if d.code in taken:
            raise Conflict(
                f"An institution with code {d.code!r} already exists.", field="code", index=index
            )
        taken.add(d.code)
        lead = None
        if d.lead_institution_code is not None:
            lead = leads.get(d.lead_institution_code)
            if lead is None:
                raise InvalidInput(
                    f"No institution with code {d.lead_institution_code!r}.",
                    field="lead_institution_code",
                    index=index,
                )
            _with_index(index, lifecycle.require_active_institution, lead, "lead_institution_code")
        key = (d.alliance_code, None if lead is None else lead.id)
        if key not in alliances:
            alliances[key] = _resolve_alliance(session, d.alliance_code, lead)
        alliance = alliances[key]
        if lead is not None and lead.alliance_id != alliance.id:
            raise InvalidInput(
                "The lead institution belongs to another alliance.",
                field="lead_institution_code",
                index=index,
            )
        institutions.append(
            Institution(
                **d.model_dump(exclude={"lead_institution_code", "alliance_code"}),
                alliance_id=alliance.id,
                lead_institution_id=None if lead is None else lead.id,
                active=True,
            )
        )
    session.add_all(institutions)
    _flush_unique(session, "An institution with one of these codes already exists.")
    for institution, d in zip(institutions, data, strict=True):
        _audit_change(session, actor, "create", "Institution", institution.id, d.model_dump())
    return institutions


def create_practitioners(
    *, session: Session, actor: Actor, data: Sequence[schemas.PractitionerCreate]
) -> list[Practitioner]:
    """``create_practitioner`` for many, all or none, in a few statements (the
    practitioners of an import). A bad one raises with ``extra['index']`` naming it."""
    _require(actor, Permission.REGISTRY_READ)
    if not data:
        return []
    institutions = {
        i.code: i
        for i in session.scalars(
            select(Institution).where(Institution.code.in_({d.institution_code for d in data}))
        )
    }
    licences = [d.licence_number for d in data]
    taken = set(
        session.scalars(
            select(Practitioner.licence_number).where(Practitioner.licence_number.in_(licences))
        )
    )
    checked: set[tuple[uuid.UUID, uuid.UUID | None]] = set()
    practitioners = []
    for index, d in enumerate(data):
        institution = institutions.get(d.institution_code)
        if institution is None:
            raise InvalidInput(
                f"No institution with code {d.institution_code!r}.",
                field="institution_code",
                index=index,
            )
        if (institution.id, d.department_id) not in checked:
            _require_manage(actor, institution.id)
            _with_index(
                index, lifecycle.require_active_institution, institution, "institution_code"
            )
            _with_index(index, _check_department, session, d.department_id, institution.id)
            checked.add((institution.id, d.department_id))
        if d.licence_number in taken:
            raise Conflict(
                f"A practitioner with licence number {d.licence_number!r} already exists.",
                field="licence_number",
                index=index,
            )
        taken.add(d.licence_number)
        practitioners.append(
            Practitioner(
                **d.model_dump(exclude={"institution_code"}),
                institution_id=institution.id,
                active=True,
            )
        )
    session.add_all(practitioners)
    _flush_unique(session, "A practitioner with one of these licence numbers already exists.")
    for practitioner, d in zip(practitioners, data, strict=True):
        _audit_change(session, actor, "create", "Practitioner", practitioner.id, d.model_dump())
    return practitioners


def _one_of(
    create_many: Callable[..., list[T]], session: Session, actor: Actor, data: Any
) -> list[T]:
    """A single create through its batch form; its errors name no batch index."""
    try:
        return create_many(session=session, actor=actor, data=[data])
    except DomainError as exc:
        exc.extra.pop("index", None)
        raise


def _with_index(index: int, check: Callable[..., None], *args: Any) -> None:
    """A check of one item of a batch; its refusal names the item."""
    try:
        check(*args)
    except DomainError as exc:
        exc.extra["index"] = index
        raise


def create_departments(
    *, session: Session, actor: Actor, data: Sequence[schemas.DepartmentCreateAt]
) -> list[Department]:
    """``create_department`` for many, at any members the actor manages, all or none, in
    a few statements (the Locations of an import). A bad one raises with
    ``extra['index']`` naming it."""
    _require(actor, Permission.REGISTRY_MANAGE)
    if not data:
        return []
    institutions = institutions_by_id(session, list({d.institution_id for d in data}))
    taken = {
        (row[0], row[1])
        for row in session.execute(
            select(Department.institution_id, Department.code).where(
                Department.institution_id.in_(list(institutions)),
                Department.code.in_({d.code for d in data}),
            )
        )
    }
    checked: set[uuid.UUID] = set()
    departments = []
    for index, d in enumerate(data):
        institution = institutions.get(d.institution_id)
        if institution is None:
            raise InvalidInput(
                f"No institution {d.institution_id}.", field="institution_id", index=index
            )
        if institution.id not in checked:
            _with_index(index, _require_manage, actor, institution.id)
            _with_index(index, lifecycle.require_active_institution, institution, "institution_id")
            checked.add(institution.id)
        if (institution.id, d.code) in taken:
            raise Conflict(
                f"Department {d.code!r} already exists at {institution.code}.",
                field="code",
                index=index,
            )
        taken.add((institution.id, d.code))
        departments.append(Department(**d.model_dump()))
    session.add_all(departments)
    _flush_unique(session, "A department with one of these codes already exists.")
    for department, d in zip(departments, data, strict=True):
        _audit_change(session, actor, "create", "Department", department.id, d.model_dump())
    return departments


def assign_practitioners(
    *, session: Session, actor: Actor, data: Sequence[schemas.PractitionerAssignment]
) -> list[Practitioner]:
    """Set where practitioners work (their one role), all or none: institution,
    department (which must be an active one of that institution) and, where given,
    title, discipline, specialty. Moving a practitioner to another member needs the
    right to manage both (an alliance admin); the new member must be active. Audited as
    an update with the changes (old->new). A bad one raises with ``extra['index']``."""
    _require(actor, Permission.REGISTRY_MANAGE)
    if not data:
        return []
    practitioners = {
        p.id: p
        for p in session.scalars(
            select(Practitioner).where(Practitioner.id.in_({d.practitioner_id for d in data}))
        )
    }
    institutions = institutions_by_id(session, list({d.institution_id for d in data}))
    department_ids = {d.department_id for d in data} - {None}
    departments = {
        d.id: d
        for d in session.scalars(select(Department).where(Department.id.in_(department_ids)))
    }
    out = []
    for index, d in enumerate(data):
        practitioner = practitioners.get(d.practitioner_id)
        if practitioner is None:
            raise NotFound(
                f"No practitioner {d.practitioner_id}.", field="practitioner_id", index=index
            )
        institution = institutions.get(d.institution_id)
        if institution is None:
            raise InvalidInput(
                f"No institution {d.institution_id}.", field="institution_id", index=index
            )
        _with_index(index, _require_manage, actor, practitioner.institution_id)
        if institution.id != practitioner.institution_id:
            _with_index(index, _require_manage, actor, institution.id)
            _with_index(index, lifecycle.require_active_institution, institution, "institution_id")
        if d.department_id is not None:
            department = departments.get(d.department_id)
            if department is None or department.institution_id != institution.id:
                raise InvalidInput(
                    "The department is not part of this institution.",
                    field="department_id",
                    index=index,
                )
            _with_index(index, lifecycle.require_active_department, department, "department_id")
        wanted = d.model_dump(exclude={"practitioner_id"}, exclude_none=True)
        wanted["department_id"] = d.department_id
        changes = {}
        for key, value in wanted.items():
            old = getattr(practitioner, key)
            if old != value:
                changes[key] = f"{old}->{value}"
                setattr(practitioner, key, value)
        _audit_change(session, actor, "update", "Practitioner", practitioner.id, changes)
        out.append(practitioner)
    session.flush()
    return out
