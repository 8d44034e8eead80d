"""The alliance-wide timeline of a patient, filtered entry by entry by the access
policy (each entry belongs to the institution that wrote it).

Domains add their entries by registering a source (results, prescriptions, readings
… do so as they land). Two kinds:

- ``register_paged_source(type, table=…, load=…)``: the entry table's columns for id,
  time, institution and source record, and a function that builds the entries with
  given ids. The timeline counts, filters, orders and pages these in SQL, and builds
  only the page: a long history costs what one page costs.
- ``register_source(type, source)``: a function from the person's source-record ids to
  all of their entries, merged in Python (simple; fine for a few entries per patient).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Executable,
    Select,
    func,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

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
Loader = Callable[[Session, Sequence[uuid.UUID]], list[RawEntry]]  # entries by their ids


@dataclass(frozen=True, slots=True)
class EntryTable:
    """Where a paged source's entries live: the columns the timeline filters and
    orders on in SQL."""

    id: InstrumentedAttribute[uuid.UUID]
    at: InstrumentedAttribute[datetime]
    institution_id: InstrumentedAttribute[uuid.UUID]
    patient_record_id: InstrumentedAttribute[uuid.UUID]


@dataclass(frozen=True, slots=True)
class PagedSource:
    table: EntryTable
    load: Loader


_sources: dict[str, Source] = {}
_paged: dict[str, PagedSource] = {}


def register_source(entry_type: str, source: Source) -> None:
    """Entries from ``source(session, record_ids)``: all of the person's, merged in Python."""
    _paged.pop(entry_type, None)
    _sources[entry_type] = source


def register_paged_source(entry_type: str, *, table: EntryTable, load: Loader) -> None:
    """Entries counted, filtered and paged in SQL on ``table``; ``load(session, ids)``
    builds the page's entries of this type."""
    _sources.pop(entry_type, None)
    _paged[entry_type] = PagedSource(table, load)


def entry_types() -> list[str]:
    return sorted({*_sources, *_paged})


def _rows(session: Session, statement: Executable) -> Sequence[Any]:
    """Plain rows through the session's connection: no ORM result machinery (a page is
    hundreds of rows)."""
    return session.connection().execute(statement).all()


def _encounters(session: Session, ids: Sequence[uuid.UUID]) -> list[RawEntry]:
    x = Encounter
    rows = _rows(
        session,
        select(
            x.id,
            x.start,
            x.institution_id,
            x.encounter_class,
            x.status,
            x.reason,
            x.end,
            x.department_id,
        ).where(x.id.in_(ids)),
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


def _diagnoses(session: Session, ids: Sequence[uuid.UUID]) -> list[RawEntry]:
    x = Diagnosis
    rows = _rows(
        session,
        select(
            x.id,
            x.recorded_at,
            x.institution_id,
            x.status,
            x.encounter_id,
            x.primary,
            x.western_code,
            x.western_text,
            x.tcm_disease_system,
            x.tcm_disease_code,
            x.tcm_disease_text,
            x.tcm_pattern_system,
            x.tcm_pattern_code,
            x.tcm_pattern_text,
        ).where(x.id.in_(ids)),
    )
    result = []
    for r in rows:
        western = " ".join(v for v in (r[6], r[7]) if v)
        tcm = " · ".join(v for v in (r[10], r[13]) if v)
        result.append(
            RawEntry(
                "diagnosis",
                r[0],
                r[1],
                r[2],
                " | ".join(v for v in (western, tcm) if v),
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


def _allergies(session: Session, ids: Sequence[uuid.UUID]) -> list[RawEntry]:
    x = Allergy
    rows = _rows(
        session,
        select(
            x.id,
            x.recorded_at,
            x.institution_id,
            x.substance,
            x.reaction,
            x.status,
            x.category,
            x.severity,
        ).where(x.id.in_(ids)),
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


def _medications(session: Session, ids: Sequence[uuid.UUID]) -> list[RawEntry]:
    x = MedicationStatement
    rows = _rows(
        session,
        select(
            x.id,
            x.recorded_at,
            x.institution_id,
            x.drug,
            x.dose,
            x.route,
            x.frequency,
            x.status,
            x.start_date,
            x.end_date,
        ).where(x.id.in_(ids)),
    )
    return [
        RawEntry(
            "medication",
            r[0],
            r[1],
            r[2],
            " ".join(v for v in (r[3], r[4], r[5], r[6]) if v),
            str(r[7]),
            None,
            {
                "start_date": r[8].isoformat() if r[8] else None,
                "end_date": r[9].isoformat() if r[9] else None,
            },
        )
        for r in rows
    ]


def _notes(session: Session, ids: Sequence[uuid.UUID]) -> list[RawEntry]:
    x = ClinicalNote
    rows = _rows(
        session,
        select(
            x.id, x.recorded_at, x.institution_id, x.text, x.kind, x.encounter_id, x.tcm_exam
        ).where(x.id.in_(ids)),
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


def _procedures(session: Session, ids: Sequence[uuid.UUID]) -> list[RawEntry]:
    x = Procedure
    rows = _rows(
        session,
        select(
            x.id, x.performed_at, x.institution_id, x.text, x.encounter_id, x.code_system, x.code
        ).where(x.id.in_(ids)),
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


for _name, _model, _at, _load in (
    ("encounter", Encounter, Encounter.start, _encounters),
    ("diagnosis", Diagnosis, Diagnosis.recorded_at, _diagnoses),
    ("allergy", Allergy, Allergy.recorded_at, _allergies),
    ("medication", MedicationStatement, MedicationStatement.recorded_at, _medications),
    ("note", ClinicalNote, ClinicalNote.recorded_at, _notes),
    ("procedure", Procedure, Procedure.performed_at, _procedures),
):
    register_paged_source(
        _name,
        table=EntryTable(_model.id, _at, _model.institution_id, _model.patient_record_id),
        load=_load,
    )


def _window(
    table: EntryTable,
    records: Sequence[uuid.UUID],
    since: datetime | None,
    until: datetime | None,
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [table.patient_record_id.in_(records)]
    if since is not None:
        where.append(table.at >= since)
    if until is not None:
        where.append(table.at < until)
    return where


def _keys(
    paged: dict[str, PagedSource],
    records: Sequence[uuid.UUID],
    since: datetime | None,
    until: datetime | None,
    institutions: Sequence[uuid.UUID] | None = None,
) -> (
    CompoundSelect[str, uuid.UUID, datetime, uuid.UUID]
    | Select[str, uuid.UUID, datetime, uuid.UUID]
):
    """(type, id, at, institution_id) of every entry of the paged sources in the
    window, from ``institutions`` only when given: one UNION ALL."""
    arms: list[Select[str, uuid.UUID, datetime, uuid.UUID]] = []
    for name, source in paged.items():
        t = source.table
        where = _window(t, records, since, until)
        if institutions is not None:
            where.append(t.institution_id.in_(institutions))
        # The type is one of our own constant names: a literal, not a parameter, so that
        # PostgreSQL knows its type in every arm of the UNION.
        kind: ColumnElement[str] = literal_column("'" + name.replace("'", "''") + "'")
        arms.append(
            select(
                kind.label("type"),
                t.id.label("id"),
                t.at.label("at"),
                t.institution_id.label("institution_id"),
            ).where(*where)
        )
    return arms[0] if len(arms) == 1 else union_all(*arms)


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidInput(f"{name} needs a time zone (e.g. 2026-11-01T00:00:00Z).", field=name)
    return value


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
    unknown = set(types or ()) - set(entry_types())
    if unknown:
        raise InvalidInput(
            f"Unknown entry type(s): {', '.join(sorted(unknown))}; "
            f"known: {', '.join(entry_types())}.",
            field="types",
        )
    since, until = _aware(since, "since"), _aware(until, "until")
    patient_level = policy.enforce(
        session,
        actor,
        facts,
        policy.AccessAction.READ,
        resource_type="Timeline",
        resource_id=person_id,
    )
    wanted = set(types or entry_types())
    paged = {name: s for name, s in _paged.items() if name in wanted}
    records = patients_service.record_ids_of(session, person_id)

    # 1. Who wrote how many entries (SQL), and the entries of the unpaged sources.
    per_owner: dict[uuid.UUID, int] = {}
    if paged and records:
        keys = _keys(paged, records, since, until).subquery()
        counted = _rows(
            session, select(keys.c.institution_id, func.count()).group_by(keys.c.institution_id)
        )
        per_owner = {owner: int(n) for owner, n in counted}
    merged: list[RawEntry] = []
    for name in sorted(wanted - set(paged)):
        merged.extend(_sources[name](session, records))
    if since is not None:
        merged = [e for e in merged if e.at >= since]
    if until is not None:
        merged = [e for e in merged if e.at < until]
    owners = set(per_owner) | {e.institution_id for e in merged}

    # 2. Decide per member. The policy tells members apart only as "yours" or
    # "another's": decide each kind once.
    by_kind: dict[bool, policy.Decision] = {}
    decisions: dict[uuid.UUID, policy.Decision] = {}
    for owner in owners:
        local = owner == actor.institution_id
        if local not in by_kind:
            by_kind[local] = policy.decide(
                session, actor, facts, policy.AccessAction.READ, owner_institution_id=owner
            )
        decisions[owner] = by_kind[local]
    allowed = sorted(o for o, d in decisions.items() if d.allowed)
    merged = [e for e in merged if decisions[e.institution_id].allowed]
    total = sum(per_owner.get(o, 0) for o in allowed) + len(merged)

    # 3. The page's keys in SQL (with the merged entries, the first offset + limit),
    # newest first, then only the page's entries are built.
    page_keys: list[tuple[datetime, uuid.UUID, str]] = []
    if paged and records and allowed and any(per_owner.get(o) for o in allowed):
        keys = _keys(paged, records, since, until, allowed).subquery()
        query = select(keys.c.at, keys.c.id, keys.c.type).order_by(
            keys.c.at.desc(), keys.c.id.desc()
        )
        query = query.limit(offset + limit) if merged else query.limit(limit).offset(offset)
        page_keys = [(at, id_, kind) for at, id_, kind in _rows(session, query)]
    if merged:
        every = [(e.at, e.id, e.type) for e in merged] + page_keys
        every.sort(key=lambda k: (k[0], str(k[1])), reverse=True)
        page_keys = every[offset : offset + limit]
    built = {e.id: e for e in merged}
    by_type: dict[str, list[uuid.UUID]] = {}
    for _, id_, kind in page_keys:
        if id_ not in built:
            by_type.setdefault(kind, []).append(id_)
    for kind, ids in by_type.items():
        built.update((e.id, e) for e in _paged[kind].load(session, ids))
    page = [built[id_] for _, id_, _ in page_keys]

    institutions = alliance_service.institutions_by_id(session, list(owners))
    hidden = sorted(institutions[o].code for o, d in decisions.items() if not d.allowed)
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
        total=total,
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
