"""monitoring_ingest: sustained reading ingestion into PostgreSQL through HTTP batches
and through MQTT, alert evaluation and audit included, as a fraction of the raw COPY
ceiling measured in the same run; and the publish-to-alert latency over MQTT.

* **COPY ceiling**: ``COPY readings FROM STDIN`` (psycopg 3) of pre-built rows into the
  same table with the same indexes — no validation, no idempotency, no alerts, no audit.
* **HTTP**: a real uvicorn server; ``concurrency`` gateways each POST batches of
  ``BATCH`` readings (blood pressure with pulse, SpO2; ~2 % cross an alert threshold)
  for the window. A row counts when its batch's answer (sent after commit) says stored.
* **MQTT**: one ``medalliance mqtt-ingest`` worker process; the gateways publish QoS 1
  messages of ``MQTT_BATCH`` readings. Throughput is rows stored ÷ time from the first
  publish until the last row is committed. The burst is kept under Mosquitto's default
  queue (1000 messages per client) so the broker drops nothing.
* **Latency**: while the worker carries a background stream at about half its measured
  capacity, probe messages with one hypertensive-crisis reading each are published; the
  latency is publish → the alert row is visible to another connection (committed).

Rows are database rows (a blood-pressure reading with a pulse stores two). Each phase
starts from an empty readings table. Run under ``flock /tmp/medalliance-bench.lock``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, create_engine, insert, text

from benchmarks.harness import (
    ROOT,
    BenchmarkError,
    BenchmarkResult,
    Check,
    Options,
    Ratio,
    UvicornServer,
    parse_url,
    percentile,
    recreate_database,
)
from medalliance import wiring
from medalliance.access import tokens
from medalliance.access.models import User
from medalliance.access.passwords import hash_password
from medalliance.db import migrate
from medalliance.db.engine import normalise_url
from medalliance.demo.seed import seed_demo
from medalliance.domains.alliance.models import Institution
from medalliance.domains.monitoring.catalogue import DeviceType
from medalliance.domains.monitoring.models import Device, DeviceAssignment, DeviceGateway
from medalliance.domains.patients.identity import Sex
from medalliance.domains.patients.models import LinkMethod, PatientRecord, Person
from medalliance.kernel.ids import new_id
from medalliance.kernel.roles import Role

NAME = "monitoring_ingest"
TITLE = "Reading ingestion (HTTP batches, MQTT) vs raw COPY; MQTT publish-to-alert latency"
DATABASE = "medalliance_bench_monitoring"
PATIENTS_PER_GATEWAY = 100
BATCH = 200  # readings per HTTP batch
MQTT_BATCH = 100  # readings per MQTT message
MQTT_MESSAGES = 600  # under Mosquitto's default max_queued_messages (1000)
COPY_ROWS = 120_000
LATENCY_PROBES = 150
BROKER = ("127.0.0.1", 1883)
SECRET = secrets.token_urlsafe(48)
TOPIC_ROOT = f"bench-{uuid.uuid4().hex[:8]}"  # a topic root of its own on a shared broker
COLUMNS = (
    "id, device_id, measurement, measured_at, patient_record_id, institution_id, gateway_id, "
    "loinc, unit, value, diastolic, glucose_context, period_start, received_at"
)


@dataclass
class World:
    institution_id: uuid.UUID
    gateways: list[tuple[DeviceGateway, User]]
    # per gateway: (bp serial, oximeter serial, patient record, bp device id)
    kits: list[list[tuple[str, str, uuid.UUID, uuid.UUID]]]


def _seed(engine: Engine, gateways: int) -> World:
    from sqlalchemy.orm import Session

    with Session(engine, expire_on_commit=False) as s:
        institution = s.query(Institution).filter_by(code="QH-DC-01").one()
        pw = hash_password(secrets.token_urlsafe(16))
        world = World(institution.id, [], [])
        persons, records, devices, assignments = [], [], [], []
        start = datetime.now(UTC) - timedelta(days=3650)
        for g in range(gateways):
            user = User(
                username=f"bench-gw-{g}",
                display_name=f"bench gateway {g}",
                password_hash=pw,
                role=Role.DEVICE_GATEWAY,
                institution_id=institution.id,
                active=True,
                failed_logins=0,
            )
            s.add(user)
            s.flush()
            gateway = DeviceGateway(
                code=f"bench-gw-{g}", name="bench", institution_id=institution.id, user_id=user.id
            )
            s.add(gateway)
            s.flush()
            world.gateways.append((gateway, user))
            kit = []
            for p in range(PATIENTS_PER_GATEWAY):
                person_id, record_id = new_id(), new_id()
                common = {
                    "family_name": "张",
                    "given_name": f"测{g}{p}",
                    "name": f"张测{g}{p}",
                    "name_pinyin": "zhang ce",
                    "name_initials": "zc",
                    "sex": Sex.FEMALE,
                }
                persons.append({"id": person_id, **common, "active": True, "version": 0})
                records.append(
                    {
                        "id": record_id,
                        "person_id": person_id,
                        "institution_id": institution.id,
                        "name_pinyin_compact": "zhangce",
                        "phones": [],
                        "link_method": LinkMethod.NEW_PERSON,
                        **common,
                    }
                )
                serials = []
                for device_type in (DeviceType.BP_MONITOR, DeviceType.PULSE_OXIMETER):
                    device_id = new_id()
                    serial = f"B{g}-{p}-{device_type.value[:2]}"
                    serials.append((serial, device_id))
                    devices.append(
                        {
                            "id": device_id,
                            "institution_id": institution.id,
                            "gateway_id": gateway.id,
                            "device_type": device_type,
                            "model": "bench",
                            "serial": serial,
                            "active": True,
                        }
                    )
                    assignments.append(
                        {
                            "id": new_id(),
                            "device_id": device_id,
                            "patient_record_id": record_id,
                            "institution_id": institution.id,
                            "start": start,
                        }
                    )
                kit.append((serials[0][0], serials[1][0], record_id, serials[0][1]))
            world.kits.append(kit)
        s.execute(insert(Person), persons)
        s.execute(insert(PatientRecord), records)
        s.execute(insert(Device), devices)
        s.execute(insert(DeviceAssignment), assignments)
        s.commit()
        return world


class Clock:
    """Unique measured_at values: each reading one second after the previous."""

    def __init__(self, origin: datetime) -> None:
        self.next = origin
        self.lock = threading.Lock()

    def take(self) -> datetime:
        with self.lock:
            self.next += timedelta(seconds=1)
            return self.next


def _batch(rng: random.Random, kit: list[Any], clock: Clock, size: int) -> list[dict[str, Any]]:
    items = []
    for _ in range(size):
        bp, ox, _, _ = rng.choice(kit)
        at = clock.take().isoformat()
        if rng.random() < 0.5:
            crisis = rng.random() < 0.02
            items.append(
                {
                    "device": bp,
                    "type": "blood_pressure",
                    "measured_at": at,
                    "unit": "mm[Hg]",
                    "systolic": 195 if crisis else rng.randint(110, 160),
                    "diastolic": rng.randint(65, 100),
                    "pulse": rng.randint(55, 95),
                }
            )
        else:
            low = rng.random() < 0.02
            items.append(
                {
                    "device": ox,
                    "type": "spo2",
                    "measured_at": at,
                    "unit": "%",
                    "value": 86 if low else rng.randint(92, 99),
                }
            )
    return items


def _rows(items: list[dict[str, Any]]) -> int:
    return sum(2 if i["type"] == "blood_pressure" else 1 for i in items)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc), to tell the server's CPU per
    row from the load generator's on a shared 2-core machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _reset(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE readings, monitoring_alerts, monitoring_dead_letters"))


def _count(engine: Engine, table: str = "readings") -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


# --- COPY ceiling ---------------------------------------------------------------------------


def _copy_ceiling(engine: Engine, world: World, clock: Clock) -> float:
    import psycopg

    gateway = world.gateways[0][0]
    rows = []
    now = datetime.now(UTC)
    for i in range(COPY_ROWS):
        _, _, record_id, device_id = world.kits[0][i % PATIENTS_PER_GATEWAY]
        rows.append(
            (
                new_id(),
                device_id,
                "blood_pressure",
                clock.take(),
                record_id,
                world.institution_id,
                gateway.id,
                "85354-9",
                "mm[Hg]",
                130.0,
                85.0,
                None,
                None,
                now,
            )
        )
    dsn = parse_url(str(engine.url.render_as_string(hide_password=False))).set(
        drivername="postgresql"
    )
    with psycopg.connect(dsn.render_as_string(hide_password=False)) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY readings ({COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - started
    if _count(engine) != COPY_ROWS:
        raise BenchmarkError("COPY did not store every row")
    return COPY_ROWS / elapsed


# --- HTTP ------------------------------------------------------------------------------------


def _token(user: User, institution_id: uuid.UUID) -> str:
    now = datetime.now(UTC)
    return tokens.encode_access_token(
        tokens.AccessClaims(
            user_id=user.id,
            username=user.username,
            role=Role.DEVICE_GATEWAY,
            institution_id=institution_id,
            practitioner_id=None,
            expires_at=now + timedelta(hours=1),
        ),
        secret=SECRET,
        issued_at=now,
        ttl=timedelta(hours=1),
    )


@dataclass
class HttpResult:
    rows_per_s: float
    rows: int
    batches: int
    p50_ms: float
    p99_ms: float
    errors: int
    alerts: int


async def _http_load(base_url: str, world: World, clock: Clock, options: Options) -> HttpResult:
    rng = random.Random(7)
    gateways = world.gateways[: options.concurrency]
    batches_of = [
        [
            _batch(rng, world.kits[g], clock, BATCH)
            for _ in range(int(options.duration + options.warmup) * 8)
        ]
        for g in range(len(gateways))
    ]
    # Encoded, and each item's row count known, before the clock starts: the client's
    # CPU in the window is the HTTP round trip and parsing the answer.
    bodies = [[json.dumps({"readings": b}).encode() for b in gw] for gw in batches_of]
    sizes = [[[_rows([i]) for i in b] for b in gw] for gw in batches_of]
    stop_at = time.perf_counter() + options.warmup + options.duration
    window_start = time.perf_counter() + options.warmup
    latencies: list[float] = []
    counted_rows = 0
    batches = errors = alerts = 0

    async def gateway(g: int) -> None:
        nonlocal counted_rows, batches, errors, alerts
        _gw, user = gateways[g]
        headers = {
            "Authorization": f"Bearer {_token(user, world.institution_id)}",
            "Content-Type": "application/json",
        }
        async with httpx.AsyncClient(base_url=base_url, timeout=60, trust_env=False) as client:
            for n, body in enumerate(bodies[g]):
                if time.perf_counter() >= stop_at:
                    return
                began = time.perf_counter()
                response = await client.post(
                    "/api/monitoring/readings", content=body, headers=headers
                )
                done = time.perf_counter()
                if response.status_code != 200:
                    errors += 1
                    continue
                result = response.json()
                if began >= window_start and done <= stop_at:
                    latencies.append(done - began)
                    batches += 1
                    per_item = sizes[g][n]
                    counted_rows += sum(
                        per_item[r["index"]] for r in result["results"] if r["status"] == "stored"
                    )
                    alerts += sum(1 for r in result["results"] if r["alerts"])
        return

    await asyncio.gather(*(gateway(g) for g in range(len(gateways))))
    return HttpResult(
        counted_rows / options.duration,
        counted_rows,
        batches,
        percentile(latencies, 50) * 1000,
        percentile(latencies, 99) * 1000,
        errors,
        alerts,
    )


# --- MQTT ------------------------------------------------------------------------------------


class Worker:
    def __init__(self, url: str, log: Path) -> None:
        env = {**os.environ, "MEDALLIANCE_DATABASE_URL": url}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        self.client_id = f"bench-ingest-{uuid.uuid4().hex[:8]}"
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from medalliance.cli import main; main()",
                "mqtt-ingest",
                "--client-id",
                self.client_id,
                "--batch-max",
                "20",
                "--topic-root",
                TOPIC_ROOT,
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.log_path = log

    def wait_subscribed(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "subscribed to" in self.log_path.read_text():
                return
            if self.proc.poll() is not None:
                raise BenchmarkError(f"mqtt-ingest exited:\n{self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        raise BenchmarkError("mqtt-ingest did not subscribe")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _publisher() -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex}")
    client.max_inflight_messages_set(100)
    client.connect(*BROKER)
    client.loop_start()
    return client


def _wait_rows(engine: Engine, target: int, timeout: float) -> float:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if _count(engine) >= target:
            return time.perf_counter()
        time.sleep(0.02)
    raise BenchmarkError(f"only {_count(engine)} of {target} rows arrived over MQTT")


def _mqtt_throughput(engine: Engine, world: World, clock: Clock) -> tuple[float, int]:
    rng = random.Random(11)
    messages = []
    rows = 0
    for m in range(MQTT_MESSAGES):
        g = m % len(world.gateways)
        items = _batch(rng, world.kits[g], clock, MQTT_BATCH)
        rows += _rows(items)
        topic = f"{TOPIC_ROOT}/gateways/{world.gateways[g][0].code}/readings"
        messages.append((topic, json.dumps({"readings": items})))
    publisher = _publisher()
    try:
        started = time.perf_counter()
        infos = [publisher.publish(topic, payload, qos=1) for topic, payload in messages]
        finished = _wait_rows(engine, rows, 300)
        for info in infos:
            info.wait_for_publish(10)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
    return rows / (finished - started), rows


def _alert_visible(engine: Engine, record_id: uuid.UUID) -> bool:
    with engine.connect() as conn:
        return (
            conn.execute(
                text(
                    "SELECT 1 FROM monitoring_alerts WHERE patient_record_id = :r "
                    "AND rule = 'hypertensive_crisis'"
                ),
                {"r": record_id},
            ).first()
            is not None
        )


def _latency(
    engine: Engine, world: World, clock: Clock, background_rows_per_s: float
) -> list[float]:
    """Probes under a background stream of ordinary readings."""
    rng = random.Random(13)
    publisher = _publisher()
    stop = threading.Event()
    per_message = MQTT_BATCH * 1.5
    interval = per_message / max(background_rows_per_s, 1.0)

    def background() -> None:
        g = 0
        while not stop.is_set():
            items = list(_batch(rng, world.kits[g % len(world.kits)], clock, MQTT_BATCH))
            for i in items:  # ordinary values only: the probes own the alerts
                if i["type"] == "blood_pressure":
                    i["systolic"] = min(i["systolic"], 160)
                else:
                    i["value"] = max(i["value"], 92)
            topic = (
                f"{TOPIC_ROOT}/gateways/{world.gateways[g % len(world.gateways)][0].code}/readings"
            )
            publisher.publish(topic, json.dumps({"readings": items}), qos=1)
            g += 1
            stop.wait(interval)

    thread = threading.Thread(target=background, daemon=True)
    thread.start()
    latencies = []
    try:
        time.sleep(1.0)
        probes = [(g, k) for g in range(len(world.kits)) for k in world.kits[g]]
        rng.shuffle(probes)
        for g, (bp, _, record_id, _) in probes[:LATENCY_PROBES]:
            item = {
                "device": bp,
                "type": "blood_pressure",
                "measured_at": clock.take().isoformat(),
                "unit": "mm[Hg]",
                "systolic": 200,
                "diastolic": 125,
            }
            topic = f"{TOPIC_ROOT}/gateways/{world.gateways[g][0].code}/readings"
            began = time.perf_counter()
            publisher.publish(topic, json.dumps({"readings": [item]}), qos=1)
            deadline = began + 10
            while not _alert_visible(engine, record_id):
                if time.perf_counter() > deadline:
                    raise BenchmarkError("a probe's alert did not appear within 10 s")
                time.sleep(0.01)  # a 10 ms poll: resolution enough, little load on PostgreSQL
            latencies.append(time.perf_counter() - began)
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(5)
        publisher.loop_stop()
        publisher.disconnect()
    return latencies


# --- the run ---------------------------------------------------------------------------------


def run(options: Options) -> BenchmarkResult:
    started = time.perf_counter()
    base = parse_url(normalise_url(options.database_url))
    if base.get_backend_name() != "postgresql":
        raise BenchmarkError("monitoring_ingest measures PostgreSQL (COPY)")
    url = base.set(database=DATABASE).render_as_string(hide_password=False)
    wiring.load_all()
    recreate_database(url)
    migrate.upgrade(url)
    seed_demo(url, patients=0)
    engine = create_engine(url)
    world = _seed(engine, max(options.concurrency, 4))
    setup_s = time.perf_counter() - started
    clock = Clock(datetime.now(UTC) - timedelta(days=3000))

    copy_rate = _copy_ceiling(engine, world, clock)
    _reset(engine)
    with tempfile.TemporaryDirectory(prefix="medalliance-bench-") as tmp, ExitStack() as stack:
        tmp_dir = Path(tmp)
        server = stack.enter_context(
            UvicornServer(
                "medalliance",
                "medalliance.app:app_factory",
                env={
                    "MEDALLIANCE_DATABASE_URL": url,
                    "MEDALLIANCE_SECRET_KEY": SECRET,
                    "MEDALLIANCE_DEMO_MODE": "false",
                    "MEDALLIANCE_LOG_SQL": "false",
                },
                log_path=tmp_dir / "medalliance.log",
                ready_path="/api/health",
            )
        )
        server_cpu, client_cpu = _cpu_seconds(server.pid), time.process_time()
        http = asyncio.run(_http_load(server.base_url, world, clock, options))
        server_cpu = _cpu_seconds(server.pid) - server_cpu
        client_cpu = time.process_time() - client_cpu
        http_rows_in_db = _count(engine)
        server.stop()
        _reset(engine)

        worker = Worker(url, tmp_dir / "mqtt-ingest.log")
        try:
            worker.wait_subscribed()
            worker_cpu = _cpu_seconds(worker.proc.pid)
            mqtt_rate, mqtt_rows = _mqtt_throughput(engine, world, clock)
            worker_cpu = _cpu_seconds(worker.proc.pid) - worker_cpu
            mqtt_stored = _count(engine)
            dead = _count(engine, "monitoring_dead_letters")
            with engine.begin() as conn:
                conn.execute(text("UPDATE monitoring_alerts SET status = 'resolved'"))
                conn.execute(text("DELETE FROM monitoring_alerts"))
            latencies = _latency(engine, world, clock, mqtt_rate / 2)
        finally:
            worker.stop()
    engine.dispose()
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    http_ratio, mqtt_ratio = http.rows_per_s / copy_rate, mqtt_rate / copy_rate
    return BenchmarkResult(
        name=NAME,
        title=TITLE,
        description=(
            f"{len(world.gateways)} gateways × {PATIENTS_PER_GATEWAY} patients (BP monitor + "
            f"oximeter each); HTTP: {options.concurrency} gateways posting {BATCH}-reading "
            f"batches for {options.duration:.0f} s after {options.warmup:.0f} s warm-up; MQTT: "
            f"{MQTT_MESSAGES} QoS 1 messages × {MQTT_BATCH} readings into one worker; COPY: "
            f"{COPY_ROWS:,} rows."
        ),
        variants=[],
        ratios=[
            Ratio(
                "HTTP ingestion rows/s ÷ COPY rows/s",
                http_ratio,
                f"{http.rows_per_s:,.0f} vs {copy_rate:,.0f} rows/s; goal ≥ 0.5",
            ),
            Ratio(
                "MQTT ingestion rows/s ÷ COPY rows/s",
                mqtt_ratio,
                f"{mqtt_rate:,.0f} vs {copy_rate:,.0f} rows/s; goal ≥ 0.5",
            ),
        ],
        checks=[
            Check(
                "HTTP: every row an answer called stored is in the database",
                http.errors == 0 and http_rows_in_db >= http.rows,
                f"{http.rows:,} rows counted in the window, {http_rows_in_db:,} in the table "
                f"(in-flight batches at the window's edges add rows), {http.errors} errors",
            ),
            Check(
                "MQTT: nothing lost, nothing dead-lettered",
                mqtt_stored == mqtt_rows and dead == 0,
                f"{mqtt_stored:,} of {mqtt_rows:,} rows stored, {dead} dead letters",
            ),
            Check(
                "publish-to-alert p99 ≤ 1 s",
                p99 <= 1.0,
                f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms over {len(latencies)} probes "
                f"under ~{mqtt_rate / 2:,.0f} rows/s of background readings",
            ),
            Check("HTTP at ≥ 50 % of COPY", http_ratio >= 0.5, f"{http_ratio:.2f}"),
            Check("MQTT at ≥ 50 % of COPY", mqtt_ratio >= 0.5, f"{mqtt_ratio:.2f}"),
        ],
        notes=[
            f"HTTP batches: {http.batches} in the window, p50 {http.p50_ms:.0f} ms, "
            f"p99 {http.p99_ms:.0f} ms per {BATCH}-reading batch (answered after commit, "
            f"alerts evaluated; {http.alerts} readings raised or joined an alert).",
            f"CPU (this run, the machine shared): HTTP server {server_cpu:.1f} s for "
            f"{http_rows_in_db:,} rows ({server_cpu / max(http_rows_in_db, 1) * 1e6:.0f} µs/row), "
            f"the load generator {client_cpu:.1f} s over the same "
            f"{options.warmup + options.duration:.0f} s; MQTT worker {worker_cpu:.1f} s for "
            f"{mqtt_stored:,} rows ({worker_cpu / max(mqtt_stored, 1) * 1e6:.0f} µs/row). "
            "PostgreSQL's own CPU is not counted.",
            f"Setup (database, migrations, registry, {len(world.gateways) * PATIENTS_PER_GATEWAY}"
            f" patients): {setup_s:.1f} s.",
            "The COPY ceiling skips everything the platform does per reading: JSON parsing and "
            "validation, device and assignment look-up, the idempotent INSERT … ON CONFLICT, "
            "alert rules and notifications, the audit trail.",
        ],
        elapsed_s=time.perf_counter() - started,
    )


def main() -> int:
    from benchmarks.run import format_result

    result = run(Options(duration=float(os.environ.get("BENCH_DURATION", "10"))))
    print(format_result(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
