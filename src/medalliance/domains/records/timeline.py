"""The alliance-wide timeline of a patient, filtered entry by entry by the access
policy (each entry belongs to the institution that wrote it).

Domains add their entries by registering a source (results, prescriptions, readings
… do so as they land). Two kinds:

- ``register_paged_source(type, table=…, columns=…, build=…)``: the entry table's
  columns for id, time, institution and source record, the other columns an entry is
  built from, and ``build`` ((id, time, institution, *those columns' values) → a
  ``RawEntry``). The timeline counts, filters, orders and pages these in SQL and reads
  the page with its columns in one statement: a long history costs what one page costs.
- ``register_source(type, source)``: a function from the person's source-record ids to
  all of their entries, merged in Python (simple; fine for a few entries per patient).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Enum,
    Integer,
    Select,
    String,
    bindparam,
    case,
    func,
    literal_column,
    null,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.orm import InstrumentedAttribute, Session, outerjoin

from medalliance.access import policy
from medalliance.audit import service as audit
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.alliance.models import Institution
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
# (id, at, institution_id, *the values of a paged source's columns) -> the entry
Builder = Callable[[Sequence[Any]], RawEntry]


@dataclass(frozen=True, slots=True)
class EntryTable:
    """Where a paged source's entries live: the columns the timeline filters and
    orders on in SQL (all of one mapped table)."""

    id: InstrumentedAttribute[uuid.UUID]
    at: InstrumentedAttribute[datetime]
    institution_id: InstrumentedAttribute[uuid.UUID]
    patient_record_id: InstrumentedAttribute[uuid.UUID]
    # rows of the table that are entries (e.g. results not superseded); None: all
    shown: ColumnElement[bool] | None = None


@dataclass(frozen=True, slots=True)
class PagedSource:
    table: EntryTable
    columns: tuple[ColumnElement[Any], ...]
    build: Builder


_sources: dict[str, Source] = {}
_paged: dict[str, PagedSource] = {}
# Built statements by shape (see _statement): a timeline read builds none of its SQL.
_statements: dict[tuple[Any, ...], Any] = {}


def register_source(entry_type: str, source: Source) -> None:
    """Entries from ``source(session, record_ids)``: all of the person's, merged in Python."""
    _paged.pop(entry_type, None)
    _sources[entry_type] = source
    _statements.clear()


def register_paged_source(
    entry_type: str,
    *,
    table: EntryTable,
    columns: Sequence[ColumnElement[Any]],
    build: Builder,
) -> None:
    """Entries counted, filtered and paged in SQL on ``table``; each entry of the page
    is ``build((id, at, institution_id, *values of columns))``, ``columns`` being
    columns of ``table``'s model."""
    _sources.pop(entry_type, None)
    _paged[entry_type] = PagedSource(table, tuple(columns), build)
    _statements.clear()


def unregister_source(entry_type: str) -> None:
    """Forget a source of either kind (tests; a module being unloaded)."""
    _sources.pop(entry_type, None)
    _paged.pop(entry_type, None)
    _statements.clear()


def entry_types() -> list[str]:
    return sorted({*_sources, *_paged})


# -- the record's own entries ------------------------------------------------------------


def _encounter(r: Sequence[Any]) -> RawEntry:
    return RawEntry(
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


def _diagnosis(r: Sequence[Any]) -> RawEntry:
    western = " ".join(v for v in (r[6], r[7]) if v)
    tcm = " · ".join(v for v in (r[10], r[13]) if v)
    return RawEntry(
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


def _allergy(r: Sequence[Any]) -> RawEntry:
    return RawEntry(
        "allergy",
        r[0],
        r[1],
        r[2],
        r[3] + (f" ({r[4]})" if r[4] else ""),
        str(r[5]),
        None,
        {"category": str(r[6]), "severity": None if r[7] is None else str(r[7])},
    )


def _medication(r: Sequence[Any]) -> RawEntry:
    return RawEntry(
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


def _note(r: Sequence[Any]) -> RawEntry:
    return RawEntry(
        "note",
        r[0],
        r[1],
        r[2],
        (r[3] or str(r[4]))[:200],
        None,
        r[5],
        {"kind": str(r[4]), "tcm_exam": r[6]},
    )


def _procedure(r: Sequence[Any]) -> RawEntry:
    return RawEntry(
        "procedure", r[0], r[1], r[2], r[3], None, r[4], {"code_system": r[5], "code": r[6]}
    )


def _register_own() -> None:
    """The longitudinal record's six kinds of entry. Columns in the order the builders
    above read them."""
    e, d, a, m, n, p = Encounter, Diagnosis, Allergy, MedicationStatement, ClinicalNote, Procedure
    own: list[tuple[str, Any, InstrumentedAttribute[datetime], list[Any], Builder]] = [
        (
            "encounter",
            e,
            e.start,
            [e.encounter_class, e.status, e.reason, e.end, e.department_id],
            _encounter,
        ),
        (
            "diagnosis",
            d,
            d.recorded_at,
            [
                d.status,
                d.encounter_id,
                d.primary,
                d.western_code,
                d.western_text,
                d.tcm_disease_system,
                d.tcm_disease_code,
                d.tcm_disease_text,
                d.tcm_pattern_system,
                d.tcm_pattern_code,
                d.tcm_pattern_text,
            ],
            _diagnosis,
        ),
        (
            "allergy",
            a,
            a.recorded_at,
            [a.substance, a.reaction, a.status, a.category, a.severity],
            _allergy,
        ),
        (
            "medication",
            m,
            m.recorded_at,
            [m.drug, m.dose, m.route, m.frequency, m.status, m.start_date, m.end_date],
            _medication,
        ),
        ("note", n, n.recorded_at, [n.text, n.kind, n.encounter_id, n.tcm_exam], _note),
        (
            "procedure",
            p,
            p.performed_at,
            [p.text, p.encounter_id, p.code_system, p.code],
            _procedure,
        ),
    ]
    for name, model, at, rest, build in own:
        register_paged_source(
            name,
            table=EntryTable(model.id, at, model.institution_id, model.patient_record_id),
            columns=[_as_stored(c) for c in rest],
            build=build,
        )


def _as_stored(column: InstrumentedAttribute[Any]) -> ColumnElement[Any]:
    """Enumerations read as the strings stored: the builders only print them, and a
    page of 500 rows × every source's enum columns is thousands of conversions."""
    if isinstance(column.type, Enum):
        return type_coerce(column, String())
    return column.expression


_register_own()


# -- reading ---------------------------------------------------------------------------


class _Label(NamedTuple):
    code: str
    name_zh: str
    name_en: str


def _constant(name: str) -> ColumnElement[str]:
    """An entry type as an SQL literal, not a parameter, so that PostgreSQL knows its
    type in every arm of a UNION (the names are our own constants)."""
    return literal_column("'" + name.replace("'", "''") + "'")


def _keys(
    paged: Sequence[tuple[str, PagedSource]], *, since: bool, until: bool, filtered: bool
) -> (
    CompoundSelect[str, uuid.UUID, datetime, uuid.UUID]
    | Select[str, uuid.UUID, datetime, uuid.UUID]
):
    """(type, id, at, institution_id) of every entry of the paged sources of the
    person ``:person_id``, in the window [``:since``, ``:until``) and from the members
    ``:allowed`` when asked: one UNION ALL."""
    records = patients_service.record_ids_query(bindparam("person_id"))
    arms: list[Select[str, uuid.UUID, datetime, uuid.UUID]] = []
    for name, source in paged:
        t = source.table
        where: list[ColumnElement[bool]] = [t.patient_record_id.in_(records)]
        if t.shown is not None:
            where.append(t.shown)
        if since:
            where.append(t.at >= bindparam("since"))
        if until:
            where.append(t.at < bindparam("until"))
        if filtered:
            where.append(t.institution_id.in_(bindparam("allowed", expanding=True)))
        arms.append(
            select(
                _constant(name).label("type"),
                t.id.label("id"),
                t.at.label("at"),
                t.institution_id.label("institution_id"),
            ).where(*where)
        )
    return arms[0] if len(arms) == 1 else union_all(*arms)


_COUNT = "#count"  # rows of the read statement that carry a member's count, not an entry


def _read_statement(
    paged: Sequence[tuple[str, PagedSource]], *, since: bool, until: bool, everyone: bool
) -> tuple[Select[Any], dict[str, tuple[int, int, Builder]]]:
    """One statement: a row per member that wrote entries in the window (how many,
    and the member's labels), and the page, the newest ``:limit`` entries after
    ``:offset`` of every member (``everyone``) or of the members ``:allowed``, with
    the entries' columns. Counting reads no clinical data; the page only that of
    members already decided allowed. Each source's table is joined on the page's ids
    (a CASE makes the join key NULL for the other types, so each row probes one
    primary key only)."""
    keys = _keys(paged, since=since, until=until, filtered=False).cte("keys")
    chosen = select(keys.c.type, keys.c.id, keys.c.at, keys.c.institution_id)
    if not everyone:
        chosen = chosen.where(keys.c.institution_id.in_(bindparam("allowed", expanding=True)))
    newest = (
        chosen.order_by(keys.c.at.desc(), keys.c.id.desc())
        .limit(bindparam("limit", type_=Integer()))
        .offset(bindparam("offset", type_=Integer()))
        .subquery("newest")
    )
    counted = select(
        _constant(_COUNT), null(), null(), keys.c.institution_id, func.count()
    ).group_by(keys.c.institution_id)
    page = union_all(
        select(newest.c.type, newest.c.id, newest.c.at, newest.c.institution_id, null()),
        counted,
    ).subquery("page")
    member = case((page.c.type == _constant(_COUNT), page.c.institution_id))
    joined: Any = outerjoin(page, Institution, Institution.id == member)
    columns: list[Any] = [
        *(page.c[k] for k in range(5)),
        Institution.code,
        Institution.name_zh,
        Institution.name_en,
    ]
    spans: dict[str, tuple[int, int, Builder]] = {}
    for name, source in paged:
        mine = case((page.c.type == _constant(name), page.c.id))
        joined = outerjoin(joined, source.table.id.class_, source.table.id == mine)
        spans[name] = (len(columns), len(columns) + len(source.columns), source.build)
        columns.extend(source.columns)
    query = select(*columns).select_from(joined).order_by(page.c[2].desc(), page.c[1].desc())
    return query, spans


def _statement(paged: Sequence[tuple[str, PagedSource]], **shape: bool) -> Any:
    """The read statement for these sources and this shape, built once (building
    SQLAlchemy statements costs more than running these)."""
    key = (tuple(name for name, _ in paged), *sorted(shape.items()))
    found = _statements.get(key)
    if found is None:
        found = _statements[key] = _read_statement(paged, **shape)
    return found


@dataclass
class _Read:
    counts: dict[uuid.UUID, int] = field(default_factory=dict)
    labels: dict[uuid.UUID, _Label] = field(default_factory=dict)
    page: list[RawEntry] = field(default_factory=list)


def _read(
    session: Session,
    paged: Sequence[tuple[str, PagedSource]],
    window: dict[str, Any],
    *,
    allowed: list[uuid.UUID] | None,
    limit: int,
    offset: int,
) -> _Read:
    """Counts per member and the page of the ``allowed`` members (None: every member)."""
    if not paged:
        return _Read()
    query, spans = _statement(
        paged, since="since" in window, until="until" in window, everyone=allowed is None
    )
    parameters = {**window, "limit": limit, "offset": offset}
    if allowed is not None:
        parameters["allowed"] = allowed
    found = _Read()
    for row in session.connection().execute(query, parameters).all():
        if row[0] == _COUNT:
            found.counts[row[3]] = int(row[4])
            found.labels[row[3]] = _Label(row[5], row[6], row[7])
            continue
        start, end, build = spans[row[0]]
        found.page.append(build((row[1], row[2], row[3], *row[start:end])))
    return found


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
    window: dict[str, Any] = {"person_id": person_id}
    if since is not None:
        window["since"] = since
    if until is not None:
        window["until"] = until
    paged = [(name, s) for name, s in sorted(_paged.items()) if name in wanted]

    # 1. Decide per member before reading. The policy tells members apart only as
    # "yours" or "another's": decide each kind once, first for the members holding the
    # person's records (whose entries are expected).
    by_kind: dict[bool, policy.Decision] = {}

    def decide(owner: uuid.UUID) -> policy.Decision:
        local = owner == actor.institution_id
        if local not in by_kind:
            by_kind[local] = policy.decide(
                session, actor, facts, policy.AccessAction.READ, owner_institution_id=owner
            )
        return by_kind[local]

    for holder in sorted(facts.institution_ids):
        decide(holder)
    others = by_kind.get(False)
    everyone = others is not None and others.allowed and by_kind.get(True, others).allowed
    known = sorted(o for o in facts.institution_ids if decide(o).allowed)

    # 2. One statement: who wrote how many entries, and the page of the allowed ones
    # (with entries of unpaged sources to merge, the first offset + limit).
    merged: list[RawEntry] = []
    unpaged = sorted(wanted - {name for name, _ in paged})
    if unpaged:
        record_ids = patients_service.record_ids_of(session, person_id)
        for name in unpaged:
            merged.extend(_sources[name](session, record_ids))
    if since is not None:
        merged = [e for e in merged if e.at >= since]
    if until is not None:
        merged = [e for e in merged if e.at < until]
    first, count = (0, offset + limit) if merged else (offset, limit)
    read = _read(
        session, paged, window, allowed=None if everyone else known, limit=count, offset=first
    )
    owners = set(read.counts) | {e.institution_id for e in merged}
    decisions = {owner: decide(owner) for owner in owners}
    allowed = sorted(o for o, d in decisions.items() if d.allowed)
    if not everyone and any(read.counts.get(o) for o in set(allowed) - set(known)):
        # entries from a member without a record of the person, decided only now
        read = _read(session, paged, window, allowed=allowed, limit=count, offset=first)
    labels = read.labels
    missing = [o for o in owners if o not in labels]
    for owner, institution in alliance_service.institutions_by_id(session, missing).items():
        labels[owner] = _Label(institution.code, institution.name_zh, institution.name_en)
    merged = [e for e in merged if decisions[e.institution_id].allowed]
    total = sum(read.counts.get(o, 0) for o in allowed) + len(merged)
    page = read.page
    if merged:
        page = sorted([*page, *merged], key=lambda e: (e.at, str(e.id)), reverse=True)
        page = page[offset : offset + limit]

    hidden = sorted(labels[o].code for o, d in decisions.items() if not d.allowed)
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
        entries=[_entry(e, labels[e.institution_id]) for e in page],
        hidden_institutions=hidden,
        total=total,
    )


def _entry(raw: RawEntry, inst: _Label) -> TimelineEntry:
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
