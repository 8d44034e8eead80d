"""api_read: an authenticated, audited API read against a bare FastAPI endpoint
returning the same JSON, measured in the same run, reported as a ratio.

The audited read is ``GET /api/practitioners/{id}``: bearer JWT with registry:read,
the practitioner loaded, and a hash-chained audit row appended in the same transaction
before the commit. The baseline (``benchmarks.baseline_app``) returns the identical
JSON body from a sync endpoint. Both run as real uvicorn processes on 127.0.0.1 and
are loaded alternately (baseline, app, baseline, app …); medians are reported.

Afterwards the audit trail of the bench database is verified and its growth compared
with the number of successful app requests: every read must have left one row.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import func, select

from benchmarks.baseline_app import BODY_FILE_ENV
from benchmarks.harness import (
    BenchmarkError,
    BenchmarkResult,
    Check,
    Options,
    Ratio,
    UvicornServer,
    Variant,
    ratios_per_round,
    recreate_database,
    run_load,
)
from medalliance import wiring
from medalliance.audit import service as audit
from medalliance.audit.models import AuditEvent
from medalliance.db import migrate
from medalliance.db.engine import build_engine, build_session_factory, normalise_url
from medalliance.demo.seed import DEMO_PASSWORD, seed_demo

NAME = "api_read"
TITLE = "Authenticated, audited API read vs bare FastAPI endpoint"
USERNAME = "clinician"


@dataclass(frozen=True, slots=True)
class Prepared:
    token: str
    practitioner_id: str
    body: bytes


def _prepare(base_url: str) -> Prepared:
    """Log in, pick a practitioner, capture the body of one real audited read."""
    with httpx.Client(base_url=base_url, timeout=30.0, trust_env=False) as client:
        login = client.post(
            "/api/auth/token", data={"username": USERNAME, "password": DEMO_PASSWORD}
        )
        if login.status_code != 200:
            raise BenchmarkError(f"Login failed: HTTP {login.status_code} {login.text[:300]}")
        token = str(login.json()["access_token"])
        headers = {"Authorization": f"Bearer {token}"}
        listing = client.get("/api/practitioners", params={"limit": 1}, headers=headers)
        if listing.status_code != 200 or not listing.json():
            raise BenchmarkError(
                f"Listing practitioners failed: HTTP {listing.status_code} {listing.text[:300]}"
            )
        practitioner_id = str(listing.json()[0]["id"])
        read = client.get(f"/api/practitioners/{practitioner_id}", headers=headers)
        if read.status_code != 200:
            raise BenchmarkError(f"Audited read failed: HTTP {read.status_code} {read.text[:300]}")
        return Prepared(token=token, practitioner_id=practitioner_id, body=read.content)


def _audit_row_count(database_url: str) -> int:
    engine = build_engine(database_url)
    try:
        with build_session_factory(engine)() as session:
            return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)
    finally:
        engine.dispose()


def _verify_chain(database_url: str) -> audit.VerifyReport:
    engine = build_engine(database_url)
    try:
        with build_session_factory(engine)() as session:
            return audit.verify(session)
    finally:
        engine.dispose()


def run(options: Options) -> BenchmarkResult:
    started = time.monotonic()
    url = normalise_url(options.database_url)
    wiring.load_all()
    recreate_database(url)
    migrate.upgrade(url)
    seed_demo(url, patients=0)  # the registry and accounts; the read needs no patients
    setup_s = time.monotonic() - started

    app = Variant(
        "medalliance",
        "GET /api/practitioners/{id}: JWT, permission check, DB read, audit row, commit",
    )
    baseline = Variant("baseline", "bare FastAPI sync endpoint returning the same JSON")
    with tempfile.TemporaryDirectory(prefix="medalliance-bench-") as tmp, ExitStack() as stack:
        tmp_dir = Path(tmp)
        app_server = stack.enter_context(
            UvicornServer(
                "medalliance",
                "medalliance.app:app_factory",
                env={
                    "MEDALLIANCE_DATABASE_URL": url,
                    "MEDALLIANCE_SECRET_KEY": secrets.token_urlsafe(48),
                    "MEDALLIANCE_DEMO_MODE": "false",
                    "MEDALLIANCE_LOG_SQL": "false",
                },
                log_path=tmp_dir / "medalliance.log",
                ready_path="/api/health",
            )
        )
        prepared = _prepare(app_server.base_url)
        body_file = tmp_dir / "practitioner.json"
        body_file.write_bytes(prepared.body)
        baseline_server = stack.enter_context(
            UvicornServer(
                "baseline",
                "benchmarks.baseline_app:create_app",
                env={BODY_FILE_ENV: str(body_file)},
                log_path=tmp_dir / "baseline.log",
            )
        )
        path = f"/api/practitioners/{prepared.practitioner_id}"
        headers = {"Authorization": f"Bearer {prepared.token}", "Accept": "application/json"}
        with httpx.Client(timeout=30.0, trust_env=False) as client:
            baseline_body = client.get(baseline_server.base_url + path, headers=headers).content
        rows_before = _audit_row_count(url)

        for _ in range(options.rounds):
            for variant, server in ((baseline, baseline_server), (app, app_server)):
                variant.rounds.append(
                    run_load(
                        label=variant.name,
                        url=server.base_url + path,
                        headers=headers,
                        options=options,
                        server_pid=server.pid,
                    )
                )
        rows_after = _audit_row_count(url)
        server_logs = {s.name: s.log_tail(10) for s in (app_server, baseline_server)}

    report = _verify_chain(url)
    grew = rows_after - rows_before
    app_ok = app.total_ok
    app_failed = sum(r.total_errors for r in app.rounds)
    checks = [
        Check(
            "baseline returns the same JSON",
            json.loads(baseline_body) == json.loads(prepared.body),
            f"{len(prepared.body)} bytes; byte-identical: {baseline_body == prepared.body}",
        ),
        Check(
            "audit rows grew by the successful app requests",
            grew == app_ok,
            f"audit_events grew by {grew:,}; successful app requests (warm-up and measured "
            f"windows included) {app_ok:,}; failed app requests {app_failed:,}",
        ),
        Check(
            "audit chain verifies",
            report.ok,
            f"audit.verify: {report.rows_checked:,} rows checked, "
            f"{len(report.problems)} problem(s)"
            + "".join(f"; {p.message}" for p in report.problems[:3]),
        ),
        Check(
            "no request errors",
            app.errors == 0 and baseline.errors == 0 and app_failed == 0,
            f"errors in measured windows: medalliance {app.errors}, baseline {baseline.errors}",
        ),
    ]
    notes = [
        f"Setup (create database, migrate, seed): {setup_s:.1f} s; "
        f"practitioner {prepared.practitioner_id}, body {len(prepared.body)} bytes.",
    ]
    for variant in (baseline, app):
        samples = [s for r in variant.rounds for s in r.error_samples]
        if samples:
            notes.append(f"{variant.name} error samples: " + " | ".join(samples[:3]))
            notes.append(f"{variant.name} server log tail: {server_logs[variant.name]}")

    ratios = [
        Ratio(
            "req/s medalliance ÷ baseline",
            app.requests_per_s / baseline.requests_per_s if baseline.requests_per_s else 0.0,
            "share of the bare endpoint's throughput the audited read keeps",
            ratios_per_round(app, baseline, lambda r: r.requests_per_s),
        ),
        Ratio(
            "p50 latency medalliance ÷ baseline",
            app.p50_ms / baseline.p50_ms if baseline.p50_ms else 0.0,
            "how many times slower the median audited read is",
            ratios_per_round(app, baseline, lambda r: r.p50_ms),
        ),
    ]
    app_cpu, baseline_cpu = app.server_cpu_us_per_request, baseline.server_cpu_us_per_request
    if app_cpu is not None and baseline_cpu:
        ratios.append(
            Ratio(
                "server CPU per request medalliance ÷ baseline",
                app_cpu / baseline_cpu,
                "CPU the server process spends per request, PostgreSQL's own excluded; "
                "independent of how fast the client is",
                ratios_per_round(app, baseline, lambda r: r.server_cpu_us_per_request),
            )
        )
    return BenchmarkResult(
        name=NAME,
        title=TITLE,
        description=(
            "`GET /api/practitioners/{id}` as the demo clinician (bearer JWT with "
            "registry:read; one hash-chained audit row written in the same transaction "
            "before the commit) against a bare FastAPI sync endpoint on the same route "
            "returning the identical JSON body. Both are uvicorn processes on 127.0.0.1, "
            "loaded alternately in the same run."
        ),
        variants=[baseline, app],
        ratios=ratios,
        checks=checks,
        notes=notes,
        elapsed_s=time.monotonic() - started,
    )
