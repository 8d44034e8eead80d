"""JSON API of results and mutual recognition."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession, require
from medalliance.domains.results import catalogue, recognition, schemas, service
from medalliance.kernel.actor import Actor

router = APIRouter(prefix="/api", tags=["results and mutual recognition"])

Reader = Annotated[Actor, Depends(require(Permission.PATIENT_READ))]
Writer = Annotated[Actor, Depends(require(Permission.PATIENT_WRITE))]
RegistryReader = Annotated[Actor, Depends(require(Permission.REGISTRY_READ))]
CatalogueManager = Annotated[Actor, Depends(require(Permission.RESULTS_CATALOGUE_MANAGE))]
ItemCode = Annotated[str, Query(pattern=schemas.ITEM_CODE)]


@router.get("/results/catalogue", response_model=list[schemas.CatalogueItemRead])
def list_catalogue(
    session: DbSession, actor: RegistryReader, on: date | None = None
) -> list[schemas.CatalogueItemRead]:
    """The recognised-item list in force on a day (today by default), with sources."""
    return [
        schemas.CatalogueItemRead.model_validate(i) for i in catalogue.current_items(session, on=on)
    ]


@router.post("/results/catalogue", response_model=schemas.CatalogueItemRead, status_code=201)
def add_catalogue_version(
    body: schemas.CatalogueItemIn, session: DbSession, actor: CatalogueManager
) -> schemas.CatalogueItemRead:
    """A new version of an item (the previous version ends where this one starts)."""
    return schemas.CatalogueItemRead.model_validate(
        catalogue.add_version(session=session, actor=actor, data=body)
    )


@router.get("/results/accreditations", response_model=list[schemas.AccreditationRead])
def list_accreditations(
    session: DbSession,
    actor: RegistryReader,
    institution_code: str | None = None,
    item_code: Annotated[str | None, Query(pattern=schemas.ITEM_CODE)] = None,
) -> list[schemas.AccreditationRead]:
    rows = catalogue.list_accreditations(
        session, institution_code=institution_code, item_code=item_code
    )
    return [schemas.AccreditationRead.model_validate(r) for r in rows]


@router.post("/results/accreditations", response_model=schemas.AccreditationRead, status_code=201)
def add_accreditation(
    body: schemas.AccreditationIn, session: DbSession, actor: CatalogueManager
) -> schemas.AccreditationRead:
    """A member's external quality assessment result for one item, with its period."""
    return schemas.AccreditationRead.model_validate(
        catalogue.add_accreditation(session=session, actor=actor, data=body)
    )


@router.get("/results/repeat-reasons", response_model=list[schemas.RepeatReasonRead])
def repeat_reasons(actor: RegistryReader) -> list[schemas.RepeatReasonRead]:
    """The coded reasons to repeat a recognisable test (R1–R10), with sources."""
    return [
        schemas.RepeatReasonRead(
            code=r.code,
            text_en=r.text_en,
            text_zh=r.text_zh,
            source=r.source,
            needs_free_text=r.needs_free_text,
        )
        for r in catalogue.repeat_reasons()
    ]


@router.post("/results/order-check", response_model=schemas.OrderCheckOut)
def order_check(
    body: schemas.OrderCheckIn, session: DbSession, actor: Reader
) -> schemas.OrderCheckOut:
    """Before ordering: per item, the prior results you may reuse, or why none qualifies."""
    return recognition.order_check(session, actor, body)


@router.post("/results/decisions", response_model=schemas.DecisionRead, status_code=201)
def decide(body: schemas.DecisionIn, session: DbSession, actor: Writer) -> schemas.DecisionRead:
    """Reuse a recognisable result, or repeat the test with reason codes (R6 needs text)."""
    return schemas.DecisionRead.model_validate(recognition.decide(session, actor, body))


@router.get("/results/statistics", response_model=schemas.Statistics)
def statistics(
    session: DbSession,
    actor: RegistryReader,
    since: date | None = None,
    until: date | None = None,
    institution_code: str | None = None,
) -> schemas.Statistics:
    """Tests avoided and money saved per ordering member and month; repeat reasons used."""
    return recognition.statistics(
        session, actor, since=since, until=until, institution_code=institution_code
    )


@router.get("/results/{result_id}", response_model=schemas.ResultRead)
def read_result(result_id: uuid.UUID, session: DbSession, actor: Reader) -> schemas.ResultRead:
    return service.to_read(session, service.get_result(session, actor, result_id))


@router.get("/patients/{patient_id}/results", response_model=list[schemas.ResultRead])
def patient_results(
    patient_id: uuid.UUID,
    session: DbSession,
    actor: Reader,
    item: Annotated[str | None, Query(pattern=schemas.ITEM_CODE)] = None,
    include_superseded: bool = False,
) -> list[schemas.ResultRead]:
    """The patient's results from every member you may see, newest first."""
    rows, _hidden = service.list_results(
        session, actor, patient_id, item_code=item, include_superseded=include_superseded
    )
    return [service.to_read(session, r) for r in rows]


@router.get("/patients/{patient_id}/results/trend", response_model=schemas.Trend)
def trend(
    patient_id: uuid.UUID, item: ItemCode, session: DbSession, actor: Reader
) -> schemas.Trend:
    """The series of one item across members, oldest first (current versions only)."""
    return service.trend(session, actor, patient_id, item)
