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
    # Plain columns, not ORM objects: a long history has thousands of rows.
    rows = session.execute(
        select(
            Diagnosis.id,
            Diagnosis.recorded_at,
            Diagnosis.institution_id,
            Diagnosis.status,
            Diagnosis.encounter_id,
            Diagnosis.primary,
            Diagnosis.western_code,
            Diagnosis.western_text,
            Diagnosis.tcm_disease_system,
            Diagnosis.tcm_disease_code,
            Diagnosis.tcm_disease_text,
            Diagnosis.tcm_pattern_system,
            Diagnosis.tcm_pattern_code,
            Diagnosis.tcm_pattern_text,
        ).where(Diagnosis.patient_record_id.in_(records))
    )
    result = []
    for r in rows:
        western = " ".join(x for x in (r[6], r[7]) if x)
        tcm = " · ".join(x for x in (r[10], r[13]) if x)
        result.append(
            RawEntry(
                "diagnosis",
                r[0],
                r[1],
                r[2],
                " | ".join(x for x in (western, tcm) if x),
                str(r[3]),
                r[4],
                {
                    "primary": r[5],
                    "western": {"code": r[6], "text": r[7]},
                    "tcm_disease": {"system": r[8], "code": r[9], "text": r[10]},
                    "tcm_pattern": {"system": r[11], "code": r[12], "text": r[13]},
                },
            )
        )
    return result


def _allergies(session: Session, records: Sequence[uuid.UUID]) -> list[RawEntry]:
    rows = session.execute(
        select(
            Allergy.id,
            Allergy.recorded_at,
            Allergy.institution_id,
            Allergy.substance,
            Allergy.reaction,
            Allergy.status,
            Allergy.category,
            Allergy.severity,
        ).where(Allergy.patient_record_id.in_(records))
    )
    return [
        RawEntry(
            "allergy",
            r[0],
            r[1],
            r[2],
            r[3] + (f" ({r[4]})" if r[4] else ""),
            str(r[5]),
            None,
            {"category": str(r[6]), "severity": None if r[7] is None else str(r[7])},
        )
        for r in rows
    ]


def _medications(session: Session, records: Sequence[uuid.UUID]) -> list[RawEntry]:
    m = MedicationStatement
    rows = session.execute(
        select(
            m.id,
            m.recorded_at,
            m.institution_id,
            m.drug,
            m.dose,
            m.route,
            m.frequency,
            m.status,
            m.start_date,
            m.end_date,
        ).where(m.patient_record_id.in_(records))
    )
    return [
        RawEntry(
            "medication",
            r[0],
            r[1],
            r[2],
            " ".join(x for x in (r[3], r[4], r[5], r[6]) if x),
            str(r[7]),
            None,
            {
                "start_date": r[8].isoformat() if r[8] else None,
                "end_date": r[9].isoformat() if r[9] else None,
            },
        )
        for r in rows
    ]


def _notes(session: Session, records: Sequence[uuid.UUID]) -> list[RawEntry]:
    n = ClinicalNote
    rows = session.execute(
        select(
            n.id, n.recorded_at, n.institution_id, n.text, n.kind, n.encounter_id, n.tcm_exam
        ).where(n.patient_record_id.in_(records))
    )
    return [
        RawEntry(
            "note",
            r[0],
            r[1],
            r[2],
            (r[3] or str(r[4]))[:200],
            None,
            r[5],
            {"kind": str(r[4]), "tcm_exam": r[6]},
        )
        for r in rows
    ]


def _procedures(session: Session, records: Sequence[uuid.UUID]) -> list[RawEntry]:
    p = Procedure
    rows = session.execute(
        select(
            p.id, p.performed_at, p.institution_id, p.text, p.encounter_id, p.code_system, p.code
        ).where(p.patient_record_id.in_(records))
    )
    return [
        RawEntry(
            "procedure",
            r[0],
            r[1],
            r[2],
            r[3],
            None,
            r[4],
            {"code_system": r[5], "code": r[6]},
        )
        for r in rows
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
    # The policy tells members apart only as "yours" or "another's": decide each once.
    by_kind: dict[bool, policy.Decision] = {}
    decisions: dict[uuid.UUID, policy.Decision] = {}
    for owner in owners:
        local = owner == actor.institution_id
        if local not in by_kind:
            by_kind[local] = policy.decide(
                session, actor, facts, policy.AccessAction.READ, owner_institution_id=owner
            )
        decisions[owner] = by_kind[local]
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
