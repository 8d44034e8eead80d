"""batch and transaction Bundles.

A transaction is all-or-nothing: every entry runs in the caller's one database
transaction and the first failure raises (the unit of work rolls everything back).
``urn:uuid:`` fullUrls are resolved: entries are ordered so that a resource is created
before the entries that refer to it. A batch runs each entry in a savepoint and answers
each entry with its own status.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel

from medalliance.audit import service as audit
from medalliance.fhir import bulk, handler, parsing, store, systems
from medalliance.fhir.context import FhirContext
from medalliance.fhir.outcome import FhirError, from_domain, outcome
from medalliance.fhir.registry import Written
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
    refs: set[str] = field(default_factory=set)  # every reference the resource makes
    depends_on: set[int] = field(default_factory=set)  # entries (indices) it refers to


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
        _link(prepared)
        for step in _plan(ctx, prepared):
            if len(step) > 1:
                _run_group(ctx, step, minimal, responses)
                continue
            item = step[0]
            try:
                responses[item.index] = _run(ctx, item, minimal)
            except DomainError as exc:
                raise _at(from_domain(exc, _rtype(item)), item) from exc
            except FhirError as exc:
                raise _at(exc, item) from exc
        kind_out = "transaction-response"
    else:
        for step in _batch_steps(ctx, prepared):
            if len(step) > 1 and _group_isolated(ctx, step, minimal, responses):
                continue
            for item in step:
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
            item.refs = _refs(raw)
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
    found = store.owners_of_values(ctx.session, systems.SOURCE_ID, wanted)
    for key in wanted:
        ctx.source_ids[key] = found.get(key)


def _refs(obj: Any) -> set[str]:
    found: set[str] = set()
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str):
                found.add(ref)
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return found


def _link(items: list[Prepared]) -> None:
    """What each write refers to inside the Bundle: a ``urn:uuid:`` fullUrl, the
    sender's ``Type/id``, or a conditional ``Type?identifier=system|value``."""
    names: dict[str, int] = {}
    for item in items:
        if item.method not in ("POST", "PUT"):
            continue
        rtype, rid = item.raw.get("resourceType"), item.raw.get("id")
        if item.full_url:
            names[item.full_url] = item.index
        if rtype and rid:
            names[f"{rtype}/{rid}"] = item.index
        for ident in item.raw.get("identifier") or []:
            if isinstance(ident, dict) and rtype:
                names[f"{rtype}?identifier={ident.get('system')}|{ident.get('value')}"] = item.index
    for item in items:
        item.depends_on = {
            names[ref] for ref in item.refs if ref in names and names[ref] != item.index
        }


def _plan(ctx: FhirContext, items: list[Prepared]) -> list[list[Prepared]]:
    """The order of a transaction: a write after the writes it refers to (cycles keep
    order), reads last. Writes are taken in waves (what depends on nothing in the
    Bundle, then what depends on those …); inside a wave, plain creates of one type are
    one group for the mapper's ``create_many``. A conditional create or an update runs
    alone, after the groups before it: it sees everything written before it, as one by
    one."""
    writes = [i for i in items if i.method in ("POST", "PUT")]
    by_index = {i.index: i for i in writes}
    depth: dict[int, int] = {}

    def level(item: Prepared, visiting: set[int]) -> int:
        if item.index not in depth:
            visiting.add(item.index)
            deps = [by_index[d] for d in item.depends_on if d in by_index and d not in visiting]
            depth[item.index] = max((level(d, visiting) + 1 for d in deps), default=0)
            visiting.discard(item.index)
        return depth[item.index]

    for item in writes:
        level(item, set())
    steps: list[list[Prepared]] = []
    run: dict[str, list[Prepared]] = {}

    def close_run() -> None:
        for group in run.values():
            steps.append(group)
        run.clear()

    current = 0
    for item in sorted(writes, key=lambda i: (depth[i.index], i.index)):
        if depth[item.index] != current:
            close_run()
            current = depth[item.index]
        if _plain_create_of_many(ctx, item):
            run.setdefault(_rtype(item), []).append(item)
        else:
            close_run()
            steps.append([item])
    close_run()
    return steps + [[i] for i in items if i.method == "GET"]


def _run_group(
    ctx: FhirContext,
    items: list[Prepared],
    minimal: bool,
    responses: list[dict[str, Any] | None],
) -> None:
    """Plain creates of one type through the mapper's ``create_many``."""
    rtype = _rtype(items[0])
    mapper = ctx.registry.get(rtype)
    handler.need_create(mapper)
    fresh: list[Prepared] = []
    written: dict[int, Written] = {}
    again: dict[int, int] = {}  # a sender id repeated in the group -> its first entry
    first_of: dict[str, int] = {}
    for item in items:
        assert item.resource is not None
        known = handler.already_imported(ctx, mapper, item.resource)
        sender_id = str(item.raw.get("id") or "") if ctx.keep_source_ids else ""
        if known is not None:
            written[item.index] = known
        elif sender_id and sender_id in first_of:
            again[item.index] = first_of[sender_id]
        else:
            if sender_id:
                first_of[sender_id] = item.index
            fresh.append(item)
    try:
        made = mapper.create_many(ctx, [i.resource for i in fresh])  # type: ignore[attr-defined]
    except bulk.EntryFailed as failed:
        item, exc = fresh[failed.position], failed.error
        error = from_domain(exc, rtype) if isinstance(exc, DomainError) else exc
        raise _at(error, item) from exc
    for item, w in zip(fresh, made, strict=True):
        written[item.index] = w
    for index, first in again.items():  # the same resource sent twice: as one by one
        written[index] = Written(rtype, written[first].id, created=False)
    handler.keep_sender_ids(
        ctx, mapper, [(i.resource, w) for i, w in zip(fresh, made, strict=True) if i.resource]
    )
    if fresh:
        ctx.created(rtype)
    bodies: dict[uuid.UUID, dict[str, Any]] = {}
    if not minimal:
        ids = list(dict.fromkeys(w.id for w in written.values()))
        bodies = dict(zip(ids, handler.created_bodies(ctx, mapper, ids), strict=True))
    for item in items:
        w = written[item.index]
        location = ctx.url(rtype, w.id)
        if item.full_url:
            ctx.refs[item.full_url] = (rtype, w.id)
        answer: dict[str, Any] = {"fullUrl": location}
        if w.id in bodies:
            answer["resource"] = bodies[w.id]
        answer["response"] = {
            "status": "201 Created" if w.created else "200 OK",
            "location": location,
        }
        responses[item.index] = answer


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
    return uuid.UUID(value)


def _batch_steps(ctx: FhirContext, items: list[Prepared]) -> list[list[Prepared]]:
    """A batch in its own order, with runs of plain creates of one type (an NDJSON
    chunk) taken together for the mapper's ``create_many``."""
    steps: list[list[Prepared]] = []
    names: set[str] = set()  # what the current run's entries are called
    for item in items:
        if (
            steps
            and _plain_create_of_many(ctx, item)
            and _plain_create_of_many(ctx, steps[-1][0])
            and _rtype(steps[-1][0]) == _rtype(item)
            and not item.refs & names  # one naming an earlier one waits for it, as in order
        ):
            steps[-1].append(item)
        else:
            steps.append([item])
            names = set()
        names.update(_names_of(item))
    return steps


def _names_of(item: Prepared) -> set[str]:
    rtype, rid = item.raw.get("resourceType"), item.raw.get("id")
    return {n for n in (item.full_url, f"{rtype}/{rid}" if rtype and rid else None) if n}


def _plain_create_of_many(ctx: FhirContext, item: Prepared) -> bool:
    """A create without conditions, of a type whose mapper writes groups."""
    rtype = _rtype(item)
    return (
        item.method == "POST"
        and not item.if_none_exist
        and rtype in ctx.registry
        and hasattr(ctx.registry[rtype], "create_many")
    )


def _group_isolated(
    ctx: FhirContext,
    items: list[Prepared],
    minimal: bool,
    responses: list[dict[str, Any] | None],
) -> bool:
    """Batch entries as one group, in a savepoint. If any entry fails, nothing of the
    group stays and False tells the caller to run them one by one, so each gets its
    own answer (the usual case, a clean chunk, costs one group)."""
    mark = audit.pending_mark(ctx.session)
    savepoint = ctx.session.begin_nested()
    known = ctx.mark()
    try:
        _run_group(ctx, items, minimal, responses)
        savepoint.commit()
        return True
    except (DomainError, FhirError):
        savepoint.rollback()
        ctx.back_to(known)
        # the entries are redone one by one next, which audits each denial again
        audit.discard_since(ctx.session, mark, keep_denials=False)
        for item in items:
            responses[item.index] = None
        return False


def _run_isolated(ctx: FhirContext, item: Prepared, minimal: bool = False) -> dict[str, Any]:
    """One batch entry in a savepoint: a failure undoes only this entry, and its audit
    events (except denials, which must survive) are dropped with it."""
    mark = audit.pending_mark(ctx.session)
    savepoint = ctx.session.begin_nested()
    known = ctx.mark()
    try:
        response = _run(ctx, item, minimal)
        savepoint.commit()
        return response
    except (DomainError, FhirError) as exc:
        savepoint.rollback()
        ctx.back_to(known)  # what the rolled-back entry created does not exist
        audit.discard_since(ctx.session, mark)
        error = from_domain(exc, _rtype(item)) if isinstance(exc, DomainError) else exc
        return _error_entry(error)


def _error_entry(error: FhirError) -> dict[str, Any]:
    return {
        "response": {
            "status": str(error.status),
            "outcome": outcome(error.issues),
        }
    }
