"""Recording and reading results. The HL7 v2 adapter, the FHIR layer and the JSON API
all write through ``record_lab_result`` / ``record_imaging_report``: a result is
written at the actor's institution (the performing member), on the patient's source
record there, after the access policy allowed the write."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from medalliance.access import policy
from medalliance.audit import service as audit
from medalliance.db.rows import insert_rows
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.patients import service as patients_service
from medalliance.domains.results import catalogue, rules, schemas, units
from medalliance.domains.results.models import Result, ResultKind
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import InvalidInput, NotFound
from medalliance.kernel.ids import new_id

RESOURCE = "Result"


def _record_for_write(
    session: Session,
    actor: Actor,
    person_id: uuid.UUID,
    record_id: uuid.UUID | None,
    resource_type: str = RESOURCE,
    audited: int = 1,
) -> uuid.UUID:
    """The record a write goes to, after the policy allowed it: ``audited`` decisions
    (one per row when a batch is audited entry by entry), from one read of the facts.
    Without ``record_id``, the actor's institution's own record of the patient."""
    if record_id is None:
        return patients_service.local_record_for_write(
            session, actor, person_id, resource_type, audited=audited
        ).id
    patients_service.enforce_write(session, actor, person_id, resource_type, audited=audited)
    if patients_service.person_of_record(session, record_id) != person_id:
        raise InvalidInput("The source record is not this patient's.", field="record_id")
    return record_id


def _supersede(session: Session, new: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A newer report of the same observation supersedes the current one; never overwrite.
    The same observation: same member, record and item, and the same order (or, without
    an order reference, the same specimen time). Sets ``supersedes_id`` on the new rows
    (before they are inserted) and returns the old rows' updates."""
    if not new:
        return []
    first = new[0]
    current = session.execute(
        select(Result.id, Result.item_code, Result.order_ref, Result.effective_at).where(
            Result.institution_id == first["institution_id"],
            Result.patient_record_id == first["patient_record_id"],
            Result.item_code.in_({r["item_code"] for r in new}),
            Result.superseded_by_id.is_(None),
        )
    )
    by_key: dict[tuple[str, object], list[uuid.UUID]] = defaultdict(list)
    for old_id, code, order_ref, effective_at in current:
        by_key[(code, order_ref or _aware(effective_at))].append(old_id)
    updates = []
    for row in new:
        for old_id in by_key.pop(_key(row), []):
            updates.append({"old_id": old_id, "new_id": row["id"]})
            if row["supersedes_id"] is None:
                row["supersedes_id"] = old_id
    return updates


def _key(row: dict[str, Any]) -> tuple[str, object]:
    return (row["item_code"], row.get("order_ref") or _aware(row["effective_at"]))


def _aware(moment: datetime) -> datetime:
    """SQLite hands timestamps back naive (UTC); compare them as aware."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


_RESULTS = cast(Table, Result.__table__)
_MARK_SUPERSEDED = (
    update(_RESULTS)
    .where(_RESULTS.c.id == bindparam("old_id"))
    .values(superseded_by_id=bindparam("new_id"))
)


def _write(
    session: Session,
    actor: Actor,
    person_id: uuid.UUID,
    record_id: uuid.UUID | None,
    kind: ResultKind,
    rows: Sequence[dict[str, Any]],
    source: str,
    message_id: uuid.UUID | None,
    audit_each: bool = False,
) -> list[uuid.UUID]:
    """Check every row first (kind, UCUM unit family), then write them all: one INSERT
    for the new rows, one UPDATE for the rows they supersede. Returns the new ids."""
    codes = {row["item_code"] for row in rows}
    history = catalogue.histories(session, codes)
    for index, row in enumerate(rows):
        versions = history.get(row["item_code"], [])
        latest = versions[-1] if versions else None
        if latest is not None and latest.kind is not kind:
            raise InvalidInput(
                f"Item {row['item_code']} is a {latest.kind} item, not {kind}.",
                field="item_code",
                index=index,
            )
        if row.get("unit") is not None:
            try:
                units.check_unit(row["unit"], None if latest is None else latest.unit_property)
            except units.UnitError as exc:
                raise InvalidInput(str(exc), field="unit", index=index) from exc
        if row.get("item_name") is None and latest is not None:
            row["item_name"] = latest.name_en
    record = _record_for_write(
        session, actor, person_id, record_id, audited=len(rows) if audit_each else 1
    )
    assert actor.institution_id is not None
    periods = catalogue.eqa_periods(session, [actor.institution_id], codes)
    now = utcnow()
    new = []
    for row in rows:
        code = row["item_code"]
        list_versions = [catalogue.as_list_version(v) for v in history.get(code, [])]
        eqa = periods.get((actor.institution_id, code), [])
        new.append(
            {
                **_EMPTY_ROW,
                **row,
                "id": new_id(),
                "created_at": now,
                "updated_at": now,
                "kind": kind,
                "patient_record_id": record,
                "institution_id": actor.institution_id,
                "hr_mark": rules.hr_mark(list_versions, eqa, row["effective_at"].date()),
                "source": source,
                "source_message_id": message_id,
                "recorded_by": actor.user_id,
            }
        )
    updates = _supersede(session, new)
    insert_rows(session, Result, new)
    if updates:
        session.execute(_MARK_SUPERSEDED, updates)
        _expire_loaded(session, [u["old_id"] for u in updates])
    return [row["id"] for row in new]


# every column a caller may leave out, so all rows of one INSERT carry the same keys
_EMPTY_ROW: dict[str, Any] = {
    column.key: None
    for column in _RESULTS.columns
    if column.key not in ("id", "created_at", "updated_at", "hr_mark")
}


def _expire_loaded(session: Session, ids: Sequence[uuid.UUID]) -> None:
    """Rows changed by a Core UPDATE: an object of them already in the session must
    not keep the old value."""
    for result_id in ids:
        loaded = session.identity_map.get(identity_key(Result, result_id))
        if loaded is not None:
            session.expire(loaded, ["superseded_by_id", "updated_at"])  # onupdate applies


def record_lab_results(
    *,
    session: Session,
    actor: Actor,
    person_id: uuid.UUID,
    data: Sequence[schemas.LabResultIn],
    record_id: uuid.UUID | None = None,
    source: str = "api",
    message_id: uuid.UUID | None = None,
    audit_each: bool = False,
) -> list[uuid.UUID]:
    """Record several lab results of one patient from the actor's institution, all or
    none (an HL7 message, a FHIR transaction); returns their ids. A bad one raises
    ``InvalidInput`` with ``extra['index']`` naming it. ``audit_each``: one audited
    write per result (a FHIR batch of single-resource entries) instead of one for the
    message."""
    rows = [d.model_dump() for d in data]
    return _write(
        session, actor, person_id, record_id, ResultKind.LAB, rows, source, message_id, audit_each
    )


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
    """Record one lab result (LOINC item, value, UCUM unit fitting the item's family)."""
    (result_id,) = record_lab_results(
        session=session,
        actor=actor,
        person_id=person_id,
        data=[data],
        record_id=record_id,
        source=source,
        message_id=message_id,
    )
    return _loaded(session, result_id)


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
    """Record one imaging report (modality, body site, report, conclusion, PACS link)."""
    (result_id,) = _write(
        session,
        actor,
        person_id,
        record_id,
        ResultKind.IMAGING,
        [data.model_dump()],
        source,
        message_id,
    )
    return _loaded(session, result_id)


def _loaded(session: Session, result_id: uuid.UUID) -> Result:
    result = session.get(Result, result_id)
    assert result is not None  # inserted just now, in this transaction
    return result


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
    policy.enforce(
        session,
        actor,
        patients_service.facts_of_record(session, result.patient_record_id),
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
    query = select(Result).where(
        Result.patient_record_id.in_(patients_service.record_ids_query(person_id))
    )
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
