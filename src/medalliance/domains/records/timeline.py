"""The alliance-wide timeline of a patient, filtered entry by entry by the access
policy (each entry belongs to the institution that wrote it).

Domains add their entries by registering a source (results, prescriptions, readings
… do so as they land): a function from the person's source-record ids to entries.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.access import policy
from medalliance.audit import service as audit
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.patients import service as patients_service
from medalliance.domains.records.models import (
    Allergy,
    ClinicalNote,
    Diagnosis,
    Encounter,
    MedicationStatement,
    Procedure,
)
from medalliance.domains.records.schemas import Timeline, TimelineEntry
from medalliance.kernel.actor import Actor
from medalliance.kernel.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class RawEntry:
    type: str
    id: uuid.UUID
    at: datetime
    institution_id: uuid.UUID
    summary: str
    status: str | None = None
    encounter_id: uuid.UUID | None = None
    detail: dict[str, Any] = field(default_factory=dict)


Source = Callable[[Session, Sequence[uuid.UUID]], list[RawEntry]]
_sources: dict[str, Source] = {}


def register_source(entry_type: str, source: Source) -> None:
    _sources[entry_type] = source


def entry_types() -> list[str]:
    return sorted(_sources)


def _encounters(session: Session, records: Sequence[uuid.UUID]) -> list[RawEntry]:
    rows = session.execute(
        select(
            Encounter.id,
            Encounter.start,
            Encounter.institution_id,
            Encounter.encounter_class,
            Encounter.status,
            Encounter.reason,
            Encounter.end,
            Encounter.department_id,
        ).where(Encounter.patient_record_id.in_(records))
    )
    return [
        RawEntry(
            "encounter",
            r[0],
            r[1],
            r[2],
            f"{r[3]}: {r[5] or ''}".strip(": "),
            str(r[4]),
            r[0],
            {
                "class": str(r[3]),
                "end": r[6].isoformat() if r[6] else None,
                "department_id": str(r[7]) if r[7] else None,
            },
        )
        for r in rows
    ]


def _diagnoses(session: Session, records: Sequence[uuid.UUID]) -> list[RawEntry]:
    result = []
    for d in session.scalars(select(Diagnosis).where(Diagnosis.patient_record_id.in_(records))):
        western = " ".join(x for x in (d.western_code, d.western_text) if x)
        tcm = " · ".join(x for x in (d.tcm_disease_text, d.tcm_pattern_text) if x)
        result.append(
            RawEntry(
                "diagnosis",
                d.id,
                d.recorded_at,
                d.institution_id,
                " | ".join(x for x in (western, tcm) if x),
                str(d.status),
                d.encounter_id,
                {
                    "primary": d.primary,
                    "western": {"code": d.western_code, "text": d.western_text},
                    "tcm_disease": {
                        "system": d.tcm_disease_system,
                        "code": d.tcm_disease_code,
                        "text": d.tcm_disease_text,
                    },
                    "tcm_pattern": {
                        "system": d.tcm_pattern_system,
                        "code": d.tcm_pattern_code,
                        "text": d.tcm_pattern_text,
                    },
                },
            )
        )
    return result


def _allergies(session: Session, records: Sequence[uuid.UUID]) -> list[RawEntry]:
    return [
        RawEntry(
            "allergy",
            a.id,
            a.recorded_at,
            a.institution_id,
            f"{a.substance}" + (f" ({a.reaction})" if a.reaction else ""),
            str(a.status),
            None,
            {
                "category": str(a.category),
                "severity": None if a.severity is None else str(a.severity),
            },
        )
        for a in session.scalars(select(Allergy).where(Allergy.patient_record_id.in_(records)))
    ]


def _medications(session: Session, records: Sequence[uuid.UUID]) -> list[RawEntry]:
    return [
        RawEntry(
            "medication",
            m.id,
            m.recorded_at,
            m.institution_id,
            " ".join(x for x in (m.drug, m.dose, m.route, m.frequency) if x),
            str(m.status),
            None,
            {
                "start_date": m.start_date.isoformat() if m.start_date else None,
                "end_date": m.end_date.isoformat() if m.end_date else None,
            },
        )
        for m in session.scalars(
            select(MedicationStatement).where(MedicationStatement.patient_record_id.in_(records))
        )
    ]


def _notes(session: Session, records: Sequence[uuid.UUID]) -> list[RawEntry]:
    return [
        RawEntry(
            "note",
            n.id,
            n.recorded_at,
            n.institution_id,
            (n.text or str(n.kind))[:200],
            None,
            n.encounter_id,
            {"kind": str(n.kind), "tcm_exam": n.tcm_exam},
        )
        for n in session.scalars(
            select(ClinicalNote).where(ClinicalNote.patient_record_id.in_(records))
        )
    ]


def _procedures(session: Session, records: Sequence[uuid.UUID]) -> list[RawEntry]:
    return [
        RawEntry(
            "procedure",
            p.id,
            p.performed_at,
            p.institution_id,
            p.text,
            None,
            p.encounter_id,
            {"code_system": p.code_system, "code": p.code},
        )
        for p in session.scalars(select(Procedure).where(Procedure.patient_record_id.in_(records)))
    ]


for _name, _source in (
    ("encounter", _encounters),
    ("diagnosis", _diagnoses),
    ("allergy", _allergies),
    ("medication", _medications),
    ("note", _notes),
    ("procedure", _procedures),
):
    register_source(_name, _source)


def timeline(
    session: Session,
    actor: Actor,
    person_id: uuid.UUID,
    *,
    types: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 500,
    offset: int = 0,
) -> Timeline:
    facts = patients_service.facts_or_404(session, person_id)
    unknown = set(types or ()) - set(_sources)
    if unknown:
        raise InvalidInput(
            f"Unknown entry type(s): {', '.join(sorted(unknown))}; "
            f"known: {', '.join(entry_types())}.",
            field="types",
        )
    patient_level = policy.enforce(
        session,
        actor,
        facts,
        policy.AccessAction.READ,
        resource_type="Timeline",
        resource_id=person_id,
    )
    records = patients_service.record_ids_of(session, person_id)
    raw: list[RawEntry] = []
    for name in types or list(_sources):
        raw.extend(_sources[name](session, records))
    if since is not None:
        raw = [e for e in raw if e.at >= since]
    if until is not None:
        raw = [e for e in raw if e.at < until]
    owners = {e.institution_id for e in raw}
    decisions = {
        owner: policy.decide(
            session, actor, facts, policy.AccessAction.READ, owner_institution_id=owner
        )
        for owner in owners
    }
    visible = [e for e in raw if decisions[e.institution_id].allowed]
    visible.sort(key=lambda e: (e.at, str(e.id)), reverse=True)
    institutions = alliance_service.institutions_by_id(session, list(owners))
    hidden = sorted(institutions[o].code for o, d in decisions.items() if not d.allowed)
    page = visible[offset : offset + limit]
    audit.record(
        session,
        actor,
        action="read",
        resource_type="Timeline",
        resource_id=person_id,
        patient_id=person_id,
        purpose_of_use=patient_level.purpose_of_use,
        detail={
            "entries": len(page),
            "hidden_institutions": hidden,
            "bases": sorted({str(d.basis) for d in decisions.values() if d.allowed}),
        },
    )
    return Timeline(
        patient_id=person_id,
        entries=[_entry(e, institutions) for e in page],
        hidden_institutions=hidden,
        total=len(visible),
    )


def _entry(raw: RawEntry, institutions: dict[uuid.UUID, Any]) -> TimelineEntry:
    inst = institutions[raw.institution_id]
    return TimelineEntry(
        type=raw.type,
        id=raw.id,
        at=raw.at,
        institution_id=raw.institution_id,
        institution_code=inst.code,
        institution_name_zh=inst.name_zh,
        institution_name_en=inst.name_en,
        summary=raw.summary,
        status=raw.status,
        encounter_id=raw.encounter_id,
        detail=raw.detail,
    )
