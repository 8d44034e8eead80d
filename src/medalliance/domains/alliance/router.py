"""JSON API of the alliance registry."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession, Page, require
from medalliance.domains.alliance import schemas
from medalliance.domains.alliance import service as svc
from medalliance.domains.alliance.models import InstitutionType, Tier
from medalliance.kernel.actor import Actor

router = APIRouter(prefix="/api", tags=["alliance registry"])

Reader = Annotated[Actor, Depends(require(Permission.REGISTRY_READ))]
Manager = Annotated[Actor, Depends(require(Permission.REGISTRY_MANAGE))]
AllianceAdmin = Annotated[Actor, Depends(require(Permission.ALLIANCE_MANAGE))]
BedKeeper = Annotated[Actor, Depends(require(Permission.BEDS_UPDATE))]


@router.get("/alliances", response_model=list[schemas.AllianceRead])
def list_alliances(session: DbSession, actor: Reader) -> list[schemas.AllianceRead]:
    return [schemas.AllianceRead.model_validate(a) for a in svc.list_alliances(session, actor)]


@router.post("/alliances", response_model=schemas.AllianceRead, status_code=201)
def create_alliance(
    body: schemas.AllianceCreate, session: DbSession, actor: AllianceAdmin
) -> schemas.AllianceRead:
    return schemas.AllianceRead.model_validate(
        svc.create_alliance(session=session, actor=actor, data=body)
    )


@router.get("/alliances/{alliance_id}", response_model=schemas.AllianceRead)
def get_alliance(alliance_id: uuid.UUID, session: DbSession, actor: Reader) -> schemas.AllianceRead:
    return schemas.AllianceRead.model_validate(svc.get_alliance(session, actor, alliance_id))


@router.patch("/alliances/{alliance_id}", response_model=schemas.AllianceRead)
def update_alliance(
    alliance_id: uuid.UUID, body: schemas.AllianceUpdate, session: DbSession, actor: AllianceAdmin
) -> schemas.AllianceRead:
    return schemas.AllianceRead.model_validate(
        svc.update_alliance(session=session, actor=actor, alliance_id=alliance_id, data=body)
    )


@router.get("/institutions", response_model=list[schemas.InstitutionRead])
def list_institutions(
    session: DbSession,
    actor: Reader,
    page: Page,
    response: Response,
    tier: Tier | None = None,
    type: InstitutionType | None = None,
    district: str | None = None,
    lead: str | None = None,
    include_inactive: bool = False,
) -> list[schemas.InstitutionRead]:
    """Member institutions, lead first, then secondary, then primary."""
    result = svc.list_institutions(
        session,
        actor,
        tier=tier,
        type_=type,
        district=district,
        lead_code=lead,
        include_inactive=include_inactive,
        page=page,
    )
    response.headers["X-Total-Count"] = str(result.total)
    return [schemas.InstitutionRead.model_validate(i) for i in result.items]


@router.post("/institutions", response_model=schemas.InstitutionRead, status_code=201)
def create_institution(
    body: schemas.InstitutionCreate, session: DbSession, actor: AllianceAdmin
) -> schemas.InstitutionRead:
    return schemas.InstitutionRead.model_validate(
        svc.create_institution(session=session, actor=actor, data=body)
    )


@router.get("/institutions/{code}", response_model=schemas.InstitutionRead)
def get_institution(code: str, session: DbSession, actor: Reader) -> schemas.InstitutionRead:
    return schemas.InstitutionRead.model_validate(svc.get_institution(session, actor, code))


@router.patch("/institutions/{code}", response_model=schemas.InstitutionRead)
def update_institution(
    code: str, body: schemas.InstitutionUpdate, session: DbSession, actor: Manager
) -> schemas.InstitutionRead:
    return schemas.InstitutionRead.model_validate(
        svc.update_institution(session=session, actor=actor, code=code, data=body)
    )


@router.get("/institutions/{code}/departments", response_model=list[schemas.DepartmentRead])
def list_departments(code: str, session: DbSession, actor: Reader) -> list[schemas.DepartmentRead]:
    return [
        schemas.DepartmentRead.model_validate(d) for d in svc.list_departments(session, actor, code)
    ]


@router.post(
    "/institutions/{code}/departments", response_model=schemas.DepartmentRead, status_code=201
)
def create_department(
    code: str, body: schemas.DepartmentCreate, session: DbSession, actor: Manager
) -> schemas.DepartmentRead:
    return schemas.DepartmentRead.model_validate(
        svc.create_department(session=session, actor=actor, institution_code=code, data=body)
    )


@router.get("/departments/{department_id}", response_model=schemas.DepartmentRead)
def get_department(
    department_id: uuid.UUID, session: DbSession, actor: Reader
) -> schemas.DepartmentRead:
    return schemas.DepartmentRead.model_validate(svc.get_department(session, actor, department_id))


@router.patch("/departments/{department_id}", response_model=schemas.DepartmentRead)
def update_department(
    department_id: uuid.UUID, body: schemas.DepartmentUpdate, session: DbSession, actor: Manager
) -> schemas.DepartmentRead:
    return schemas.DepartmentRead.model_validate(
        svc.update_department(session=session, actor=actor, department_id=department_id, data=body)
    )


@router.get("/practitioners", response_model=list[schemas.PractitionerRead])
def list_practitioners(
    session: DbSession,
    actor: Reader,
    page: Page,
    response: Response,
    institution: str | None = None,
    department_id: uuid.UUID | None = None,
) -> list[schemas.PractitionerRead]:
    result = svc.list_practitioners(
        session, actor, institution_code=institution, department_id=department_id, page=page
    )
    response.headers["X-Total-Count"] = str(result.total)
    return [schemas.PractitionerRead.model_validate(p) for p in result.items]


@router.post("/practitioners", response_model=schemas.PractitionerRead, status_code=201)
def create_practitioner(
    body: schemas.PractitionerCreate, session: DbSession, actor: Manager
) -> schemas.PractitionerRead:
    return schemas.PractitionerRead.model_validate(
        svc.create_practitioner(session=session, actor=actor, data=body)
    )


@router.get("/practitioners/{practitioner_id}", response_model=schemas.PractitionerRead)
def get_practitioner(
    practitioner_id: uuid.UUID, session: DbSession, actor: Reader
) -> schemas.PractitionerRead:
    return schemas.PractitionerRead.model_validate(
        svc.get_practitioner(session, actor, practitioner_id)
    )


@router.patch("/practitioners/{practitioner_id}", response_model=schemas.PractitionerRead)
def update_practitioner(
    practitioner_id: uuid.UUID,
    body: schemas.PractitionerUpdate,
    session: DbSession,
    actor: Manager,
) -> schemas.PractitionerRead:
    return schemas.PractitionerRead.model_validate(
        svc.update_practitioner(
            session=session, actor=actor, practitioner_id=practitioner_id, data=body
        )
    )


@router.get("/departments/{department_id}/beds", response_model=list[schemas.BedRead])
def list_beds(department_id: uuid.UUID, session: DbSession, actor: Reader) -> list[schemas.BedRead]:
    return [schemas.BedRead.model_validate(b) for b in svc.list_beds(session, actor, department_id)]


@router.post("/departments/{department_id}/beds", response_model=schemas.BedRead, status_code=201)
def create_bed(
    department_id: uuid.UUID, body: schemas.BedCreate, session: DbSession, actor: Manager
) -> schemas.BedRead:
    return schemas.BedRead.model_validate(
        svc.create_bed(session=session, actor=actor, department_id=department_id, data=body)
    )


@router.patch("/beds/{bed_id}", response_model=schemas.BedRead)
def set_bed_status(
    bed_id: uuid.UUID, body: schemas.BedStatusUpdate, session: DbSession, actor: BedKeeper
) -> schemas.BedRead:
    return schemas.BedRead.model_validate(
        svc.set_bed_status(session=session, actor=actor, bed_id=bed_id, data=body)
    )


@router.get("/beds/availability", response_model=list[schemas.BedAvailability])
def bed_availability(
    session: DbSession, actor: Reader, institution: str | None = None
) -> list[schemas.BedAvailability]:
    """Beds by status per department across the alliance (or one institution)."""
    return svc.bed_availability(session, actor, institution_code=institution)
