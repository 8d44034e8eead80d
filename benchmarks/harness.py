"""Shared pieces of the benchmarks: options and results, a bench database, uvicorn
server processes and an asyncio HTTP load generator.

Everything here is bounded in time: servers get a start-up deadline and are stopped
with terminate → wait → kill; the load generator stops issuing requests at its
deadline and the whole run is wrapped in a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from medalliance.db.engine import normalise_url

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/medalliance_bench"
LOOPBACK = "127.0.0.1"
REQUEST_TIMEOUT_S = 30.0
SERVER_START_TIMEOUT_S = 60.0
SERVER_STOP_TIMEOUT_S = 10.0


class BenchmarkError(RuntimeError):
    """The benchmark could not be run (bad settings, a server that would not start …)."""


# --- options and results ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    database_url: str = DEFAULT_DATABASE_URL
    duration: float = 10.0
    warmup: float = 2.0
    concurrency: int = 8
    rounds: int = 3


@dataclass(slots=True)
class LoadResult:
    """One load phase against one server: the measured window after the warm-up."""

    label: str
    concurrency: int
    window_s: float
    requests: int
    errors: int
    latencies_s: list[float]
    total_ok: int
    total_errors: int
    server_cpu_s: float | None
    client_cpu_s: float
    error_samples: list[str] = field(default_factory=list)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.window_s if self.window_s > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_s, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_s, 99) * 1000

    @property
    def server_cpu_pct(self) -> float | None:
        if self.server_cpu_s is None or self.window_s <= 0:
            return None
        return 100 * self.server_cpu_s / self.window_s

    @property
    def client_cpu_pct(self) -> float:
        return 100 * self.client_cpu_s / self.window_s if self.window_s > 0 else 0.0

    @property
    def server_cpu_us_per_request(self) -> float | None:
        """Server process CPU per request served in the window (the database's excluded)."""
        if self.server_cpu_s is None or self.requests == 0:
            return None
        return 1e6 * self.server_cpu_s / self.requests


@dataclass(slots=True)
class Variant:
    """One side of a comparison, measured in several rounds; reported as medians."""

    name: str
    description: str
    rounds: list[LoadResult] = field(default_factory=list)

    @property
    def requests_per_s(self) -> float:
        return statistics.median(r.requests_per_s for r in self.rounds)

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.rounds)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.rounds)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.rounds)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.rounds)

    @property
    def total_ok(self) -> int:
        return sum(r.total_ok for r in self.rounds)

    @property
    def server_cpu_pct(self) -> float | None:
        values = [r.server_cpu_pct for r in self.rounds]
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    @property
    def client_cpu_pct(self) -> float:
        return statistics.median(r.client_cpu_pct for r in self.rounds)

    @property
    def server_cpu_us_per_request(self) -> float | None:
        values = [r.server_cpu_us_per_request for r in self.rounds]
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None


@dataclass(frozen=True, slots=True)
class Ratio:
    label: str
    value: float
    meaning: str
    per_round: tuple[float, ...] = ()


def ratios_per_round(
    numerator: Variant, denominator: Variant, figure: Callable[[LoadResult], float | None]
) -> tuple[float, ...]:
    """The ratio within each round (round i of one variant against round i of the other)."""
    result = []
    for top, bottom in zip(numerator.rounds, denominator.rounds, strict=False):
        a, b = figure(top), figure(bottom)
        if a is not None and b:
            result.append(a / b)
    return tuple(result)


@dataclass(frozen=True, slots=True)
class Check:
    label: str
    ok: bool
    detail: str


@dataclass(slots=True)
class BenchmarkResult:
    name: str
    title: str
    description: str
    variants: list[Variant]
    ratios: list[Ratio]
    checks: list[Check]
    notes: list[str]
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; 0 for an empty list."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# --- the bench database ------------------------------------------------------------------


def parse_url(url: str) -> URL:
    return make_url(normalise_url(url))


def recreate_database(url: str) -> None:
    """Drop and create the bench database (PostgreSQL) or delete the file (SQLite).

    Refuses any database whose name does not contain "bench": this drops data.
    """
    parsed = parse_url(url)
    name = parsed.database or ""
    if parsed.get_backend_name() == "postgresql":
        if "bench" not in name or not name.replace("_", "").isalnum():
            raise BenchmarkError(
                f"Refusing to drop database {name!r}: the bench database name must contain "
                "'bench' and only letters, digits and underscores."
            )
        admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return
    if parsed.get_backend_name() == "sqlite":
        if not name or name == ":memory:":
            raise BenchmarkError("SQLite benchmarks need a file database (sqlite:///path).")
        path = Path(name)
        if "bench" not in path.name:
            raise BenchmarkError(
                f"Refusing to delete {path}: the bench database file name must contain 'bench'."
            )
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    raise BenchmarkError(f"Unsupported database {parsed.get_backend_name()!r}.")


def describe_database(url: str) -> str:
    """'PostgreSQL 15.20' or 'SQLite 3.45.1'; never raises."""
    try:
        parsed = parse_url(url)
        if parsed.get_backend_name() == "sqlite":
            return f"SQLite {sqlite3.sqlite_version}"
        if parsed.get_backend_name() == "postgresql":
            for candidate in (parsed, parsed.set(database="postgres")):
                try:
                    engine = create_engine(candidate, connect_args={"connect_timeout": 5})
                    try:
                        with engine.connect() as conn:
                            version = conn.execute(text("SHOW server_version")).scalar_one()
                    finally:
                        engine.dispose()
                    return f"PostgreSQL {version}"
                except Exception:  # noqa: S112 - try the admin database next
                    continue
        return parsed.get_backend_name()
    except Exception as exc:
        return f"unknown ({exc.__class__.__name__})"


# --- uvicorn server processes ------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and all its threads (Linux /proc)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    # After "pid (comm) ", field 3 (state) is index 0: utime is field 14, stime field 15.
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class UvicornServer:
    """``python -m uvicorn`` in a subprocess on 127.0.0.1, one worker, warnings only."""

    def __init__(
        self,
        name: str,
        app: str,
        *,
        env: Mapping[str, str],
        log_path: Path,
        factory: bool = True,
        ready_path: str = "/",
    ) -> None:
        self.name = name
        self.app = app
        self.env = dict(env)
        self.log_path = log_path
        self.factory = factory
        self.ready_path = ready_path
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchmarkError(f"{self.name} server is not running")
        return self.process.pid

    def start(self) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "uvicorn"]
        if self.factory:
            command.append("--factory")
        command += [self.app, "--host", LOOPBACK, "--port", str(self.port)]
        command += ["--workers", "1", "--log-level", "warning"]
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        with httpx.Client(base_url=self.base_url, timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise BenchmarkError(
                        f"The {self.name} server exited with status {self.process.returncode} "
                        f"while starting:\n{self.log_tail()}"
                    )
                try:
                    client.get(self.ready_path)  # any HTTP answer means it is serving
                    return
                except httpx.TransportError:
                    time.sleep(0.1)
        raise BenchmarkError(
            f"The {self.name} server did not answer within {SERVER_START_TIMEOUT_S:.0f} s:\n"
            f"{self.log_tail()}"
        )

    def stop(self) -> None:
        """Terminate, wait, kill on timeout; safe to call twice."""
        process, self.process = self.process, None
        try:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=SERVER_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            content = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(content[-lines:]) or "(empty log)"

    def __enter__(self) -> UvicornServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- load generator ----------------------------------------------------------------------


def _require_loopback(url: str) -> None:
    host = httpx.URL(url).host
    try:
        loopback = ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise BenchmarkError(f"The load generator only targets loopback addresses, not {host!r}.")


class Interrupted(Exception):
    """SIGTERM arrived during a load phase; the phase stopped cleanly."""


@contextlib.contextmanager
def _stop_on_sigterm(stop: asyncio.Event) -> Iterator[None]:
    """While loading, SIGTERM sets ``stop`` (workers finish their request and return)
    instead of raising inside the event loop, which would leave tasks that never end."""
    previous = signal.getsignal(signal.SIGTERM)
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    except (NotImplementedError, RuntimeError, ValueError):  # not Unix / not main thread
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, previous)


@dataclass(slots=True)
class _Tally:
    window_ok: int = 0
    window_errors: int = 0
    total_ok: int = 0
    total_errors: int = 0
    latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)


async def _drive(
    *,
    label: str,
    url: str,
    headers: Mapping[str, str],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    server_pid: int | None,
    expect_status: int,
) -> LoadResult:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    tally = _Tally()
    start = time.perf_counter()
    window_start = start + warmup_s
    window_end = window_start + duration_s
    cpu: dict[str, float | None] = {}
    stop = asyncio.Event()

    async def pause_until(moment: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, moment - time.perf_counter()))

    async def sample_cpu() -> None:
        await pause_until(window_start)
        cpu["server0"] = None if server_pid is None else process_cpu_seconds(server_pid)
        cpu["client0"] = time.process_time()
        await pause_until(window_end)
        cpu["server1"] = None if server_pid is None else process_cpu_seconds(server_pid)
        cpu["client1"] = time.process_time()

    async with httpx.AsyncClient(
        headers=dict(headers),
        limits=limits,
        timeout=httpx.Timeout(REQUEST_TIMEOUT_S),
        trust_env=False,
    ) as client:

        async def worker() -> None:
            while time.perf_counter() < window_end and not stop.is_set():
                began = time.perf_counter()
                try:
                    response = await client.get(url)
                except httpx.HTTPError as exc:
                    ok, problem = False, f"{exc.__class__.__name__}: {exc}"
                else:
                    ok = response.status_code == expect_status
                    problem = "" if ok else f"HTTP {response.status_code}: {response.text[:200]}"
                done = time.perf_counter()
                in_window = window_start <= done < window_end
                if ok:
                    tally.total_ok += 1
                    if in_window:
                        tally.window_ok += 1
                        tally.latencies.append(done - began)
                else:
                    tally.total_errors += 1
                    tally.window_errors += in_window
                    if len(tally.error_samples) < 5:
                        tally.error_samples.append(problem)

        tasks = [worker() for _ in range(concurrency)]
        with _stop_on_sigterm(stop):
            await asyncio.wait_for(
                asyncio.gather(sample_cpu(), *tasks),
                timeout=warmup_s + duration_s + REQUEST_TIMEOUT_S + 10,
            )
    if stop.is_set():
        raise Interrupted

    server_cpu: float | None = None
    server0, server1 = cpu.get("server0"), cpu.get("server1")
    if server0 is not None and server1 is not None:
        server_cpu = server1 - server0
    return LoadResult(
        label=label,
        concurrency=concurrency,
        window_s=duration_s,
        requests=tally.window_ok,
        errors=tally.window_errors,
        latencies_s=tally.latencies,
        total_ok=tally.total_ok,
        total_errors=tally.total_errors,
        server_cpu_s=server_cpu,
        client_cpu_s=(cpu.get("client1") or 0.0) - (cpu.get("client0") or 0.0),
        error_samples=tally.error_samples,
    )


def run_load(
    *,
    label: str,
    url: str,
    headers: Mapping[str, str],
    options: Options,
    server_pid: int | None = None,
    expect_status: int = 200,
) -> LoadResult:
    """GET ``url`` from ``options.concurrency`` connections: a warm-up, then the window.

    A request counts in the window when it completes inside it; ``total_ok`` also counts
    the warm-up and the requests still in flight at the end (they reach the server too).
    """
    _require_loopback(url)
    try:
        return asyncio.run(
            _drive(
                label=label,
                url=url,
                headers=headers,
                concurrency=options.concurrency,
                warmup_s=options.warmup,
                duration_s=options.duration,
                server_pid=server_pid,
                expect_status=expect_status,
            )
        )
    except Interrupted:
        raise SystemExit(128 + signal.SIGTERM) from None
