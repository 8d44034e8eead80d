"""The transport-free FHIR handler: interactions over the registry. The HTTP adapter
(api.py), the bundle processor and the importer all call these."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from pydantic import BaseModel

from medalliance.db.rows import insert_rows
from medalliance.fhir import search as search_mod
from medalliance.fhir import store, systems
from medalliance.fhir.context import FhirContext
from medalliance.fhir.mappers.common import persons_of_records
from medalliance.fhir.models import FhirIdentifier
from medalliance.fhir.outcome import FhirError
from medalliance.fhir.registry import CREATE, READ, SEARCH, UPDATE, Mapper, Written
from medalliance.fhir.search import Criterion, SearchRequest


@dataclass(slots=True)
class Outcome:
    status: int
    resource: dict[str, Any] | None
    location: str | None = None


def _need(mapper: Mapper, interaction: str) -> None:
    if interaction not in mapper.interactions:
        raise FhirError(
            405, f"{interaction} is not supported for {mapper.resource_type}", code="not-supported"
        )


def read(ctx: FhirContext, resource_type: str, rid: str) -> dict[str, Any]:
    mapper = ctx.registry.get(resource_type)
    _need(mapper, READ)
    return mapper.read(ctx, rid)


def parse_search(
    ctx: FhirContext, resource_type: str, items: list[tuple[str, str]]
) -> SearchRequest:
    mapper = ctx.registry.get(resource_type)
    _need(mapper, SEARCH)
    return search_mod.parse(resource_type, items, mapper.params, mapper.sorts)


def search(ctx: FhirContext, resource_type: str, items: list[tuple[str, str]]) -> dict[str, Any]:
    mapper = ctx.registry.get(resource_type)
    req = parse_search(ctx, resource_type, items)
    rows, total = mapper.search(ctx, req)
    entries = [_entry(ctx, r, "match") for r in mapper.to_fhir(ctx, rows)]
    if not req.summary_count:
        entries += _includes(ctx, mapper, rows, req)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": _links(ctx, resource_type, items, req, total),
    }
    if entries:
        bundle["entry"] = entries
    return bundle


def _entry(ctx: FhirContext, resource: dict[str, Any], mode: str) -> dict[str, Any]:
    return {
        "fullUrl": ctx.url(resource["resourceType"], resource["id"]),
        "resource": resource,
        "search": {"mode": mode},
    }


def _links(
    ctx: FhirContext, rtype: str, items: list[tuple[str, str]], req: SearchRequest, total: int
) -> list[dict[str, str]]:
    base = [(k, v) for k, v in items if k not in ("_offset", "_count")]

    def url(offset: int) -> str:
        query = urlencode([*base, ("_count", str(req.count)), ("_offset", str(offset))])
        return f"{ctx.base_url}/{rtype}?{query}"

    links = [{"relation": "self", "url": url(req.offset)}]
    if req.summary_count:
        return links
    if req.offset + req.count < total:
        links.append({"relation": "next", "url": url(req.offset + req.count)})
    if req.offset > 0:
        links.append({"relation": "previous", "url": url(max(0, req.offset - req.count))})
    return links


def _includes(
    ctx: FhirContext, mapper: Mapper, rows: list[Any], req: SearchRequest
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for spec in req.include:
        inc = mapper.includes.get(spec)
        if inc is None:
            raise FhirError(400, f"_include={spec} is not supported", code="not-supported")
        target = ctx.registry[inc.target]
        if inc.load is not None:
            found = inc.load(ctx, rows)
        elif inc.column == "person_id" and rows and hasattr(rows[0], "patient_record_id"):
            ids = list(set(persons_of_records(ctx, [r.patient_record_id for r in rows]).values()))
            found = target.rows_by_ids(ctx, ids)
        else:
            found = target.rows_by_ids(ctx, list({getattr(r, inc.column) for r in rows} - {None}))
        for res in target.to_fhir(ctx, found):
            if (res["resourceType"], res["id"]) not in seen:
                seen.add((res["resourceType"], res["id"]))
                out.append(_entry(ctx, res, "include"))
    for spec in req.revinclude:
        rtype, _, param = spec.partition(":")
        if rtype not in ctx.registry or spec not in ctx.registry[rtype].revincludes:
            raise FhirError(400, f"_revinclude={spec} is not supported", code="not-supported")
        if not rows:
            continue
        source = ctx.registry[rtype]
        refs = tuple(f"{mapper.resource_type}/{r.id}" for r in rows)
        sub = SearchRequest(criteria=[Criterion(param, None, refs)], count=search_mod.MAX_COUNT)
        found, _ = source.search(ctx, sub)
        for res in source.to_fhir(ctx, found):
            if (res["resourceType"], res["id"]) not in seen:
                seen.add((res["resourceType"], res["id"]))
                out.append(_entry(ctx, res, "include"))
    return out


def create(
    ctx: FhirContext,
    resource: BaseModel,
    *,
    if_none_exist: str | None = None,
    minimal: bool = False,
) -> Outcome:
    rtype = str(resource.get_resource_type())  # type: ignore[attr-defined]
    mapper = ctx.registry.get(rtype)
    _need(mapper, CREATE)
    if if_none_exist:
        items = parse_qsl(if_none_exist.split("?", 1)[-1], keep_blank_values=True)
        req = parse_search(ctx, rtype, items)
        req.count = 2
        rows, total = mapper.search(ctx, req)
        if total > 1:
            raise FhirError(
                412, f"If-None-Exist matched {total} {rtype} resources", code="duplicate"
            )
        if total == 1:
            existing = mapper.to_fhir(ctx, rows)[0]
            return Outcome(200, existing, ctx.url(rtype, existing["id"]))
    written = write_new(ctx, mapper, resource)
    status = 201 if written.created else 200
    if minimal:  # Prefer: return=minimal
        return Outcome(status, None, ctx.url(mapper.resource_type, written.id))
    return _written(ctx, mapper, written, status)


def write_new(ctx: FhirContext, mapper: Mapper, resource: BaseModel) -> Written:
    """Create, keeping (and, on imports, honouring) the sender's own id."""
    known = already_imported(ctx, mapper, resource)
    if known is not None:
        return known
    written = mapper.create(ctx, resource)
    ctx.created(mapper.resource_type)
    keep_sender_id(ctx, mapper, resource, written)
    return written


def already_imported(ctx: FhirContext, mapper: Mapper, resource: BaseModel) -> Written | None:
    """On imports: the resource this sender id was stored as, if any."""
    sender_id = getattr(resource, "id", None)
    if not (ctx.keep_source_ids and sender_id):
        return None
    key = (mapper.resource_type, str(sender_id))
    known = (
        ctx.source_ids[key]
        if key in ctx.source_ids
        else store.find(ctx.session, mapper.resource_type, systems.SOURCE_ID, sender_id)
    )
    return None if known is None else Written(mapper.resource_type, known, created=False)


def keep_sender_id(ctx: FhirContext, mapper: Mapper, resource: BaseModel, written: Written) -> None:
    keep_sender_ids(ctx, mapper, [(resource, written)])


def keep_sender_ids(
    ctx: FhirContext, mapper: Mapper, pairs: Sequence[tuple[BaseModel, Written]]
) -> None:
    """On imports: the sender's ids of new resources (checked unknown before), in one
    statement."""
    if not ctx.keep_source_ids:
        return
    rows = []
    for resource, written in pairs:
        sender_id = getattr(resource, "id", None)
        if sender_id:
            rows.append(
                store.identifier_row(
                    mapper.resource_type, written.id, systems.SOURCE_ID, str(sender_id)
                )
            )
            ctx.source_ids[(mapper.resource_type, str(sender_id))] = written.id
    insert_rows(ctx.session, FhirIdentifier, rows)


def need_create(mapper: Mapper) -> None:
    _need(mapper, CREATE)


def created_bodies(ctx: FhirContext, mapper: Mapper, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """The stored form of resources just written, shaped in one call."""
    return mapper.to_fhir(ctx, [mapper.get_row(ctx, str(i)) for i in ids])


def _written(ctx: FhirContext, mapper: Mapper, written: Written, status: int) -> Outcome:
    row = mapper.get_row(ctx, str(written.id))  # the mapper knows its table(s)
    body = mapper.to_fhir(ctx, [row])[0]
    return Outcome(status, body, ctx.url(mapper.resource_type, written.id))


def update(ctx: FhirContext, rid: str, resource: BaseModel) -> Outcome:
    rtype = str(resource.get_resource_type())  # type: ignore[attr-defined]
    mapper = ctx.registry.get(rtype)
    _need(mapper, UPDATE)
    body_id = getattr(resource, "id", None)
    if body_id is not None and body_id != rid:
        raise FhirError(
            400,
            f"the resource id {body_id!r} differs from the URL id {rid!r}",
            expression=[f"{rtype}.id"],
        )
    row = mapper.get_row(ctx, rid)  # updates of unknown ids are refused: ids are server-made
    written = mapper.update(ctx, row.id, resource)
    ctx.session.flush()
    ctx.session.expire(row)
    return _written(ctx, mapper, written, 200)


def new_uuid_or_404(rtype: str, rid: str) -> uuid.UUID:
    try:
        return uuid.UUID(rid)
    except ValueError as exc:
        raise FhirError(404, f"{rtype}/{rid} is not known", code="not-found") from exc
