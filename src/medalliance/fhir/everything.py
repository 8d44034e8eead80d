"""``Patient/{id}/$everything`` (http://hl7.org/fhir/R4/patient-operation-everything.html).

Built for a patient with thousands of resources: the access policy is decided once for
the patient and once per member that holds a record of them; each resource type is
read with one query of plain rows (no ORM objects) restricted to the members the actor
may see; the identifiers and codings kept beside the rows are read with one query each
for the whole compartment; the mappers render the FHIR JSON from the rows directly.
Parameters: ``_count`` (paging, with ``self``/``next``/``previous`` links carrying
``_offset``), ``_since`` (updated since), ``_type`` (the types wanted) and ``start`` /
``end`` (the care date range: a resource whose clinical date, ``clinical_date_column``,
lies outside it is left out; one without a clinical date is kept, as the operation's
definition says)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import (
    Date,
    DateTime,
    Select,
    Uuid,
    and_,
    cast,
    func,
    literal,
    or_,
    select,
    union_all,
)

from medalliance.access import policy
from medalliance.domains.patients import service as patients_service
from medalliance.fhir import search
from medalliance.fhir.context import FhirContext
from medalliance.fhir.mappers.common import text_ids
from medalliance.fhir.models import FhirCoding, FhirIdentifier
from medalliance.fhir.outcome import ignored_parameters, invalid, issue, search_outcome
from medalliance.fhir.registry import Lookups, Mapper

PARAMS = ("_count", "_offset", "_since", "_type", "start", "end")
_MATCH = {"mode": "match"}  # shared by every entry (nothing changes answers after rendering)


@dataclass(slots=True)
class Request:
    count: int | None = None  # None: the whole compartment in one Bundle
    offset: int = 0
    since: datetime | None = None
    types: frozenset[str] | None = None
    start: datetime | None = None  # care dates from (inclusive)
    end: datetime | None = None  # care dates before (the end value's whole interval kept)
    ignored: tuple[str, ...] = ()  # unknown parameters, ignored on Prefer: handling=lenient


def parse(ctx: FhirContext, items: Sequence[tuple[str, str]], *, lenient: bool = False) -> Request:
    req = Request()
    ignored: list[str] = []
    for key, raw in items:
        if key == "_count":
            req.count = search.parse_int(key, raw, 1, search.MAX_COUNT)
        elif key == "_offset":
            req.offset = search.parse_int(key, raw, 0, 10**9)
        elif key == "_since":
            req.since = search.instant_param(key, raw)
        elif key == "start":
            req.start = search.date_range(raw, key)[0]
        elif key == "end":
            req.end = search.date_range(raw, key)[1]
        elif key == "_type":
            names = frozenset(t for t in raw.split(",") if t)
            unknown = sorted(n for n in names if n not in ctx.registry)
            if unknown:
                raise invalid("_type", f"_type: {', '.join(unknown)} not supported here", 400)
            req.types = names if req.types is None else req.types & names
        elif key in search.IGNORED:
            continue
        elif lenient:
            ignored.append(key)
        else:
            raise invalid(key, f"unknown parameter {key!r} for Patient/$everything", 400)
    if req.start is not None and req.end is not None and req.start >= req.end:
        raise invalid("end", "end is before start", 400)
    req.ignored = tuple(ignored)
    return req


def _care_dates(column: Any, req: Request) -> Any:
    """Inside [start, end), or without a clinical date. A date column (a medication's
    start) is compared by the dates of the bounds."""
    conditions = []
    date_only = isinstance(column.type, Date) and not isinstance(column.type, DateTime)
    if req.start is not None:
        conditions.append(column >= (req.start.date() if date_only else req.start))
    if req.end is not None:
        conditions.append(column < (req.end.date() if date_only else req.end))
    return or_(column.is_(None), and_(*conditions))


def everything(
    ctx: FhirContext,
    patient_id: str,
    items: Sequence[tuple[str, str]] = (),
    *,
    lenient: bool = False,
) -> dict[str, Any]:
    req = parse(ctx, items, lenient=lenient)
    patients = ctx.registry.get("Patient")
    person = patients.get_row(ctx, patient_id)
    facts = patients_service.facts_or_404(ctx.session, person.id)
    policy.enforce(  # the read of the patient: audited, a denial raises
        ctx.session,
        ctx.actor,
        facts,
        policy.AccessAction.READ,
        resource_type="Patient",
        resource_id=person.id,
        audit_action="everything",
    )
    # each member's entries by the policy, decided once per member
    allowed = {
        inst
        for inst in facts.institution_ids
        if policy.decide(
            ctx.session, ctx.actor, facts, policy.AccessAction.READ, owner_institution_id=inst
        ).allowed
    }
    records = patients_service.record_ids_of(ctx.session, person.id)
    parts: list[tuple[Mapper, Select[Any]]] = []
    for mapper in ctx.registry:
        if mapper.resource_type == "Patient" or (
            req.types is not None and mapper.resource_type not in req.types
        ):
            continue
        for part in mapper.compartment_parts():
            query = part.compartment_query(ctx, person.id, records, allowed)
            if query is None:
                continue
            if req.since is not None:
                query = query.where(part.last_updated_column() >= req.since)
            dated = part.clinical_date_column()
            if dated is not None and (req.start is not None or req.end is not None):
                query = query.where(_care_dates(dated, req))
            parts.append((part, query.order_by(part.sorts["_id"])))
    with_patient = req.types is None or "Patient" in req.types
    fetched, total = _fetch(ctx, parts, req, with_patient)

    look = Lookups(persons=dict.fromkeys(records, person.id))
    as_text = text_ids(ctx.session)  # the rows' uuids are text on PostgreSQL
    if as_text:
        look.persons.update(dict.fromkeys(map(str, records), person.id))
    _side_tables(ctx, fetched, look, as_text)
    entries: list[dict[str, Any]] = []
    if with_patient and req.offset == 0:
        entries.append(_entry(ctx, patients.to_fhir(ctx, [person])[0]))
    for (mapper, _), rows in fetched:
        mapper.annotate(ctx, rows, look)
        prefix = ctx.url(mapper.resource_type, "")
        entries += [
            {"fullUrl": prefix + res["id"], "resource": res, "search": _MATCH}
            for res in mapper.render(rows, look)
        ]
    hidden = sorted(str(i) for i in facts.institution_ids - allowed)
    if hidden or req.ignored:
        entries.append(_outcome(hidden, req.ignored))
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": total}
    bundle["link"] = _links(ctx, person.id, items, req, total)
    bundle["entry"] = entries
    return bundle


Part = tuple[Mapper, Select[Any]]


def _fetch(
    ctx: FhirContext, parts: list[Part], req: Request, with_patient: bool
) -> tuple[list[tuple[Part, list[Any]]], int]:
    """Every row (no _count), or only the page's rows: the types in registry order are
    one list, and each type is counted first so that a page reads only its slice."""
    if req.count is None:
        fetched = [(part, part[0].fetch(ctx, part[1])) for part in parts]
        return fetched, int(with_patient) + sum(len(rows) for _, rows in fetched)
    counts = [0] * len(parts)
    if parts:
        counting = union_all(
            *(
                select(literal(i).label("part"), func.count().label("n")).select_from(
                    query.order_by(None).subquery()
                )
                for i, (_, query) in enumerate(parts)
            )
        )
        for i, n in ctx.session.execute(counting):
            counts[int(i)] = int(n)
    total = int(with_patient) + sum(counts)
    fetched = []
    start = int(with_patient)  # the patient is entry 0
    low, high = req.offset, req.offset + req.count
    for (mapper, query), n in zip(parts, counts, strict=True):
        first, last = max(low, start), min(high, start + n)
        if first < last:
            page = query.offset(first - start).limit(last - first)
            fetched.append(((mapper, page), mapper.fetch(ctx, page)))
        start += n
    return fetched, total


def _side_tables(
    ctx: FhirContext, fetched: list[tuple[Part, list[Any]]], look: Lookups, as_text: bool
) -> None:
    """The identifiers and codings kept beside the rows: one query each for all types,
    naming the rows by the types' own queries (no long id lists to send); keyed as the
    rows name themselves (text ids on PostgreSQL)."""
    kept = [
        (mapper.resource_type, query)
        for (mapper, query), rows in fetched
        if rows and getattr(mapper, "side_tables", False)
    ]
    if not kept:
        return
    ids = union_all(
        *(
            select(cast(query.subquery().c.id, Uuid) if as_text else query.subquery().c.id)
            for _, query in kept
        )
    )
    # keyed as each type's rows name themselves: text ids where the rows carry text
    # (plain rows on PostgreSQL), uuids where a type reads ORM objects
    key: dict[str, Any] = {
        mapper.resource_type: str if as_text and isinstance(rows[0].id, str) else _same
        for (mapper, _), rows in fetched
        if rows
    }
    types = [rtype for rtype, _ in kept]
    for rtype, rid, system, value in ctx.session.execute(
        select(
            FhirIdentifier.resource_type,
            FhirIdentifier.resource_id,
            FhirIdentifier.system,
            FhirIdentifier.value,
        )
        .where(FhirIdentifier.resource_type.in_(types), FhirIdentifier.resource_id.in_(ids))
        .order_by(FhirIdentifier.created_at, FhirIdentifier.id)
    ):
        look.identifiers.setdefault(key[rtype](rid), []).append({"system": system, "value": value})
    for rtype, rid, element, coding_system, code, display in ctx.session.execute(
        select(
            FhirCoding.resource_type,
            FhirCoding.resource_id,
            FhirCoding.element,
            FhirCoding.system,
            FhirCoding.code,
            FhirCoding.display,
        )
        .where(FhirCoding.resource_type.in_(types), FhirCoding.resource_id.in_(ids))
        .order_by(FhirCoding.id)
    ):
        found = {"system": coding_system, "code": code, "display": display}
        look.codings.setdefault((key[rtype](rid), element), []).append(
            {k: v for k, v in found.items() if v is not None}
        )


def _same(value: Any) -> Any:
    return value


def _entry(ctx: FhirContext, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": ctx.url(resource["resourceType"], resource["id"]),
        "resource": resource,
        "search": {"mode": "match"},
    }


def _outcome(hidden: list[str], ignored: tuple[str, ...]) -> dict[str, Any]:
    issues = ignored_parameters(ignored)
    if hidden:
        issues.insert(
            0,
            issue(
                "suppressed",
                "The access policy withholds the entries written by "
                + ", ".join(f"Organization/{i}" for i in hidden),
                severity="information",
            ),
        )
    return search_outcome(issues)


def _links(
    ctx: FhirContext,
    person_id: uuid.UUID,
    items: Sequence[tuple[str, str]],
    req: Request,
    total: int,
) -> list[dict[str, str]]:
    base = [(k, v) for k, v in items if k not in ("_offset", "_count") and k not in req.ignored]
    operation = f"{ctx.base_url}/Patient/{person_id}/$everything"
    if req.count is None:  # one Bundle holds everything
        return [{"relation": "self", "url": f"{operation}?{urlencode(base)}".rstrip("?")}]
    count = req.count

    def url(offset: int) -> str:
        query = urlencode([*base, ("_count", str(count)), ("_offset", str(offset))])
        return f"{operation}?{query}"

    links = [{"relation": "self", "url": url(req.offset)}]
    if req.offset + count < total:
        links.append({"relation": "next", "url": url(req.offset + count)})
    if req.offset > 0:
        links.append({"relation": "previous", "url": url(max(0, req.offset - count))})
    return links
