"""HL7 v2.5.1 ORU^R01 ingestion in messages per second, against the raw insert ceiling
measured in the same run: the same rows (the raw message and its five results)
inserted with plain psycopg, one transaction per message.

MedAlliance's side is the whole use case per message, as ``POST /api/interop/hl7v2``
runs it without HTTP: parse with hl7apy, check the sender, look for a duplicate,
resolve the patient (by MRN), check each unit against its LOINC family, the HR mark,
supersession, policy and audit rows, the ACK, then COMMIT (audit hash chain included).
The patients are registered by a first, untimed message each; the measured messages
are for known patients (the steady state of a lab interface).

    python -m benchmarks.run results_hl7_ingest [--database-url URL]
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import func, select

from benchmarks.bench_patient_reads import (
    DatabaseCpu,
    Pass,
    _conninfo,
    _db_cpu_note,
    _latency_ratios,
    database_settings,
    timed_pass,
)
from benchmarks.bench_results_order_check import bench_url
from benchmarks.harness import (
    BenchmarkResult,
    Check,
    Options,
    Ratio,
    Variant,
    ratios_per_round,
    recreate_database,
)
from medalliance import wiring
from medalliance.access.models import User
from medalliance.access.permissions import permissions_for
from medalliance.db import migrate
from medalliance.db.engine import build_engine, build_session_factory
from medalliance.db.uow import unit_of_work
from medalliance.demo.seed import seed_demo
from medalliance.domains.results.models import Hl7Message, Result
from medalliance.interop.hl7v2 import service
from medalliance.kernel.actor import Actor
from medalliance.kernel.roles import Role

NAME = "results_hl7_ingest"
TITLE = "HL7 v2 ORU^R01 ingestion (5 results per message) vs the raw insert ceiling"
MESSAGES = 150  # per round and variant
PATIENTS = 30
SENDER = "QH-LEAD"
ACCOUNT = "lis"  # the demo interface account of QH-LEAD
OBSERVATIONS = [
    ("14749-6", "mmol/L"),
    ("2823-3", "mmol/L"),
    ("2951-2", "mmol/L"),
    ("4548-4", "%"),
    ("2093-3", "mg/dL"),
]


def _time(at: datetime) -> str:
    return at.strftime("%Y%m%d%H%M%S+0000")


def message(control_id: str, patient: int, serial: int) -> str:
    collected = datetime.now(UTC) - timedelta(days=1, minutes=serial)
    obx = [
        f"OBX|{n}|NM|{code}^{code}^LN||{4 + (serial + n) % 5}.{n}|{unit}^^UCUM|||||F|||"
        f"{_time(collected)}"
        for n, (code, unit) in enumerate(OBSERVATIONS, start=1)
    ]
    return "\r".join(
        [
            f"MSH|^~\\&|LIS|{SENDER}|MEDALLIANCE|ALLIANCE|{_time(datetime.now(UTC))}||"
            f"ORU^R01^ORU_R01|{control_id}|P|2.5.1",
            f"PID|1||BENCH-{patient}^^^{SENDER}^MR||张^测{patient}||19700101|M",
            f"ORC|RE|P-{serial}|F-{serial}",
            f"OBR|1|P-{serial}|F-{serial}|24323-8^Panel^LN|||{_time(collected)}",
            *obx,
        ]
    )


def _actor(url: str) -> Actor:
    engine = build_engine(url)
    try:
        with build_session_factory(engine)() as session:
            user = session.scalar(select(User).where(User.username == ACCOUNT))
    finally:
        engine.dispose()
    assert user is not None, "the demo interface account is missing"
    return Actor(
        user_id=user.id,
        username=user.username,
        role=Role(user.role),
        institution_id=user.institution_id,
        permissions=permissions_for(Role(user.role)),
    )


RAW_MESSAGE = (
    "INSERT INTO hl7_messages (id, sending_institution_id, control_id, message_type, raw, "
    "received_at, result_count) VALUES (%s, %s, %s, 'ORU^R01^ORU_R01', %s, now(), 5)"
)
RAW_RESULT = (
    "INSERT INTO results (id, patient_record_id, institution_id, kind, item_code, item_system, "
    "status, effective_at, value_numeric, unit, hr_mark, source, source_message_id, "
    "created_at, updated_at) VALUES (%s, %s, %s, 'lab', %s, 'LN', 'final', now(), %s, %s, "
    "true, 'hl7v2', %s, now(), now())"
)


def run(options: Options) -> BenchmarkResult:
    started = time.monotonic()
    url = bench_url(options).replace("bench_results", "bench_results_hl7", 1)
    conninfo = _conninfo(url)
    wiring.load_all()
    recreate_database(url)
    migrate.upgrade(url)
    seed_demo(url, patients=0)
    actor = _actor(url)
    factory = build_session_factory(build_engine(url))
    codes: list[str] = []
    serial = [0]

    def ingest(raw: str) -> service.Outcome:
        with unit_of_work(factory) as session:
            return service.ingest(session, actor, raw)

    # Register the patients (MPI) with one untimed message each.
    for patient in range(PATIENTS):
        serial[0] += 1
        warm = ingest(message(f"WARM-{patient}", patient, serial[0]))
        codes.append(warm.code)
    with psycopg.connect(conninfo) as conn:
        records = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM patient_records WHERE mrn LIKE 'BENCH-%%' ORDER BY mrn"
            )
        ]
        sender_row = conn.execute("SELECT id FROM institutions WHERE code = %s", (SENDER,))
        sender_id = sender_row.fetchone()[0]  # type: ignore[index]

    raw_conn = psycopg.connect(conninfo)
    raw_cur = raw_conn.cursor()
    database = DatabaseCpu(conninfo)
    raw_variant = Variant(
        "raw_insert",
        "plain psycopg: INSERT the raw message row and its 5 result rows (executemany), "
        "COMMIT; one transaction per message",
    )
    app = Variant(
        "hl7_ingest",
        "interop.hl7v2.service.ingest in a unit of work: hl7apy parse, sender and duplicate "
        "checks, patient by MRN, 5 × (UCUM family check, HR mark, supersession, policy, "
        "audit), raw message kept, ACK built, COMMIT with the audit chain",
    )
    passes: dict[str, list[Pass]] = {raw_variant.name: [], app.name: []}
    outcomes: list[str] = []

    def raw_call(control_id: str, patient: int) -> Callable[[], object]:
        body = message(control_id, patient, serial[0])

        def call() -> object:
            message_id = uuid.uuid4()
            raw_cur.execute(RAW_MESSAGE, (message_id, sender_id, control_id, body))
            raw_cur.executemany(
                RAW_RESULT,
                [
                    (uuid.uuid4(), records[patient], sender_id, code, 5.0, unit, message_id)
                    for code, unit in OBSERVATIONS
                ],
            )
            raw_conn.commit()
            return None

        return call

    def app_call(control_id: str, patient: int) -> Callable[[], object]:
        serial[0] += 1
        body = message(control_id, patient, serial[0])

        def call() -> object:
            outcome = ingest(body)
            outcomes.append(outcome.code)
            return outcome

        return call

    def nothing() -> None:
        return None

    try:
        for round_no in range(options.rounds):
            print(f"  hl7 round {round_no + 1}/{options.rounds} …", flush=True)
            raw_calls = [raw_call(f"RAW-{round_no}-{n}", n % PATIENTS) for n in range(MESSAGES)]
            app_calls = [app_call(f"APP-{round_no}-{n}", n % PATIENTS) for n in range(MESSAGES)]
            for variant, calls in ((raw_variant, raw_calls), (app, app_calls)):
                done = timed_pass(variant.name, calls, after=nothing, database=database)
                variant.rounds.append(done.result)
                passes[variant.name].append(done)
        duplicate = ingest(message("APP-0-0", 0, 1))
    finally:
        database.close()
        raw_conn.close()

    engine = build_engine(url)
    with build_session_factory(engine)() as session:
        app_messages = session.scalar(
            select(func.count()).select_from(Hl7Message).where(Hl7Message.control_id.like("APP-%"))
        )
        app_results = session.scalar(
            select(func.count())
            .select_from(Result)
            .join(Hl7Message, Hl7Message.id == Result.source_message_id)
            .where(Hl7Message.control_id.like("APP-%"))
        )
    engine.dispose()
    expected = MESSAGES * options.rounds
    throughput = Ratio(
        "messages/s hl7_ingest ÷ raw_insert",
        app.requests_per_s / raw_variant.requests_per_s if raw_variant.requests_per_s else 0.0,
        "the share of the raw insert ceiling that full ingestion reaches",
        ratios_per_round(app, raw_variant, lambda r: r.requests_per_s),
    )
    checks = [
        Check(
            "every message acknowledged AA and stored once",
            set(codes) == {"AA"} and outcomes.count("AA") == expected == app_messages,
            f"warm-up {codes.count('AA')}/{PATIENTS} AA; measured {outcomes.count('AA')}/"
            f"{expected} AA; stored {app_messages}",
        ),
        Check(
            "five results per message",
            app_results == 5 * expected,
            f"{app_results} results for {expected} messages",
        ),
        Check(
            "a duplicate control id is acknowledged without storing",
            duplicate.code == "AA" and duplicate.duplicate,
            f"ACK {duplicate.code}, duplicate={duplicate.duplicate}",
        ),
        Check(
            "no errors",
            app.errors == 0 and raw_variant.errors == 0,
            f"hl7_ingest {app.errors}, raw_insert {raw_variant.errors}"
            + "".join(f"; {s}" for r in app.rounds for s in r.error_samples[:1]),
        ),
    ]
    notes: list[Any] = [
        f"hl7_ingest: {app.requests_per_s:,.0f} messages/s ({5 * app.requests_per_s:,.0f} "
        f"results/s); raw insert ceiling {raw_variant.requests_per_s:,.0f} messages/s.",
        f"{MESSAGES} messages per round and variant, one at a time, each its own "
        f"transaction; {PATIENTS} patients registered by an untimed first message each.",
        database_settings(conninfo),
        *(_db_cpu_note(v, passes) for v in (raw_variant, app)),
    ]
    return BenchmarkResult(
        name=NAME,
        title=TITLE,
        description=(
            "HL7 v2.5.1 ORU^R01 messages with five lab results each, ingested by the "
            "interface account of the lead hospital, against plain inserts of the same rows."
        ),
        variants=[raw_variant, app],
        ratios=[throughput, *_latency_ratios(app, raw_variant, "one message")],
        checks=checks,
        notes=notes,
        elapsed_s=time.monotonic() - started,
    )
