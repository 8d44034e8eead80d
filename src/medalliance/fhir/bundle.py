"""batch and transaction Bundles.

A transaction is all-or-nothing: every entry runs in the caller's one database
transaction and the first failure raises (the unit of work rolls everything back).
``urn:uuid:`` fullUrls are resolved: entries are ordered so that a resource is created
before the entries that refer to it. A batch runs each entry in a savepoint and answers
each entry with its own status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel
from sqlalchemy import select

from medalliance.audit import service as audit
from medalliance.fhir import handler, parsing, systems
from medalliance.fhir.context import FhirContext
from medalliance.fhir.models import FhirIdentifier
from medalliance.fhir.outcome import FhirError, from_domain, outcome
from medalliance.kernel.errors import DomainError

REF_KEY = '"reference":'


@dataclass(slots=True)
class Prepared:
    index: int
    method: str
    url: str
    full_url: str | None
    raw: dict[str, Any]
    resource: BaseModel | None = None
    if_none_exist: str | None = None
    depends_on: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Skipped:
    """Entries of types the platform does not map, left out by an import."""

    counts: dict[str, int] = field(default_factory=dict)


def process(
    ctx: FhirContext,
    data: Any,
    *,
    skip_unmodelled: Skipped | None = None,
    minimal: bool = False,
) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise FhirError(400, "POST to the base takes a Bundle", expression=["resourceType"])
    kind = data.get("type")
    if kind not in ("batch", "transaction"):
        raise FhirError(
            400,
            f"Bundle.type must be batch or transaction, not {kind!r}",
            expression=["Bundle.type"],
        )
    raw_entries = data.get("entry") or []
    if not isinstance(raw_entries, list):
        raise FhirError(400, "Bundle.entry must be an array", expression=["Bundle.entry"])
    prepared, responses = _prepare(ctx, raw_entries, kind, skip_unmodelled)
    if ctx.keep_source_ids:
        _prefetch_source_ids(ctx, prepared)
    if kind == "transaction":
        for item in _ordered(prepared):
            try:
                responses[item.index] = _run(ctx, item, minimal)
            except DomainError as exc:
                raise _at(from_domain(exc, _rtype(item)), item) from exc
            except FhirError as exc:
                raise _at(exc, item) from exc
        kind_out = "transaction-response"
    else:
        for item in prepared:
            responses[item.index] = _run_isolated(ctx, item, minimal)
        kind_out = "batch-response"
    return {
        "resourceType": "Bundle",
        "type": kind_out,
        "entry": [r for r in responses if r is not None],
    }


def _rtype(item: Prepared) -> str:
    return str(item.raw.get("resourceType") or item.url.split("/")[0].split("?")[0])


def _at(error: FhirError, item: Prepared) -> FhirError:
    rtype = _rtype(item)
    prefix = f"Bundle.entry[{item.index}]"

    def inside(path: str) -> str:
        if path.startswith("Bundle"):
            return path
        if path == rtype or path.startswith(rtype + "."):
            path = path[len(rtype) + 1 :]
        return f"{prefix}.resource" + (f".{path}" if path else "")

    for issue in error.issues:
        issue["expression"] = [inside(e) for e in issue.get("expression", [])] or [prefix]
    error.diagnostics = f"entry {item.index}: {error.diagnostics}"
    error.issues[0]["diagnostics"] = f"entry {item.index}: {error.issues[0]['diagnostics']}"
    return error


def _prepare(
    ctx: FhirContext, raw_entries: list[Any], kind: str, skipped: Skipped | None
) -> tuple[list[Prepared], list[dict[str, Any] | None]]:
    prepared: list[Prepared] = []
    responses: list[dict[str, Any] | None] = [None] * len(raw_entries)
    for i, entry in enumerate(raw_entries):
        path = f"Bundle.entry[{i}]"
        if not isinstance(entry, dict):
            raise FhirError(400, f"{path} must be an object", expression=[path])
        request = entry.get("request") or {}
        method = str(request.get("method") or "").upper()
        url = str(request.get("url") or "")
        raw = entry.get("resource") or {}
        if not method:
            raise FhirError(
                400, f"{path}.request.method is required", expression=[f"{path}.request.method"]
            )
        rtype = raw.get("resourceType") if isinstance(raw, dict) else None
        if (
            skipped is not None
            and method in ("POST", "PUT")
            and rtype is not None
            and not ctx.registry.writable(str(rtype))
        ):
            skipped.counts[str(rtype)] = skipped.counts.get(str(rtype), 0) + 1
            continue
        item = Prepared(
            i,
            method,
            url,
            entry.get("fullUrl"),
            raw if isinstance(raw, dict) else {},
            if_none_exist=request.get("ifNoneExist"),
        )
        if method in ("POST", "PUT"):
            try:
                item.resource = parsing.resource(raw, None, f"{path}.resource.")
            except FhirError as exc:
                if kind == "transaction":
                    raise
                responses[i] = _error_entry(exc)
                continue
            text = json.dumps(raw)
            if "urn:uuid:" in text:
                item.depends_on = _urn_refs(raw)
        elif method not in ("GET",):
            error = FhirError(
                405,
                f"{path}: {method} is not supported",
                code="not-supported",
                expression=[f"{path}.request.method"],
            )
            if kind == "transaction":
                raise error
            responses[i] = _error_entry(error)
            continue
        prepared.append(item)
    return prepared, responses


def _prefetch_source_ids(ctx: FhirContext, prepared: list[Prepared]) -> None:
    """One query for the sender ids of the whole Bundle instead of one per entry."""
    wanted = {
        (str(item.raw.get("resourceType")), str(item.raw["id"]))
        for item in prepared
        if item.method == "POST" and item.raw.get("id")
    }
    if not wanted:
        return
    rows = ctx.session.execute(
        select(
            FhirIdentifier.resource_type, FhirIdentifier.value, FhirIdentifier.resource_id
        ).where(
            FhirIdentifier.system == systems.SOURCE_ID,
            FhirIdentifier.value.in_(sorted({rid for _, rid in wanted})),
        )
    )
    found = {(row[0], row[1]): row[2] for row in rows}
    for key in wanted:
        ctx.source_ids[key] = found.get(key)


def _urn_refs(obj: Any) -> set[str]:
    found: set[str] = set()
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str) and ref.startswith("urn:uuid:"):
                found.add(ref)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _ordered(items: list[Prepared]) -> list[Prepared]:
    """Writes before reads; a write after the writes it refers to (cycles keep order)."""
    writes = [i for i in items if i.method in ("POST", "PUT")]
    by_url = {i.full_url: i for i in writes if i.full_url}
    done: set[int] = set()
    order: list[Prepared] = []
    visiting: set[int] = set()

    def visit(item: Prepared) -> None:
        if item.index in done or item.index in visiting:
            return
        visiting.add(item.index)
        for ref in sorted(item.depends_on):
            dep = by_url.get(ref)
            if dep is not None:
                visit(dep)
        visiting.discard(item.index)
        done.add(item.index)
        order.append(item)

    for item in writes:
        visit(item)
    return order + [i for i in items if i.method == "GET"]


def _run(ctx: FhirContext, item: Prepared, minimal: bool = False) -> dict[str, Any]:
    if item.method == "GET":
        path, _, query = item.url.partition("?")
        parts = [p for p in path.split("/") if p]
        if len(parts) == 2:
            body = handler.read(ctx, parts[0], parts[1])
            return {"resource": body, "response": {"status": "200 OK"}}
        if len(parts) == 1:
            body = handler.search(ctx, parts[0], parse_qsl(query, keep_blank_values=True))
            return {"resource": body, "response": {"status": "200 OK"}}
        raise FhirError(400, f"cannot GET {item.url!r} in a bundle")
    assert item.resource is not None
    if item.method == "POST":
        result = handler.create(
            ctx, item.resource, if_none_exist=item.if_none_exist, minimal=minimal
        )
    else:
        parts = [p for p in item.url.split("?")[0].split("/") if p]
        if len(parts) != 2:
            raise FhirError(400, "PUT needs request.url Type/id", expression=["request.url"])
        result = handler.update(ctx, parts[1], item.resource)
    if item.full_url and result.location is not None:
        rtype, _, rid = result.location.rpartition("/")
        ctx.refs[item.full_url] = (rtype.rpartition("/")[2], _uuid(rid))
    status = {200: "200 OK", 201: "201 Created"}[result.status]
    answer: dict[str, Any] = {"fullUrl": result.location}
    if result.resource is not None:
        answer["resource"] = result.resource
    answer["response"] = {"status": status, "location": result.location}
    return answer


def _uuid(value: str) -> Any:
    import uuid

    return uuid.UUID(value)


def _run_isolated(ctx: FhirContext, item: Prepared, minimal: bool = False) -> dict[str, Any]:
    """One batch entry in a savepoint: a failure undoes only this entry, and its audit
    events (except denials, which must survive) are dropped with it."""
    pending = ctx.session.info.setdefault(audit.PENDING_KEY, [])
    mark = len(pending)
    savepoint = ctx.session.begin_nested()
    known = dict(ctx.source_ids)
    try:
        response = _run(ctx, item, minimal)
        savepoint.commit()
        return response
    except (DomainError, FhirError) as exc:
        savepoint.rollback()
        ctx.source_ids = known  # what the rolled-back entry created does not exist
        kept = [d for d in pending[mark:] if d.survives_rollback]
        del pending[mark:]
        pending.extend(kept)
        error = from_domain(exc, _rtype(item)) if isinstance(exc, DomainError) else exc
        return _error_entry(error)


def _error_entry(error: FhirError) -> dict[str, Any]:
    return {
        "response": {
            "status": str(error.status),
            "outcome": outcome(error.issues),
        }
    }
