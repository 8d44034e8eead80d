"""tcm_safety: a 20-herb prescription checked against a patient with 10 active Western
drugs (target: p99 ≤ 5 ms), measured two ways, each against a raw baseline:

* **pure** — ``medalliance.domains.tcm.safety.check`` in-process, one call at a time,
  against a dict-lookup loop doing the least work that gives the same pair and
  herb×drug answers (190 pair lookups and 200 herb×drug lookups on precomputed keys).
* **api** — ``POST /api/tcm/safety-check`` with ``patient_id`` (JWT, permission, the
  access policy, the patient's pregnancy, medications and allergies read from the
  database, two audit rows, commit) on a real uvicorn server, one request at a time,
  against a bare FastAPI endpoint on the same route returning the same JSON (the HTTP
  floor). Alternated rounds, medians.

Checks: the API's findings equal the pure check's on the same input, every API call
left its audit rows, and the prescription hits at least one rule of each kind it
should (pairs, dose, interactions with the record's drugs).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from contextlib import ExitStack
from itertools import combinations
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from benchmarks.harness import (
    BenchmarkError,
    BenchmarkResult,
    Check,
    LoadResult,
    Options,
    Ratio,
    UvicornServer,
    Variant,
    ratios_per_round,
    recreate_database,
)
from medalliance import wiring
from medalliance.audit.models import AuditEvent
from medalliance.db import migrate
from medalliance.db.engine import build_engine, build_session_factory, normalise_url
from medalliance.demo.seed import DEMO_PASSWORD, seed_demo
from medalliance.domains.tcm.catalogue import catalogue, drug_term
from medalliance.domains.tcm.safety import HerbDose, check

NAME = "tcm_safety"
TITLE = "TCM safety check: 20 herbs × 10 active Western drugs (pure and API)"
BODY_FILE_ENV = "MEDALLIANCE_BENCH_TCM_BODY"
PURE_CALLS = 2000
API_CALLS = 300

HERBS = [
    ("麻黄", 9), ("桂枝", 9), ("苦杏仁", 9), ("甘草", 6), ("人参", 9), ("丹参", 15),
    ("当归", 9), ("黄芪", 30), ("白术", 9), ("茯苓", 12), ("陈皮", 6), ("半夏", 9),
    ("川芎", 6), ("白芍", 9), ("熟地黄", 15), ("柴胡", 9), ("黄芩", 9), ("大黄", 20),
    ("五味子", 6), ("附子", 9),
]  # fmt: skip
DRUGS = [
    ("warfarin", "3 mg"), ("aspirin", "100 mg"), ("amlodipine", "5 mg"), ("losartan", "50 mg"),
    ("metformin", "500 mg"), ("digoxin", "0.125 mg"), ("furosemide", "20 mg"),
    ("atorvastatin", "20 mg"), ("omeprazole", "20 mg"), ("clopidogrel", "75 mg"),
]  # fmt: skip


def baseline_app() -> FastAPI:
    """The HTTP floor: the same route and the same JSON, no auth, no database."""
    body = Path(os.environ[BODY_FILE_ENV]).read_bytes()
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/api/tcm/safety-check")
    async def safety_check(request: Request) -> Response:
        await request.body()
        return Response(body, media_type="application/json")

    return app


def _sequential(label: str, calls: int, one: Any) -> LoadResult:
    latencies = []
    cpu0, start = time.process_time(), time.perf_counter()
    for _ in range(calls):
        began = time.perf_counter()
        one()
        latencies.append(time.perf_counter() - began)
    window = time.perf_counter() - start
    return LoadResult(
        label=label,
        concurrency=1,
        window_s=window,
        requests=calls,
        errors=0,
        latencies_s=latencies,
        total_ok=calls,
        total_errors=0,
        server_cpu_s=None,
        client_cpu_s=time.process_time() - cpu0,
    )


def _raw_lookup_loop() -> Any:
    """The least work that answers "which pairs are incompatible, which herb×drug rows
    apply": dict lookups on keys prepared in advance."""
    cat = catalogue()
    names = [cat.resolve(h) or h for h, _ in HERBS]
    pair_keys = [frozenset(p) for p in combinations(names, 2)]
    terms = [drug_term(d) for d, _ in DRUGS]
    rows = dict(cat.interactions_by_herb)
    pairs = dict(cat.pairs)

    def one() -> int:
        hits = 0
        for key in pair_keys:
            hits += key in pairs
        for name in names:
            for row in rows.get(name, ()):
                for term in terms:
                    hits += term in row.terms
        return hits

    return one


def _audit_rows(url: str) -> int:
    engine = build_engine(url)
    try:
        with build_session_factory(engine)() as session:
            return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)
    finally:
        engine.dispose()


def _patient(client: httpx.Client, headers: dict[str, str]) -> str:
    reg = client.post(
        "/api/patients",
        headers=headers,
        json={"family_name": "赵", "given_name": "敏", "sex": "female", "birth_date": "1956-04-02",
              "pregnancy_status": "not_pregnant"},
    )  # fmt: skip
    if reg.status_code != 201:
        raise BenchmarkError(f"Registration failed: HTTP {reg.status_code} {reg.text[:300]}")
    pid = str(reg.json()["patient"]["id"])
    for drug, dose in DRUGS:
        r = client.post(f"/api/patients/{pid}/medications", headers=headers,
                        json={"drug": drug, "dose": dose})  # fmt: skip
        if r.status_code != 201:
            raise BenchmarkError(f"Medication failed: HTTP {r.status_code} {r.text[:300]}")
    return pid


def run(options: Options) -> BenchmarkResult:
    started = time.monotonic()
    url = normalise_url(options.database_url)
    wiring.load_all()

    herbs = [HerbDose(n, g) for n, g in HERBS]
    drugs = [d for d, _ in DRUGS]
    expected = [f.as_dict() for f in check(herbs, drugs=drugs, pregnant=False)]
    raw = _raw_lookup_loop()

    pure = Variant("check()", "medalliance.domains.tcm.safety.check, in-process, one at a time")
    floor = Variant("dict loop", "190 pair + 200 herb×drug lookups on prepared keys")
    for _ in range(options.rounds):
        floor.rounds.append(_sequential("dict loop", PURE_CALLS, raw))
        pure.rounds.append(
            _sequential("check()", PURE_CALLS, lambda: check(herbs, drugs=drugs, pregnant=False))
        )

    recreate_database(url)
    migrate.upgrade(url)
    seed_demo(url, patients=0)
    setup_s = time.monotonic() - started
    api = Variant("api", "POST /api/tcm/safety-check with patient_id: JWT, policy, reads, audit")
    api_plain = Variant(
        "api, drugs in request", "the same check with the 10 drugs in the body, no patient_id"
    )
    http = Variant("http floor", "bare FastAPI POST on the same route returning the same JSON")
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
        with httpx.Client(base_url=app_server.base_url, timeout=30, trust_env=False) as client:
            login = client.post(
                "/api/auth/token", data={"username": "clinician", "password": DEMO_PASSWORD}
            )
            if login.status_code != 200:
                raise BenchmarkError(f"Login failed: HTTP {login.status_code}")
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            pid = _patient(client, headers)
            herb_lines = [{"name": n, "dose_g": g} for n, g in HERBS]
            body = {"patient_id": pid, "herbs": herb_lines}
            plain = {"herbs": herb_lines, "western_drugs": drugs}
            first = client.post("/api/tcm/safety-check", json=body, headers=headers)
            if first.status_code != 200:
                raise BenchmarkError(f"Check failed: HTTP {first.status_code} {first.text[:300]}")
        body_file = tmp_dir / "check.json"
        body_file.write_bytes(first.content)
        floor_server = stack.enter_context(
            UvicornServer(
                "http floor",
                "benchmarks.bench_tcm_safety:baseline_app",
                env={BODY_FILE_ENV: str(body_file)},
                log_path=tmp_dir / "floor.log",
            )
        )
        rows_before = _audit_rows(url)
        for _ in range(options.rounds):
            for variant, server, payload in (
                (http, floor_server, body),
                (api_plain, app_server, plain),
                (api, app_server, body),
            ):
                with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as c:
                    c.post("/api/tcm/safety-check", json=payload, headers=headers)  # warm

                    def one(c: httpx.Client = c, payload: dict[str, Any] = payload) -> None:
                        r = c.post("/api/tcm/safety-check", json=payload, headers=headers)
                        if r.status_code != 200:
                            raise BenchmarkError(f"HTTP {r.status_code}: {r.text[:200]}")

                    variant.rounds.append(_sequential(variant.name, API_CALLS, one))
        rows_after = _audit_rows(url)

    def key(f: dict[str, Any]) -> tuple[Any, ...]:
        # The API names where a record's drug came from in the message; compare the rest.
        return (f["rule"], f["severity"], f["herbs"], f["drugs"], f["source"])

    api_findings = [key(f) for f in json.loads(first.content)["findings"]]
    api_calls = options.rounds * (API_CALLS + 1)
    rules = {f["rule"] for f in expected}
    checks = [
        Check(
            "API findings equal the pure check's",
            api_findings == [key(f) for f in expected],
            f"{len(expected)} findings; rules {sorted(rules)}",
        ),
        Check(
            "the prescription exercises pairs, dose and record drugs",
            {"eighteen_incompatible", "dose_above_range", "herb_drug_interaction"} <= rules,
            f"{len(expected)} findings",
        ),
        Check(
            "every API call audited (policy decision + read detail)",
            rows_after - rows_before == 2 * api_calls,
            f"audit rows grew by {rows_after - rows_before}; API calls {api_calls}",
        ),
        Check(
            "pure check p99 ≤ 5 ms",
            pure.p99_ms <= 5.0,
            f"p99 {pure.p99_ms:.3f} ms",
        ),
        Check("API p99 ≤ 5 ms (target)", api.p99_ms <= 5.0, f"p99 {api.p99_ms:.2f} ms"),
    ]
    ratios = [
        Ratio(
            "p99 check() ÷ dict loop",
            pure.p99_ms / floor.p99_ms if floor.p99_ms else 0.0,
            "what resolving names, messages, sources and sorting cost over bare lookups",
            ratios_per_round(pure, floor, lambda r: r.p99_ms),
        ),
        Ratio(
            "p99 api ÷ http floor",
            api.p99_ms / http.p99_ms if http.p99_ms else 0.0,
            "what auth, policy, record reads, audit and commit cost over the HTTP floor",
            ratios_per_round(api, http, lambda r: r.p99_ms),
        ),
        Ratio(
            "p99 api, drugs in request ÷ http floor",
            api_plain.p99_ms / http.p99_ms if http.p99_ms else 0.0,
            "the API path without the patient's record (auth, validation, check, no audit)",
            ratios_per_round(api_plain, http, lambda r: r.p99_ms),
        ),
        Ratio(
            "p50 api ÷ http floor",
            api.p50_ms / http.p50_ms if http.p50_ms else 0.0,
            "median request",
            ratios_per_round(api, http, lambda r: r.p50_ms),
        ),
    ]
    return BenchmarkResult(
        name=NAME,
        title=TITLE,
        description=(
            "A 20-herb prescription (grams per herb) checked against a patient with 10 active "
            "Western drugs in the record: the pure rule function in-process, and "
            "`POST /api/tcm/safety-check` with `patient_id` on a uvicorn server, one request at "
            f"a time ({PURE_CALLS} calls and {API_CALLS} requests per round), each against a "
            "raw baseline measured in the same run."
        ),
        variants=[floor, pure, http, api_plain, api],
        ratios=ratios,
        checks=checks,
        notes=[f"Setup (create database, migrate, seed): {setup_s:.1f} s; patient {pid}."],
        elapsed_s=time.monotonic() - started,
    )
