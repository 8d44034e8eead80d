"""fhir_everything: ``Patient/$everything`` for a patient with 2,000 resources, served by
a real uvicorn process; latency p50/p99 against the raw SELECTs of the same rows.

The patient (one Patient, 400 Encounters, 800 Conditions, 799 Procedures) is written
through a FHIR transaction as the import actor. The request goes through bearer auth,
the access policy (one decision per member), one audited search per resource type and
the mapping to FHIR JSON. Aim (issue #5): p99 ≤ 100 ms.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from benchmarks.bench_fhir_ingest import setup
from benchmarks.harness import (
    BenchmarkResult,
    Check,
    Options,
    Ratio,
    UvicornServer,
    percentile,
)
from medalliance.access import tokens
from medalliance.db.engine import normalise_url
from medalliance.db.uow import unit_of_work
from medalliance.domains.patients.models import PatientRecord
from medalliance.domains.records.models import Diagnosis, Encounter, Procedure
from medalliance.fhir import bundle
from medalliance.fhir.context import FhirContext
from medalliance.fhir.resources import REGISTRY
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role

NAME = "fhir_everything"
TITLE = "Patient/$everything, 2,000 resources, vs the raw SELECTs"
SECRET = "bench-secret-key-that-is-long-enough-for-hs256-signing"
REQUESTS = 60
ENCOUNTERS = 400


def _bundle() -> dict[str, Any]:
    p = f"urn:uuid:{uuid.uuid4()}"
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": p,
            "request": {"method": "POST", "url": "Patient"},
            "resource": {
                "resourceType": "Patient",
                "name": [{"family": "Bench", "given": ["Mark"]}],
                "gender": "male",
                "birthDate": "1960-05-05",
            },
        }
    ]
    for i in range(ENCOUNTERS):
        e = f"urn:uuid:{uuid.uuid4()}"
        day = f"2020-{1 + i % 12:02d}-{1 + i % 28:02d}T08:00:00Z"
        entries.append(
            {
                "fullUrl": e,
                "request": {"method": "POST", "url": "Encounter"},
                "resource": {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"code": "AMB"},
                    "subject": {"reference": p},
                    "period": {"start": day},
                },
            }
        )
        for code in ("I10", "E11.9"):
            entries.append(
                {
                    "request": {"method": "POST", "url": "Condition"},
                    "resource": {
                        "resourceType": "Condition",
                        "subject": {"reference": p},
                        "encounter": {"reference": e},
                        "code": {
                            "coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code}]
                        },
                    },
                }
            )
        for n in range(2 if i else 1):
            entries.append(
                {
                    "request": {"method": "POST", "url": "Procedure"},
                    "resource": {
                        "resourceType": "Procedure",
                        "status": "completed",
                        "subject": {"reference": p},
                        "encounter": {"reference": e},
                        "code": {"text": f"procedure {n}"},
                        "performedDateTime": day,
                    },
                }
            )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def bench_url(options: Options) -> str:
    """A database of this benchmark's own (the ingest benchmark may run beside it)."""
    url = normalise_url(options.database_url)
    return f"{url}_everything" if url.startswith("postgres") else url


def _raw_select_ms(factory: Any, person_id: uuid.UUID, rounds: int = 30) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        with factory() as session:
            records = list(
                session.scalars(
                    select(PatientRecord.id).where(PatientRecord.person_id == person_id)
                )
            )
            for model in (Encounter, Diagnosis, Procedure):
                session.execute(
                    select(model.__table__).where(model.patient_record_id.in_(records))
                ).all()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def run(options: Options) -> BenchmarkResult:
    started = time.perf_counter()
    url = bench_url(options)
    factory, actor = setup(url)
    data = _bundle()
    with unit_of_work(factory) as session:
        ctx = FhirContext(session=session, actor=actor, registry=REGISTRY)
        result = bundle.process(ctx, data, minimal=True)
    pid = result["entry"][0]["response"]["location"].rsplit("/", 1)[1]
    stored = len(data["entry"])
    token = tokens.encode_access_token(
        tokens.AccessClaims(
            user_id=uuid.uuid4(),
            username="bench-clinician",
            role=Role.CLINICIAN,
            institution_id=actor.institution_id,
            practitioner_id=None,
            expires_at=utcnow() + timedelta(hours=1),
        ),
        secret=SECRET,
        issued_at=utcnow(),
        ttl=timedelta(hours=1),
    )
    latencies: list[float] = []
    sizes: set[int] = set()
    with tempfile.TemporaryDirectory(prefix="medalliance-bench-") as tmp:
        server = UvicornServer(
            "medalliance",
            "medalliance.app:app_factory",
            env={"MEDALLIANCE_DATABASE_URL": url, "MEDALLIANCE_SECRET_KEY": SECRET},
            log_path=Path(tmp) / "server.log",
            ready_path="/fhir/metadata",
        )
        with server, httpx.Client(base_url=server.base_url, timeout=60, trust_env=False) as client:
            headers = {"Authorization": f"Bearer {token}"}
            for i in range(REQUESTS + 5):
                began = time.perf_counter()
                response = client.get(f"/fhir/Patient/{pid}/$everything", headers=headers)
                elapsed = time.perf_counter() - began
                response.raise_for_status()
                sizes.add(len(response.json()["entry"]))
                if i >= 5:  # warm-up
                    latencies.append(elapsed * 1000)
    raw_ms = _raw_select_ms(factory, uuid.UUID(pid))
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return BenchmarkResult(
        name=NAME,
        title=TITLE,
        description=(
            f"GET /fhir/Patient/{{id}}/$everything for a patient with {stored:,} resources, "
            f"{REQUESTS} sequential requests after 5 warm-up, one uvicorn worker, "
            + url.split("://")[0]
        ),
        variants=[],
        ratios=[
            Ratio(
                "$everything p50 ÷ raw SELECTs of the same rows",
                p50 / raw_ms,
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms vs raw SELECTs {raw_ms:.1f} ms",
            ),
            Ratio("$everything p99 ÷ the 100 ms aim", p99 / 100, "1.0 or less meets the aim"),
        ],
        checks=[
            Check("every resource answered", sizes == {stored}, f"entries per answer {sizes}"),
            Check("p99 ≤ 100 ms", p99 <= 100, f"p99 {p99:.1f} ms"),
        ],
        notes=[f"Latencies (ms): min {min(latencies):.1f}, max {max(latencies):.1f}."],
        elapsed_s=time.perf_counter() - started,
    )
