"""Recording and reading results. The HL7 v2 adapter, the FHIR layer and the JSON API
all write through ``record_lab_result`` / ``record_imaging_report``: a result is
written at the actor's institution (the performing member), on the patient's source
record there, after the access policy allowed the write."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.access import policy
from medalliance.audit import service as audit
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.patients import service as patients_service
from medalliance.domains.results import catalogue, schemas, units
from medalliance.domains.results.models import Result, ResultKind
from medalliance.kernel.actor import Actor
from medalliance.kernel.errors import Conflict, InvalidInput, NotFound

RESOURCE = "Result"


def _record_for_write(
    session: Session, actor: Actor, person_id: uuid.UUID, record_id: uuid.UUID | None
) -> uuid.UUID:
    facts = patients_service.facts_or_404(session, person_id)
    policy.enforce(
        session,
        actor,
        facts,
        policy.AccessAction.WRITE,
        resource_type=RESOURCE,
        resource_id=person_id,
        audit_action="create",
    )
    assert actor.institution_id is not None
    if record_id is not None:
        if patients_service.person_of_record(session, record_id) != person_id:
            raise InvalidInput("The source record is not this patient's.", field="record_id")
        return record_id
    record = patients_service.local_record(session, person_id, actor.institution_id)
    if record is None:
        raise Conflict(
            "The patient is not registered at your institution yet: register them here first.",
            field="patient_id",
        )
    return record.id


def check_unit(item_code: str, unit: str | None, session: Session) -> None:
    """A unit must be UCUM and fit the item's unit family (the catalogue's LOINC property)."""
    if unit is None:
        return
    item = catalogue.latest_item(session, item_code)
    try:
        units.check_unit(unit, None if item is None else item.unit_property)
    except units.UnitError as exc:
        raise InvalidInput(str(exc), field="unit") from exc


def _supersede(session: Session, new: Result) -> None:
    """A newer report of the same observation supersedes the current one; never overwrite."""
    query = select(Result).where(
        Result.institution_id == new.institution_id,
        Result.patient_record_id == new.patient_record_id,
        Result.item_code == new.item_code,
        Result.superseded_by_id.is_(None),
        Result.id != new.id,
    )
    if new.order_ref is not None:
        query = query.where(Result.order_ref == new.order_ref)
    else:
        query = query.where(Result.order_ref.is_(None), Result.effective_at == new.effective_at)
    for old in session.scalars(query):
        old.superseded_by_id = new.id
        if new.supersedes_id is None:
            new.supersedes_id = old.id


def _write(
    session: Session,
    actor: Actor,
    person_id: uuid.UUID,
    record_id: uuid.UUID | None,
    kind: ResultKind,
    fields: dict[str, Any],
    source: str,
    message_id: uuid.UUID | None,
) -> Result:
    record = _record_for_write(session, actor, person_id, record_id)
    assert actor.institution_id is not None
    result = Result(
        **fields,
        kind=kind,
        patient_record_id=record,
        institution_id=actor.institution_id,
        hr_mark=catalogue.hr_mark(
            session, actor.institution_id, fields["item_code"], fields["effective_at"].date()
        ),
        source=source,
        source_message_id=message_id,
        recorded_by=actor.user_id,
    )
    session.add(result)
    session.flush()
    _supersede(session, result)
    session.flush()
    return result


def record_lab_result(
    *,
    session: Session,
    actor: Actor,
    person_id: uuid.UUID,
    data: schemas.LabResultIn,
    record_id: uuid.UUID | None = None,
    source: str = "api",
    message_id: uuid.UUID | None = None,
) -> Result:
    item = catalogue.latest_item(session, data.item_code)
    if item is not None and item.kind is not ResultKind.LAB:
        raise InvalidInput(f"Item {data.item_code} is an imaging item.", field="item_code")
    check_unit(data.item_code, data.unit, session)
    fields = data.model_dump()
    if fields["item_name"] is None and item is not None:
        fields["item_name"] = item.name_en
    return _write(session, actor, person_id, record_id, ResultKind.LAB, fields, source, message_id)


def record_imaging_report(
    *,
    session: Session,
    actor: Actor,
    person_id: uuid.UUID,
    data: schemas.ImagingReportIn,
    record_id: uuid.UUID | None = None,
    source: str = "api",
    message_id: uuid.UUID | None = None,
) -> Result:
    item = catalogue.latest_item(session, data.item_code)
    if item is not None and item.kind is not ResultKind.IMAGING:
        raise InvalidInput(f"Item {data.item_code} is a lab item.", field="item_code")
    fields = data.model_dump()
    if fields["item_name"] is None and item is not None:
        fields["item_name"] = item.name_en
    return _write(
        session, actor, person_id, record_id, ResultKind.IMAGING, fields, source, message_id
    )


# --- reads --------------------------------------------------------------------------------


def to_read(session: Session, result: Result) -> schemas.ResultRead:
    read = schemas.ResultRead.model_validate(result)
    read.institution_code = alliance_service.institution_codes(session, [result.institution_id])[
        result.institution_id
    ]
    return read


def get_result(session: Session, actor: Actor, result_id: uuid.UUID) -> Result:
    result = session.get(Result, result_id)
    if result is None:
        raise NotFound(f"No result {result_id}.")
    person_id = patients_service.person_of_record(session, result.patient_record_id)
    assert person_id is not None
    policy.enforce(
        session,
        actor,
        patients_service.facts_or_404(session, person_id),
        policy.AccessAction.READ,
        resource_type=RESOURCE,
        resource_id=result_id,
        owner_institution_id=result.institution_id,
    )
    return result


def visible_owners(
    session: Session, actor: Actor, facts: policy.PatientFacts, owners: Iterable[uuid.UUID]
) -> dict[uuid.UUID, bool]:
    """May the actor read each member's results? The policy tells members apart only
    as "yours" or "another's", so decide each kind once (as the timeline does)."""
    by_kind: dict[bool, bool] = {}
    allowed: dict[uuid.UUID, bool] = {}
    for owner in set(owners):
        local = owner == actor.institution_id
        if local not in by_kind:
            by_kind[local] = policy.decide(
                session, actor, facts, policy.AccessAction.READ, owner_institution_id=owner
            ).allowed
        allowed[owner] = by_kind[local]
    return allowed


def list_results(
    session: Session,
    actor: Actor,
    person_id: uuid.UUID,
    *,
    item_code: str | None = None,
    include_superseded: bool = False,
    limit: int = 500,
) -> tuple[list[Result], list[str]]:
    """The patient's results the actor may see (newest first) and the members hidden."""
    facts = patients_service.facts_or_404(session, person_id)
    decision = policy.enforce(
        session,
        actor,
        facts,
        policy.AccessAction.READ,
        resource_type=RESOURCE,
        resource_id=person_id,
        audit_action="search",
    )
    records = patients_service.record_ids_of(session, person_id)
    query = select(Result).where(Result.patient_record_id.in_(records))
    if item_code is not None:
        query = query.where(Result.item_code == item_code)
    if not include_superseded:
        query = query.where(Result.superseded_by_id.is_(None))
    rows = list(session.scalars(query.order_by(Result.effective_at.desc()).limit(limit)))
    allowed = visible_owners(session, actor, facts, (r.institution_id for r in rows))
    hidden_ids = [o for o, ok in allowed.items() if not ok]
    hidden = sorted(alliance_service.institution_codes(session, hidden_ids).values())
    visible = [r for r in rows if allowed[r.institution_id]]
    audit.record(
        session,
        actor,
        action="search",
        resource_type=RESOURCE,
        resource_id=person_id,
        patient_id=person_id,
        purpose_of_use=decision.purpose_of_use,
        detail={"item": item_code, "results": len(visible), "hidden_institutions": hidden},
    )
    return visible, hidden


def trend(session: Session, actor: Actor, person_id: uuid.UUID, item_code: str) -> schemas.Trend:
    """The series of one item for a patient across members, oldest first."""
    rows, hidden = list_results(session, actor, person_id, item_code=item_code, limit=5000)
    codes = alliance_service.institution_codes(session, list({r.institution_id for r in rows}))
    item = catalogue.latest_item(session, item_code)
    points = [
        schemas.TrendPoint(
            result_id=r.id,
            at=r.effective_at,
            value=r.value_numeric,
            value_text=r.value_text,
            unit=r.unit,
            abnormal_flag=r.abnormal_flag,
            status=r.status,
            institution_code=codes[r.institution_id],
            hr_mark=r.hr_mark,
        )
        for r in reversed(rows)
    ]
    return schemas.Trend(
        patient_id=person_id,
        item_code=item_code,
        item_name=item.name_en if item is not None else (rows[0].item_name if rows else None),
        points=points,
        hidden_institutions=hidden,
    )
