"""Lab panel reports: a panel (a LOINC panel code such as 58410-2 "CBC panel", its
status, specimen and issue times, the performing member and practitioner, a
conclusion) groups the lab results it reports, in order. FHIR calls it a
DiagnosticReport of a laboratory; HL7 v2 sends the same thing as an OBR with its OBX.

A panel is written like its results: at the actor's institution, on the patient's
source record there, after the access policy allowed the write (one audited decision
per panel). Its members must be lab results of the same patient that the same member
wrote: a lab reports its own results.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import Select, String, select, type_coerce
from sqlalchemy.orm import Session

from medalliance.access import policy
from medalliance.db.rows import insert_rows
from medalliance.domains.patients import service as patients_service
from medalliance.domains.records import service as records_service
from medalliance.domains.records import timeline
from medalliance.domains.results import service as results_service
from medalliance.domains.results.models import (
    Result,
    ResultKind,
    ResultPanel,
    ResultPanelMember,
    ResultStatus,
)
from medalliance.kernel.actor import Actor
from medalliance.kernel.errors import InvalidInput, NotFound

RESOURCE = "ResultPanel"


class PanelIn(BaseModel):
    code: str = Field(min_length=1, max_length=32)
    code_system: Literal["LN", "L"] = "LN"
    name: str | None = Field(default=None, max_length=200)
    status: ResultStatus = ResultStatus.FINAL
    effective_at: AwareDatetime
    issued_at: AwareDatetime | None = None
    conclusion: str | None = Field(default=None, max_length=10_000)
    encounter_id: uuid.UUID | None = None
    practitioner_id: uuid.UUID | None = None
    result_ids: list[uuid.UUID] = Field(default_factory=list, max_length=1000)


def record_panels(
    *,
    session: Session,
    actor: Actor,
    person_id: uuid.UUID,
    data: Sequence[PanelIn],
    source: str = "api",
) -> list[ResultPanel]:
    """Record several panels of one patient from the actor's institution, all or none.
    A bad one raises ``InvalidInput`` with ``extra['index']`` naming it."""
    if not data:
        return []
    record_id = results_service._record_for_write(
        session, actor, person_id, None, RESOURCE, audited=len(data)
    )
    _check(session, actor, person_id, data)
    panels = [
        ResultPanel(
            patient_record_id=record_id,
            institution_id=actor.institution_id,
            encounter_id=d.encounter_id,
            practitioner_id=d.practitioner_id,
            code=d.code,
            code_system=d.code_system,
            name=d.name,
            status=d.status,
            effective_at=d.effective_at,
            issued_at=d.issued_at,
            conclusion=d.conclusion,
            source=source,
            recorded_by=actor.user_id,
        )
        for d in data
    ]
    session.add_all(panels)
    session.flush()  # the members' foreign keys need the panels first
    insert_rows(
        session,
        ResultPanelMember,
        [
            {"panel_id": panel.id, "result_id": result_id, "position": position}
            for panel, d in zip(panels, data, strict=True)
            for position, result_id in enumerate(dict.fromkeys(d.result_ids))
        ],
    )
    return panels


def _check(session: Session, actor: Actor, person_id: uuid.UUID, data: Sequence[PanelIn]) -> None:
    """Members: lab results of this patient by this member; the encounter: this
    patient's. Read in two queries for the whole batch."""
    wanted = list({rid for d in data for rid in d.result_ids})
    results = {
        row[0]: row[1:]
        for row in session.execute(
            select(Result.id, Result.kind, Result.institution_id, Result.patient_record_id).where(
                Result.id.in_(wanted)
            )
        )
    }
    encounters = records_service.encounter_records(
        session, [d.encounter_id for d in data if d.encounter_id is not None]
    )
    records = {rec for _, _, rec in results.values()} | set(encounters.values())
    persons = {
        rec: person
        for rec, (person, _) in patients_service.persons_of_records(session, list(records)).items()
    }
    for index, d in enumerate(data):
        for rid in d.result_ids:
            found = results.get(rid)
            if found is None:
                raise InvalidInput(f"No result {rid}.", field="result_ids", index=index)
            kind, institution_id, record = found
            if kind is not ResultKind.LAB:
                raise InvalidInput(
                    f"Result {rid} is not a lab result.", field="result_ids", index=index
                )
            if persons.get(record) != person_id:
                raise InvalidInput(
                    f"Result {rid} is another patient's.", field="result_ids", index=index
                )
            if institution_id != actor.institution_id:
                raise InvalidInput(
                    f"Result {rid} was reported by another member: a panel groups its own "
                    "lab's results.",
                    field="result_ids",
                    index=index,
                )
        if d.encounter_id is not None:
            encounter_record = encounters.get(d.encounter_id)
            if encounter_record is None:
                raise InvalidInput(
                    f"No encounter {d.encounter_id}.", field="encounter_id", index=index
                )
            if persons.get(encounter_record) != person_id:
                raise InvalidInput(
                    "The encounter is another patient's.", field="encounter_id", index=index
                )


# --- reads --------------------------------------------------------------------------------


def members_of(
    session: Session, panel_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Each panel's result ids in the report's order, in one query."""
    found: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    if not panel_ids:
        return found
    rows = session.execute(
        select(ResultPanelMember.panel_id, ResultPanelMember.result_id)
        .where(ResultPanelMember.panel_id.in_(list(panel_ids)))
        .order_by(ResultPanelMember.panel_id, ResultPanelMember.position)
    )
    for panel_id, result_id in rows:
        found[panel_id].append(result_id)
    return found


def panels_with_result(result_ids: Sequence[uuid.UUID]) -> Select[uuid.UUID]:
    """A subquery of the panels that group any of these results (search by result)."""
    return select(ResultPanelMember.panel_id).where(
        ResultPanelMember.result_id.in_(list(result_ids))
    )


def get_panel(session: Session, actor: Actor, panel_id: uuid.UUID) -> ResultPanel:
    """One panel, after the policy allowed reading the member's data (audited)."""
    panel = session.get(ResultPanel, panel_id)
    if panel is None:
        raise NotFound(f"No result panel {panel_id}.")
    policy.enforce(
        session,
        actor,
        patients_service.facts_of_record(session, panel.patient_record_id),
        policy.AccessAction.READ,
        resource_type=RESOURCE,
        resource_id=panel_id,
        owner_institution_id=panel.institution_id,
    )
    return panel


# --- the patient timeline -----------------------------------------------------------------


def _timeline_entry(row: Sequence[Any]) -> timeline.RawEntry:
    panel_id, at, institution_id, code, name, status, conclusion, encounter_id = row
    summary = f"{name or code}: {conclusion}" if conclusion else str(name or code)
    return timeline.RawEntry(
        "result_panel",
        panel_id,
        at,
        institution_id,
        summary[:300],
        str(status),
        encounter_id,
        {"code": code},
    )


timeline.register_paged_source(
    "result_panel",
    table=timeline.EntryTable(
        ResultPanel.id,
        ResultPanel.effective_at,
        ResultPanel.institution_id,
        ResultPanel.patient_record_id,
    ),
    columns=[
        ResultPanel.code.expression,
        ResultPanel.name.expression,
        type_coerce(ResultPanel.status, String()),  # printed only: the stored string
        ResultPanel.conclusion.expression,
        ResultPanel.encounter_id.expression,
    ],
    build=_timeline_entry,
)
