"""fhir_ingest: transaction-Bundle ingestion through the FHIR handler, in persisted
resources per second, against the raw parse rate of fhir.resources in the same run.

The 40 Synthea R4 patient Bundles (plus the hospital and practitioner Bundles) of
``tests/data/fhir`` are loaded as ``medalliance fhir import`` loads them: each Bundle is
one transaction through ``fhir.bundle.process`` (validation with fhir.resources, the
mappers, the domain services with the access policy, the MPI and the audit trail). The
denominator is fhir.resources alone validating the same resources on one core.

Twice, each time into a fresh database: in one process (``--workers 1``), then with a
worker process per core (``--workers N``, PostgreSQL only: SQLite takes one writer).
Both must land the same rows; the CPU per persisted resource is the parent's plus the
workers' import time (``ImportSummary.worker_cpu_s``; their start-up is not counted).
Aim (issue #5): at least 1,500 persisted resources/s on PostgreSQL, "on this 2-core
machine", i.e. with the parallel import.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import event, func, select

from benchmarks.harness import BenchmarkResult, Check, Options, Ratio, recreate_database
from medalliance import wiring
from medalliance.audit import service as audit
from medalliance.db import migrate
from medalliance.db.engine import build_engine, build_session_factory, normalise_url
from medalliance.domains.alliance.models import Alliance, Institution
from medalliance.domains.results import units
from medalliance.fhir.cli import import_actor
from medalliance.fhir.importer import Importer, ImportSummary
from medalliance.fhir.models import FhirIdentifier
from medalliance.fhir.resources import REGISTRY
from medalliance.kernel.actor import Actor

NAME = "fhir_ingest"
TITLE = "FHIR transaction-Bundle ingestion vs fhir.resources parsing alone"
DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "fhir" / "synthea-r4"
TARGET_PER_S = 1500.0


def bench_url(options: Options) -> str:
    """The run's own database: the given bench database's name + ``_fhir`` (so helpers
    running benchmarks side by side do not drop each other's database)."""
    url = normalise_url(options.database_url)
    if not url.startswith("postgres"):
        return url
    base, _, name = url.rpartition("/")
    return f"{base}/{name.split('?')[0]}_fhir"


def setup(url: str) -> tuple[Any, Actor]:
    wiring.load_all()
    recreate_database(url)
    migrate.upgrade(url)
    factory = build_session_factory(build_engine(url))
    with factory() as session:
        alliance = Alliance(code="QH", name_zh="清河医联体", name_en="Qinghe")
        session.add(alliance)
        session.flush()
        lead = Institution(
            alliance_id=alliance.id,
            code="LEAD",
            name_zh="总院",
            name_en="Lead",
            tier="lead",
            type="integrated",
        )
        session.add(lead)
        session.commit()
        actor = import_actor(lead.id, lead.code)
    assert isinstance(actor, Actor)
    return factory, actor


def modelled_resources() -> list[dict[str, Any]]:
    found = []
    for path in sorted(DATA.glob("*.json.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for entry in json.load(handle).get("entry", []):
                if REGISTRY.writable(entry["resource"]["resourceType"]):
                    found.append(entry["resource"])
    return found


def parse_rate(resources: list[dict[str, Any]], rounds: int = 3) -> tuple[float, float]:
    """fhir.resources alone: validate each resource into its R4B model (one core);
    (best wall rate, best rate per CPU second)."""
    best, best_cpu = 0.0, 0.0
    for _ in range(rounds):
        began, cpu = time.perf_counter(), time.process_time()
        for res in resources:
            get_fhir_model_class(res["resourceType"]).model_validate(res)
        best = max(best, len(resources) / (time.perf_counter() - began))
        best_cpu = max(best_cpu, len(resources) / max(time.process_time() - cpu, 1e-9))
    return best, best_cpu


@dataclass
class Ingest:
    """One import into a fresh database, and what it left there."""

    summary: ImportSummary
    wall_s: float
    cpu_s: float  # this process + the workers' imports
    statements: int | None  # this process's (None: the workers' are not counted)
    audit_ok: bool
    audit_rows: int
    institutions: int
    sender_ids: int

    @property
    def persisted(self) -> int:
        return sum(self.summary.created.values())

    @property
    def mapped(self) -> int:
        return self.persisted + sum(self.summary.already_present.values())

    @property
    def rate(self) -> float:
        return self.persisted / self.wall_s

    @property
    def cpu_ms_per_resource(self) -> float:
        return 1000 * self.cpu_s / max(self.persisted, 1)


def ingest(url: str, workers: int) -> Ingest:
    factory, actor = setup(url)
    engine = factory.kw["bind"]
    statements = [0]

    def count(*_: Any) -> None:
        statements[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    importer = Importer(factory, actor, REGISTRY)
    began = time.perf_counter()
    cpu_began = time.process_time()
    summary = importer.run(DATA, workers=workers)
    wall = time.perf_counter() - began
    cpu = time.process_time() - cpu_began + summary.worker_cpu_s
    event.remove(engine, "before_cursor_execute", count)
    with factory() as session:
        report = audit.verify(session)
        institutions = session.scalar(select(func.count()).select_from(Institution)) or 0
        senders = session.scalar(select(func.count()).select_from(FhirIdentifier)) or 0
    engine.dispose()
    return Ingest(
        summary=summary,
        wall_s=wall,
        cpu_s=cpu,
        statements=statements[0] if summary.workers == 1 else None,
        audit_ok=report.ok,
        audit_rows=report.rows_checked,
        institutions=institutions,
        sender_ids=senders,
    )


def run(options: Options) -> BenchmarkResult:
    started = time.perf_counter()
    url = bench_url(options)
    resources = modelled_resources()
    raw, raw_cpu = parse_rate(resources)
    # process warm-up, as a server's first request does it: the UCUM grammar (~1 s)
    wiring.load_all()
    units.dimension_of("mg/dL")
    cores = os.cpu_count() or 1
    one = ingest(url, workers=1)
    many = ingest(url, workers=cores)  # a fresh database again: same data, same work
    workers = many.summary.workers
    checks: list[Check] = []
    for label, run_ in (("1 process", one), (f"{workers} processes", many)):
        checks += [
            Check(
                f"{label}: nothing failed",
                not run_.summary.failed,
                f"{len(run_.summary.failed)} failures",
            ),
            Check(
                f"{label}: every mapped entry landed",
                run_.mapped == len(resources),
                f"{run_.mapped:,} of {len(resources):,}",
            ),
            Check(
                f"{label}: audit chain verifies",
                run_.audit_ok,
                f"{run_.audit_rows:,} rows",
            ),
        ]
    checks += [
        Check(
            "no duplicates: the same rows in both runs",
            (one.institutions, one.sender_ids, one.summary.created)
            == (many.institutions, many.sender_ids, many.summary.created),
            f"institutions {one.institutions} / {many.institutions}, sender ids "
            f"{one.sender_ids:,} / {many.sender_ids:,}, created {one.persisted:,} / "
            f"{many.persisted:,}",
        ),
        Check(f"aim {TARGET_PER_S:,.0f}/s", many.rate >= TARGET_PER_S, f"{many.rate:,.0f}/s"),
    ]
    summary = one.summary
    return BenchmarkResult(
        name=NAME,
        title=TITLE,
        description=(
            f"{summary.files} Synthea Bundles ({summary.total_read:,} entries, {one.mapped:,} of "
            f"mapped types, {one.persisted:,} new after de-duplicating the hospitals and "
            "practitioners every patient Bundle repeats), one transaction per Bundle, "
            "in-process through fhir.bundle.process (no HTTP), on "
            + url.split("://")[0]
            + f"; imported by 1 process, then by {workers} (a fresh database each time)"
        ),
        variants=[],
        ratios=[
            Ratio(
                f"persisted resources/s, {workers} processes ÷ 1 process",
                many.rate / one.rate,
                f"{many.rate:,.0f} /s vs {one.rate:,.0f} /s wall (meaningful on a quiet "
                "machine only)",
            ),
            Ratio(
                "persisted resources/s (1 process) ÷ fhir.resources parse rate",
                one.rate / raw,
                f"{one.rate:,.0f} /s persisted vs {raw:,.0f} /s parsed only (best of 3, "
                "one core, same resources)",
            ),
            Ratio(
                f"persisted resources/s ({workers} processes) ÷ fhir.resources parse rate",
                many.rate / raw,
                f"{many.rate:,.0f} /s persisted vs {raw:,.0f} /s parsed only",
            ),
            Ratio(
                "persisted resources per importer CPU second ÷ parsed per CPU second (1 process)",
                (one.persisted / one.cpu_s) / raw_cpu,
                f"{one.cpu_ms_per_resource:.2f} ms CPU per persisted resource; "
                f"{one.persisted / one.cpu_s:,.0f} vs {raw_cpu:,.0f} per CPU second: the "
                "importer's own cost against parsing alone (PostgreSQL's CPU not counted)",
            ),
            Ratio(
                f"persisted resources per importer CPU second ÷ parsed per CPU second "
                f"({workers} processes)",
                (many.persisted / many.cpu_s) / raw_cpu,
                f"{many.cpu_ms_per_resource:.2f} ms CPU per persisted resource over the "
                "parent and its workers: what sharing the work out costs per resource",
            ),
            Ratio(
                f"persisted resources/s ({workers} processes) ÷ the 1,500/s aim",
                many.rate / TARGET_PER_S,
                "1.0 or more meets the aim of issue #5",
            ),
        ],
        checks=checks,
        notes=[
            f"1 process: wall {one.wall_s:.1f} s, importer CPU {one.cpu_s:.1f} s; "
            f"{workers} processes: wall {many.wall_s:.1f} s, CPU {many.cpu_s:.1f} s "
            f"(parent {many.cpu_s - many.summary.worker_cpu_s:.1f} s incl. the shared "
            f"hospitals/practitioners imported first, workers "
            f"{many.summary.worker_cpu_s:.1f} s); {many.summary.retries} Bundle(s) run "
            "again after losing a race. The rest of the wall time is PostgreSQL and the "
            "machine's other load. All entries read incl. unmapped (1 process): "
            f"{summary.total_read / one.wall_s:,.0f}/s.",
            f"SQL statements (1 process): {one.statements or 0:,} "
            f"({(one.statements or 0) / max(one.persisted, 1):.2f} per persisted resource; "
            "an executemany counts once).",
            "Machine load average at the end (1, 5, 15 min): "
            + ", ".join(f"{x:.1f}" for x in os.getloadavg())
            + f" on {cores} cores.",
            f"Institutions after the run: {one.institutions}. Not yet modelled (counted, "
            "skipped): "
            + ", ".join(f"{k} {v}" for k, v in sorted(summary.not_yet_modelled.items())),
        ],
        elapsed_s=time.perf_counter() - started,
    )
