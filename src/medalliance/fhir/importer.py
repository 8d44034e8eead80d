"""``medalliance fhir import``: files or folders of Bundles (JSON) or NDJSON, loaded through
the same handler as the API. Nothing is dropped silently: resources of types the
platform does not map are counted per type, failures are listed, and references that
point at nothing in the input or the database are reported without failing the import.

Imports keep each sender's resource id (``urn:medalliance:id:source-id``), so a resource
seen again (the same hospital in forty patient bundles, or a second run) maps onto what
exists instead of being created twice.

``run(path, workers=N)`` on PostgreSQL imports with N processes (``fhir.parallel_import``):
the files others refer to (Organization, Location, Practitioner, PractitionerRole, judged
by content) first, here and one by one; then the rest side by side. Two transactions may
still race to create the same resource: the loser's unique violation (or a deadlock, a
serialization failure) rolls its Bundle back, and the Bundle is run again, finding what
the winner created through its sender id. SQLite serialises writers: one process there.
"""

from __future__ import annotations

import gc
import gzip
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
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
# What other files refer to: a file of only these is imported before the others, serially.
SHARED_TYPES = frozenset(TYPE_ORDER[:4])
# A transaction lost a race with another one (unique violation, serialization failure,
# deadlock): run the Bundle again, at most this many times.
RACE_SQLSTATES = frozenset({"23505", "40001", "40P01"})
RACE_RETRIES = 3
# Every reference value in a resource's JSON text (one C pass instead of a walk over the
# parsed resource; only a key followed by a colon and a string matches).
_REFERENCE_VALUE = re.compile(r'"reference"\s*:\s*"((?:[^"\\]|\\.)*)"')


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
    workers: int = 1  # processes that imported (1: this one)
    retries: int = 0  # Bundles run again after losing a race with another transaction
    worker_cpu_s: float = 0.0  # CPU seconds of the worker processes' imports
    # internal: what the input holds and what it refers to
    _seen: set[str] = field(default_factory=set)
    _refs: Counter[str] = field(default_factory=Counter)

    def merge(self, other: ImportSummary) -> None:
        """Add a worker's summary of its files (dangling references are computed once,
        at the end, over the union of what every worker saw and referred to)."""
        self.files += other.files
        for mine, theirs in (
            (self.created, other.created),
            (self.already_present, other.already_present),
            (self.not_modelled, other.not_modelled),
            (self.not_yet_modelled, other.not_yet_modelled),
            (self.read_only, other.read_only),
            (self.failed_by_type, other.failed_by_type),
            (self.left_out, other.left_out),
            (self._refs, other._refs),
        ):
            mine.update(theirs)
        self.failed.extend(other.failed)
        self.retries += other.retries
        self.worker_cpu_s += other.worker_cpu_s
        self._seen |= other._seen

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


_RESOURCE_TYPE = re.compile(rb'"resourceType"\s*:\s*"([A-Za-z]+)"')


def content_kind(path: Path, block: int = 1 << 16) -> tuple[str | None, bool]:
    """(the first resource type in the file, whether it holds only shared types:
    Organization, Location, Practitioner, PractitionerRole). Judged by content, reading
    only until a type that is not shared shows (a patient Bundle: its first block)."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    first: str | None = None
    tail = b""
    with opener(path, "rb") as handle:
        while chunk := handle.read(block):
            text = tail + chunk
            for match in _RESOURCE_TYPE.finditer(text):
                rtype = match.group(1).decode()
                if rtype == "Bundle":
                    continue
                first = first or rtype
                if rtype not in SHARED_TYPES:
                    return first, False
            tail = text[-64:]  # a match cut by the block boundary is found next time
    return first, first is not None


def plan(files: list[Path]) -> tuple[list[Path], list[list[Path]]]:
    """A parallel import's order: the files of shared resources, one after the other
    (Organizations first), then phases whose files run side by side: the other JSON
    files, then NDJSON by the type of its resources (Patient, Encounter, the rest), so
    that relative references between NDJSON files resolve as in a serial import."""
    serial: list[tuple[int, str, Path]] = []
    phases: dict[int, list[Path]] = {}
    for file in files:
        rtype, shared = content_kind(file)
        rank = TYPE_ORDER.index(rtype) if rtype in TYPE_ORDER else len(TYPE_ORDER)
        if shared:
            serial.append((rank, file.name, file))
        else:
            phases.setdefault(1 + rank if ".ndjson" in file.name else 0, []).append(file)
    # largest first inside a phase: the last file to finish is then a small one
    return [f for _, _, f in sorted(serial, key=lambda t: t[:2])], [
        sorted(phases[k], key=lambda f: (-f.stat().st_size, f.name)) for k in sorted(phases)
    ]


def _race(exc: BaseException) -> bool:
    """Whether the error (or what caused it: a domain Conflict raised from a unique
    violation) is a transaction losing a race with another one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError):
            orig = current.orig
            if getattr(orig, "sqlstate", None) in RACE_SQLSTATES:
                return True
        current = current.__cause__ or current.__context__
    return False


def collect_for_bulk() -> tuple[int, int, int]:
    """Python's cycle collector set for an import: each Bundle parses into many
    short-lived objects, and every full collection also walks what was loaded before
    (the FHIR models, the mappers). Freeze that and collect less often (measured here:
    7-20 % less CPU per resource). Returns the thresholds before."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    return before


@contextmanager
def bulk_collection() -> Iterator[None]:
    """``collect_for_bulk`` for a block; the settings come back afterwards. Where the
    program froze objects itself (an app server's preload), that stays as it was."""
    if gc.get_freeze_count():
        yield
        return
    before = collect_for_bulk()
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def database_url_of(factory: sessionmaker[Session]) -> str | None:
    """The URL worker processes connect to: the factory's engine's (None when the
    factory is bound to a connection, e.g. a test's transaction, invisible to others)."""
    bind = factory.kw.get("bind")
    if isinstance(bind, Engine):
        return bind.url.render_as_string(hide_password=False)
    return None


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

    def run(
        self, path: Path, progress: Progress | None = None, *, workers: int = 1
    ) -> ImportSummary:
        """Import a file or folder. ``workers`` > 1 imports with that many processes
        on PostgreSQL, each with its own engine on this factory's database (one on
        SQLite); the summary is the same as a serial import's."""
        files = files_in(path)
        workers = self.usable_workers(workers)
        with bulk_collection():
            if workers == 1:
                for file in files:
                    self.import_file(file, progress)
            else:
                from medalliance.fhir import parallel_import

                serial, phases = plan(files)
                parallel_import.run_phases(self, serial, phases, progress, workers)
        self._report_dangling()
        return self.summary

    def usable_workers(self, wanted: int) -> int:
        """How many processes this database takes: SQLite serialises writers, so one."""
        if wanted < 1:
            raise ValueError(f"workers must be at least 1, not {wanted}")
        bind = self.factory.kw.get("bind")
        if wanted == 1 or bind is None or bind.dialect.name != "postgresql":
            return 1
        if database_url_of(self.factory) is None:
            raise ValueError(
                "a parallel import needs a session factory bound to an engine: "
                "the workers connect to its database themselves"
            )
        from medalliance.fhir.resources import REGISTRY

        if self.registry is not REGISTRY:
            raise ValueError("a parallel import uses the platform's registry (fhir.resources)")
        return wanted

    def import_file(self, file: Path, progress: Progress | None = None) -> None:
        self.summary.files += 1
        if ".ndjson" in file.name:
            self._ndjson(file, progress)
        else:
            self._json(file, progress)

    # --- inputs -------------------------------------------------------------------------

    def _json(self, file: Path, progress: Progress | None) -> None:
        try:
            with _open(file) as handle:
                text = handle.read()
            data = json.loads(text)
        except ValueError as exc:
            self.summary.failed.append((file.name, f"not JSON: {exc}"))
            return
        if not isinstance(data, dict):
            self.summary.failed.append((file.name, "not a FHIR resource or Bundle"))
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
        self._count_references(text)
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
                self._count_references(line)
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
        """One Bundle in one transaction, run again (at most ``RACE_RETRIES`` times) when
        it lost a race with another transaction: the rollback undid all of it, and the
        sender ids make the new run map onto what the winner created."""
        entries = data.get("entry") or []
        attempt = 0
        while True:
            skipped = bundle.Skipped()
            try:
                with unit_of_work(self.factory) as session:
                    ctx = self._ctx(session)
                    result = bundle.process(ctx, data, skip_unmodelled=skipped, minimal=True)
                break
            except (FhirError, DomainError, DBAPIError) as exc:
                race = _race(exc)
                if race and attempt < RACE_RETRIES:
                    attempt += 1
                    self.summary.retries += 1
                    continue
                if isinstance(exc, DBAPIError) and not (race or isinstance(exc, IntegrityError)):
                    raise  # the database is gone or the like: the import stops, as ever
                self._failed_bundle(exc, entries, where)
                self._count_skipped(skipped)
                return
        for ref in ctx.left_out:
            match = REFERENCE.match(ref.split("?")[0] + "/x" if "?" in ref else ref)
            self.summary.left_out[match.group(1) if match else "other"] += 1
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

    def _failed_bundle(self, exc: Exception, entries: list[Any], where: str) -> None:
        if isinstance(exc, DBAPIError):
            first = (str(exc.orig).splitlines() or [type(exc.orig).__name__])[0]
            why = f"database refused the Bundle: {first}"
        else:
            error = from_domain(exc) if isinstance(exc, DomainError) else exc
            assert isinstance(error, FhirError)
            why = error.diagnostics
        self.summary.failed.append((where, why))
        for entry in entries:
            rtype = (entry.get("resource") or {}).get("resourceType", "?")
            if self.registry.writable(rtype):
                self.summary.failed_by_type[rtype] += 1

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
        """What the input names this resource by (its references: ``_count_references``)."""
        rtype, rid = resource.get("resourceType"), resource.get("id")
        seen = self.summary._seen
        if rtype and rid:
            seen.add(f"{rtype}/{rid}")
        identifiers = resource.get("identifier")
        if identifiers and rtype:
            for ident in identifiers:
                if isinstance(ident, dict):
                    seen.add(f"{rtype}?identifier={ident.get('system')}|{ident.get('value')}")
        if full_url:
            seen.add(full_url)

    def _count_references(self, text: str) -> None:
        """Every ``"reference": "…"`` in the JSON text of the input's resources."""
        found = _REFERENCE_VALUE.findall(text)
        if any("\\" in ref for ref in found):
            found = [json.loads(f'"{ref}"') if "\\" in ref else ref for ref in found]
        self.summary._refs.update(found)

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
