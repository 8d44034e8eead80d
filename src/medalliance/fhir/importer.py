"""``medalliance fhir import``: files or folders of Bundles (JSON) or NDJSON, loaded through
the same handler as the API. Nothing is dropped silently: resources of types the
platform does not map are counted per type, failures are listed, and references that
point at nothing in the input or the database are reported without failing the import.

Imports keep each sender's resource id (``urn:medalliance:id:source-id``), so a resource
seen again (the same hospital in forty patient bundles, or a second run) maps onto what
exists instead of being created twice.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from medalliance.db.uow import unit_of_work
from medalliance.fhir import bundle
from medalliance.fhir.context import REFERENCE, FhirContext
from medalliance.fhir.outcome import FhirError, from_domain
from medalliance.fhir.registry import Registry
from medalliance.kernel.actor import Actor
from medalliance.kernel.errors import DomainError

NDJSON_CHUNK = 500
# Referenced types first, so relative references in NDJSON resolve.
TYPE_ORDER = [
    "Organization",
    "Location",
    "Practitioner",
    "PractitionerRole",
    "Patient",
    "Encounter",
]


@dataclass
class ImportSummary:
    files: int = 0
    created: Counter[str] = field(default_factory=Counter)
    already_present: Counter[str] = field(default_factory=Counter)
    not_modelled: Counter[str] = field(default_factory=Counter)
    not_yet_modelled: Counter[str] = field(default_factory=Counter)
    # mapped for read and search, but not accepted by create (DiagnosticReport,
    # MedicationRequest, Device): counted, never dropped silently
    read_only: Counter[str] = field(default_factory=Counter)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    failed_by_type: Counter[str] = field(default_factory=Counter)
    dangling: Counter[str] = field(default_factory=Counter)  # by referenced type
    dangling_examples: list[str] = field(default_factory=list)
    # optional references (a participant, a location) whose target is not mapped here
    left_out: Counter[str] = field(default_factory=Counter)
    # internal: what the input holds and what it refers to
    _seen: set[str] = field(default_factory=set)
    _refs: Counter[str] = field(default_factory=Counter)

    @property
    def total_read(self) -> int:
        return (
            sum(self.created.values())
            + sum(self.already_present.values())
            + sum(self.not_modelled.values())
            + sum(self.not_yet_modelled.values())
            + sum(self.read_only.values())
            + sum(self.failed_by_type.values())
        )


Progress = Callable[[str, int], None]


def _open(path: Path) -> Any:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def files_in(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    wanted = (".json", ".ndjson", ".json.gz", ".ndjson.gz")
    found = [p for p in path.rglob("*") if p.is_file() and p.name.endswith(wanted)]
    return sorted(found, key=_file_order)


def _file_order(path: Path) -> tuple[int, str]:
    name = path.name
    ndjson_type = name.split(".")[0]
    if ".ndjson" in name:
        rank = TYPE_ORDER.index(ndjson_type) if ndjson_type in TYPE_ORDER else len(TYPE_ORDER)
        return 10 + rank, name
    # registry bundles (hospitals, practitioners) before the patients that refer to them
    if name.startswith(("hospital", "practitioner")):
        return 0, name
    return 5, name


class Importer:
    def __init__(self, factory: sessionmaker[Session], actor: Actor, registry: Registry) -> None:
        self.factory = factory
        self.actor = actor
        self.registry = registry
        self.summary = ImportSummary()

    def _ctx(self, session: Session) -> FhirContext:
        return FhirContext(
            session=session, actor=self.actor, registry=self.registry, keep_source_ids=True
        )

    def run(self, path: Path, progress: Progress | None = None) -> ImportSummary:
        for file in files_in(path):
            self.summary.files += 1
            if ".ndjson" in file.name:
                self._ndjson(file, progress)
            else:
                self._json(file, progress)
        self._report_dangling()
        return self.summary

    # --- inputs -------------------------------------------------------------------------

    def _json(self, file: Path, progress: Progress | None) -> None:
        try:
            with _open(file) as handle:
                data = json.load(handle)
        except ValueError as exc:
            self.summary.failed.append((file.name, f"not JSON: {exc}"))
            return
        if data.get("resourceType") != "Bundle":
            data = {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {
                        "resource": data,
                        "request": {"method": "POST", "url": data.get("resourceType")},
                    }
                ],
            }
        entries = data.get("entry") or []
        for entry in entries:
            self._note(entry.get("resource") or {}, entry.get("fullUrl"))
        kind = data.get("type")
        if kind not in ("transaction", "batch"):  # collection, searchset …: create each
            data = {
                **data,
                "type": "batch",
                "entry": [
                    {
                        **e,
                        "request": {
                            "method": "POST",
                            "url": (e.get("resource") or {}).get("resourceType", ""),
                        },
                    }
                    for e in entries
                ],
            }
        self._bundle(data, file.name)
        if progress:
            progress(file.name, len(entries))

    def _ndjson(self, file: Path, progress: Progress | None) -> None:
        chunk: list[dict[str, Any]] = []
        with _open(file) as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    resource = json.loads(line)
                except ValueError as exc:
                    self.summary.failed.append((f"{file.name}:{number}", f"not JSON: {exc}"))
                    continue
                if not isinstance(resource, dict) or "resourceType" not in resource:
                    self.summary.not_modelled["(not a FHIR resource)"] += 1
                    continue
                self._note(resource, None)
                chunk.append(
                    {
                        "resource": resource,
                        "request": {"method": "POST", "url": resource.get("resourceType")},
                    }
                )
                if len(chunk) >= NDJSON_CHUNK:
                    self._bundle(
                        {"resourceType": "Bundle", "type": "batch", "entry": chunk}, file.name
                    )
                    if progress:
                        progress(file.name, len(chunk))
                    chunk = []
        if chunk:
            self._bundle({"resourceType": "Bundle", "type": "batch", "entry": chunk}, file.name)
            if progress:
                progress(file.name, len(chunk))

    def _bundle(self, data: dict[str, Any], where: str) -> None:
        skipped = bundle.Skipped()
        entries = data.get("entry") or []
        try:
            with unit_of_work(self.factory) as session:
                ctx = self._ctx(session)
                result = bundle.process(ctx, data, skip_unmodelled=skipped, minimal=True)
            for ref in ctx.left_out:
                match = REFERENCE.match(ref.split("?")[0] + "/x" if "?" in ref else ref)
                self.summary.left_out[match.group(1) if match else "other"] += 1
        except (FhirError, DomainError) as exc:
            error = from_domain(exc) if isinstance(exc, DomainError) else exc
            self.summary.failed.append((where, error.diagnostics))
            for entry in entries:
                rtype = (entry.get("resource") or {}).get("resourceType", "?")
                if self.registry.writable(rtype):
                    self.summary.failed_by_type[rtype] += 1
            self._count_skipped(skipped)
            return
        self._count_skipped(skipped)
        writable = [
            e
            for e in entries
            if self.registry.writable((e.get("resource") or {}).get("resourceType", ""))
        ]
        for entry, response in zip(writable, result["entry"], strict=False):
            rtype = (entry.get("resource") or {}).get("resourceType", "?")
            status = response["response"]["status"]
            if status.startswith("201"):
                self.summary.created[rtype] += 1
            elif status.startswith("200"):
                self.summary.already_present[rtype] += 1
            else:
                self.summary.failed_by_type[rtype] += 1
                issue = response["response"]["outcome"]["issue"][0]
                self.summary.failed.append(
                    (
                        f"{where} {rtype}/{entry['resource'].get('id')}",
                        issue.get("diagnostics", status),
                    )
                )

    def _count_skipped(self, skipped: bundle.Skipped) -> None:
        for rtype, n in skipped.counts.items():
            if rtype in self.registry.not_yet_modelled:
                self.summary.not_yet_modelled[rtype] += n
            elif rtype in self.registry:
                self.summary.read_only[rtype] += n
            else:
                self.summary.not_modelled[rtype] += n

    # --- references ---------------------------------------------------------------------

    def _note(self, resource: dict[str, Any], full_url: str | None) -> None:
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if rtype and rid:
            self.summary._seen.add(f"{rtype}/{rid}")
        for ident in resource.get("identifier") or []:
            if isinstance(ident, dict) and rtype:
                self.summary._seen.add(
                    f"{rtype}?identifier={ident.get('system')}|{ident.get('value')}"
                )
        if full_url:
            self.summary._seen.add(full_url)
        for ref in _references(resource):
            self.summary._refs[ref] += 1

    def _report_dangling(self) -> None:
        unresolved = [r for r in self.summary._refs if r not in self.summary._seen]
        if not unresolved:
            return
        with self.factory() as session:
            ctx = self._ctx(session)
            for ref in unresolved:
                if ref.startswith("#") or ctx._lookup(ref) is not None:
                    continue
                match = REFERENCE.match(ref)
                target = match.group(1) if match else ref.split(":")[0].split("?")[0]
                self.summary.dangling[target] += self.summary._refs[ref]
                if len(self.summary.dangling_examples) < 10:
                    self.summary.dangling_examples.append(ref)


def _references(obj: Any) -> Iterator[str]:
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str):
                yield ref
            stack.extend(v for k, v in node.items() if k != "reference")
        elif isinstance(node, list):
            stack.extend(node)
