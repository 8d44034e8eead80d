"""Run the benchmarks, print a table and append a dated section to BENCHMARKS.md.

    python -m benchmarks.run [NAME ...] [--database-url URL] [--duration SECONDS]

Without names every registered benchmark runs. The database named by --database-url
is dropped and recreated: its name must contain "bench".
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import import_module, metadata
from pathlib import Path

from benchmarks.harness import (
    DEFAULT_DATABASE_URL,
    ROOT,
    BenchmarkResult,
    Options,
    describe_database,
    parse_url,
)

RESULTS_FILE = ROOT / "BENCHMARKS.md"
DATABASE_URL_ENV = "MEDALLIANCE_BENCH_DATABASE_URL"
DEFAULTS = Options()

# name -> module exposing NAME, TITLE and run(options) -> BenchmarkResult
REGISTRY: dict[str, str] = {
    "api_read": "benchmarks.bench_api_read",
    "mpi_online_match": "benchmarks.bench_patient_reads.mpi_online_match",
    "timeline_read": "benchmarks.bench_patient_reads.timeline_read",
    "mpi_linkage": "benchmarks.bench_mpi_linkage",
    "tcm_safety": "benchmarks.bench_tcm_safety",
    "monitoring_ingest": "benchmarks.bench_monitoring_ingest",
    "results_order_check": "benchmarks.bench_results_order_check",
    "results_hl7_ingest": "benchmarks.bench_results_hl7",
    "fhir_ingest": "benchmarks.bench_fhir_ingest",
    "fhir_everything": "benchmarks.bench_fhir_everything",
    "recommender": "benchmarks.bench_recommender",
}

HEADER = """\
# Benchmarks

Written by `python -m benchmarks.run` (see `benchmarks/`); each run appends a dated
section below. Run it yourself with

    python -m benchmarks.run [NAME ...] [--database-url URL] [--duration SECONDS]

## Method

- **Ratios, not absolute numbers.** Every benchmark measures MedAlliance and a baseline
  doing the least work that gives the same answer, in the same run on the same machine,
  and reports MedAlliance ÷ baseline. Absolute requests per second depend on the machine;
  the ratio says what the platform's own work (authentication, access control, the
  database, the audit trail) costs.
- **Real servers.** Each side is a real `uvicorn` process (one worker, `--log-level
  warning`, default loop and HTTP parser) listening on 127.0.0.1. The bench database is
  dropped, recreated, migrated and seeded with the demo alliance at the start of each
  benchmark.
- **Load.** A Python asyncio client (`httpx.AsyncClient`) keeps N connections busy
  (default 8) for a fixed window (default 10 s) after a 2 s warm-up; only loopback
  addresses. A request counts when it completes inside the window. Latency is measured
  per request by the client (p50 and p99, nearest rank).
- **Alternation and medians.** Baseline and MedAlliance are loaded alternately (baseline,
  app, baseline, app …) so that drift of the machine hits both; the table gives the
  median over the rounds, and the per-round figures. A ratio is median ÷ median; the
  ratios within each round are listed beside it to show the spread.
- **Correctness checks.** A figure only counts if the run also proves that the work was
  done (for the audited read: every successful request left exactly one audit row and
  the hash chain verifies).
- **Caveat: a small machine.** The reference machine has 2 CPU cores, and the Python load
  generator runs on them too: it competes with the server (and with PostgreSQL) for CPU.
  A fast baseline is then partly limited by the client, which understates the baseline
  and so flatters the ratio. The CPU columns show where the time went: the share of one
  core used by the server process and by the client during the window, and the server
  process's CPU time per request. The last is independent of the client's speed (it
  leaves out PostgreSQL's own CPU), so its ratio is reported too. Compare ratios between
  runs on the same machine, not absolute figures between machines.
"""


@dataclass(frozen=True, slots=True)
class Machine:
    cpus: int
    cpu_model: str
    python: str
    system: str
    database: str
    packages: str


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _packages() -> str:
    parts = []
    for name in ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "sqlalchemy", "httpx"):
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(parts)


def machine(database_url: str) -> Machine:
    return Machine(
        cpus=_cpu_count(),
        cpu_model=_cpu_model(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        system=platform.platform(),
        database=describe_database(database_url),
        packages=_packages(),
    )


def git_commit() -> str:
    """Short commit of HEAD, marked when the working tree has uncommitted changes.

    Read-only: ``--no-optional-locks`` keeps ``git status`` from touching the index.
    """
    git = shutil.which("git")
    if git is None:
        return "unknown (no git)"
    try:
        head = subprocess.run(
            [git, "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            [git, "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} (with uncommitted changes)" if status else head


# --- formatting ----------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} %"


def format_result(result: BenchmarkResult) -> str:
    header = [
        "variant",
        "req/s (median)",
        "req/s per round",
        "p50 ms",
        "p99 ms",
        "requests",
        "errors",
        "server CPU",
        "server CPU µs/req",
        "client CPU",
    ]
    rows = [
        [
            v.name,
            f"{v.requests_per_s:,.0f}",
            " / ".join(f"{r.requests_per_s:,.0f}" for r in v.rounds),
            f"{v.p50_ms:.2f}",
            f"{v.p99_ms:.2f}",
            f"{v.requests:,}",
            f"{v.errors:,}",
            _pct(v.server_cpu_pct),
            "n/a" if v.server_cpu_us_per_request is None else f"{v.server_cpu_us_per_request:,.0f}",
            _pct(v.client_cpu_pct),
        ]
        for v in result.variants
    ]
    parts = [f"### {result.name}: {result.title}", "", result.description, ""]
    parts += [f"- **{v.name}**: {v.description}" for v in result.variants]
    if rows:  # benchmarks without load phases (mpi_linkage) report checks and notes
        parts += ["", _table(header, rows), ""]
    else:
        parts.append("")
    for ratio in result.ratios:
        rounds = " / ".join(f"{v:.3f}" for v in ratio.per_round)
        per_round = f"; per round {rounds}" if rounds else ""
        parts.append(f"**Ratio {ratio.label}: {ratio.value:.3f}** ({ratio.meaning}{per_round})  ")
    parts.append("")
    parts += [f"- [{'x' if c.ok else ' '}] {c.label}: {c.detail}" for c in result.checks]
    parts += [f"- {note}" for note in result.notes]
    parts.append(f"- Benchmark wall time {result.elapsed_s:.0f} s.")
    return "\n".join(parts) + "\n"


def format_section(
    results: Sequence[BenchmarkResult],
    options: Options,
    host: Machine,
    when: datetime,
    commit: str,
) -> str:
    url = parse_url(options.database_url).render_as_string(hide_password=True)
    lines = [
        f"## {when:%Y-%m-%d %H:%M} UTC, commit {commit}",
        "",
        f"- Machine: {host.cpus} CPU(s), {host.cpu_model}; {host.system}",
        f"- Python: {host.python}; {host.packages}",
        f"- Database: {host.database} (`{url}`)",
        f"- Load: {options.concurrency} connections, {options.warmup:g} s warm-up + "
        f"{options.duration:g} s window, {options.rounds} round(s) per variant, alternating",
        "",
    ]
    return "\n".join(lines) + "\n" + "\n".join(format_result(r) for r in results)


def append_results(section: str, path: Path = RESULTS_FILE) -> None:
    existing = path.read_text(encoding="utf-8") if path.exists() else HEADER
    if not existing.endswith("\n"):
        existing += "\n"
    path.write_text(existing + "\n" + section, encoding="utf-8")


# --- command line --------------------------------------------------------------------------


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = kind(raw)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {raw}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all): {', '.join(REGISTRY)}",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(DATABASE_URL_ENV, DEFAULT_DATABASE_URL),
        help="bench database, dropped and recreated; PostgreSQL or sqlite:///path "
        f"(default: ${DATABASE_URL_ENV} or {DEFAULT_DATABASE_URL})",
    )
    parser.add_argument(
        "--duration",
        type=_positive(float),
        default=DEFAULTS.duration,
        help="measured seconds per phase (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=_positive(float),
        default=DEFAULTS.warmup,
        help="warm-up seconds per phase (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive(int),
        default=DEFAULTS.concurrency,
        help="concurrent connections (default: %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=_positive(int),
        default=DEFAULTS.rounds,
        help="alternating rounds per variant (default: %(default)s)",
    )
    parser.add_argument(
        "--no-record", action="store_true", help="print only; do not append to BENCHMARKS.md"
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in REGISTRY]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    return args


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    """Turn SIGTERM into SystemExit so that the servers are stopped on the way out."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    options = Options(
        database_url=args.database_url,
        duration=float(args.duration),
        warmup=float(args.warmup),
        concurrency=int(args.concurrency),
        rounds=int(args.rounds),
    )
    when, commit = datetime.now(UTC), git_commit()  # what is measured: taken at the start
    results: list[BenchmarkResult] = []
    failed: list[str] = []
    for name in dict.fromkeys(args.names or REGISTRY):
        try:
            module = import_module(REGISTRY[name])
            print(f"Running {name}: {module.TITLE} …", flush=True)
            result: BenchmarkResult = module.run(options)
        except Exception:
            traceback.print_exc()
            print(f"{name} FAILED; nothing recorded for it.", file=sys.stderr)
            failed.append(name)
            continue
        results.append(result)
        print()
        print(format_result(result), flush=True)
        if not result.ok:
            failed.append(name)
    if results:
        section = format_section(results, options, machine(options.database_url), when, commit)
        if args.no_record:
            print("Not recorded (--no-record).")
        else:
            append_results(section)
            print(f"Appended to {RESULTS_FILE}.")
    if failed:
        print(f"Failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
