"""MQTT ingestion against the real broker (Mosquitto on 127.0.0.1:1883): dead letters,
acknowledgement after commit, and exactly-once storage across a SIGKILL of the worker.

Skipped without a broker, except in CI (CI=true), where a missing broker fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.domains.monitoring.catalogue import DeviceType
from medalliance.domains.monitoring.models import Alert, DeadLetter, DeviceGateway, Reading
from medalliance.domains.monitoring.mqtt_ingest import (
    IngestWorker,
    MqttOptions,
    handle_message,
)
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role
from tests.factories import bind_session
from tests.factories.alliance import InstitutionFactory
from tests.factories.monitoring import assign, make_device, make_gateway
from tests.factories.patients import make_patient
from tests.integration.conftest import ScratchDatabase

BROKER = ("127.0.0.1", 1883)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _broker_up() -> bool:
    try:
        with socket.create_connection(BROKER, timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def broker() -> None:
    if not _broker_up():
        if IN_CI:
            pytest.fail("CI=true but no MQTT broker on 127.0.0.1:1883")
        pytest.skip("no MQTT broker on 127.0.0.1:1883")


def _reading(serial: str, at: datetime, sbp: float = 128) -> dict[str, Any]:
    return {
        "device": serial,
        "type": "blood_pressure",
        "measured_at": at.isoformat(),
        "unit": "mm[Hg]",
        "systolic": sbp,
        "diastolic": 80,
    }


# --- the message handler, without a broker ------------------------------------------------


def test_malformed_messages_become_dead_letters_with_their_reason(session: Session) -> None:
    home = InstitutionFactory()
    gateway = make_gateway(home)
    device = make_device(gateway, DeviceType.BP_MONITOR)
    _, record = make_patient(home)
    assign(device, record)
    topic = f"medalliance/gateways/{gateway.code}/readings"
    now = utcnow()
    cases = [
        (topic, b"\xff\xfe", "not UTF-8"),
        (topic, b"{oops", "not JSON"),
        (topic, b'{"readings": []}', "non-empty 'readings'"),
        ("medalliance/gateways/nobody/readings", b'{"readings": [1]}', "no active registered"),
    ]
    for t, payload, _ in cases:
        assert handle_message(session, t, payload) == {"dead": 1}
    good_and_bad = {"readings": [_reading(device.serial, now), _reading("NOPE", now)]}
    counts = handle_message(session, topic, json.dumps(good_and_bad).encode())
    assert counts == {"stored": 1, "duplicate": 0, "rejected": 1}
    letters = session.scalars(select(DeadLetter).order_by(DeadLetter.received_at)).all()
    assert len(letters) == 5
    for (_, _, why), letter in zip(cases, letters, strict=False):
        assert why in letter.reason
    assert "reading 1: unknown device 'NOPE'" in letters[-1].reason
    assert json.loads(letters[-1].payload)["device"] == "NOPE"
    assert session.scalar(select(func.count()).select_from(Reading)) == 1


def test_one_transaction_of_several_gateways_stores_each_reading_once(session: Session) -> None:
    """The worker's batch: messages of two gateways (one of them twice, one message a
    retry of another) go through the pipeline per gateway in one transaction."""
    from medalliance.domains.monitoring.mqtt_ingest import handle_messages

    home = InstitutionFactory()
    now = utcnow()
    messages = []
    for _ in range(2):
        gateway = make_gateway(home)
        device = make_device(gateway, DeviceType.BP_MONITOR)
        _, record = make_patient(home)
        assign(device, record)
        topic = f"medalliance/gateways/{gateway.code}/readings"
        first = {"readings": [_reading(device.serial, now - timedelta(minutes=m)) for m in (1, 2)]}
        second = {"readings": [_reading(device.serial, now - timedelta(minutes=3))]}
        messages += [(topic, json.dumps(first).encode()), (topic, json.dumps(second).encode())]
    messages.append(messages[0])  # a redelivered message
    counts = handle_messages(session, messages)
    assert counts == {"stored": 6, "duplicate": 2, "rejected": 0, "dead": 0}
    assert session.scalar(select(func.count()).select_from(Reading)) == 6


# --- against the broker -------------------------------------------------------------------


def _seed(db: ScratchDatabase) -> tuple[str, str]:
    """A committed gateway, device and assignment; returns (gateway code, serial)."""
    with db.factory() as s:
        bind_session(s)
        try:
            home = InstitutionFactory()
            gateway = make_gateway(home)
            device = make_device(gateway, DeviceType.BP_MONITOR)
            _, record = make_patient(home)
            assign(device, record, start=utcnow() - timedelta(days=400))
            s.commit()
            return gateway.code, device.serial
        finally:
            bind_session(None)


class Publisher:
    """A QoS 1 publisher that remembers which messages the broker acknowledged."""

    def __init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex}")
        self.acked: set[int] = set()
        self.lock = threading.Lock()
        self.client.on_publish = self._on_publish
        self.client.connect(*BROKER)
        self.client.loop_start()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            with self.lock:
                self.acked.add(mid)

    def publish(self, topic: str, payload: dict[str, Any]) -> int:
        info = self.client.publish(topic, json.dumps(payload), qos=1)
        return info.mid

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _count(db: ScratchDatabase) -> int:
    with db.factory() as s:
        return s.scalar(select(func.count()).select_from(Reading)) or 0


@pytest.fixture
def worker_thread(scratch_db: ScratchDatabase, broker: None) -> Iterator[IngestWorker]:
    # A topic root of its own: concurrent runs on the same broker do not see each other.
    options = MqttOptions(
        client_id=f"ingest-{uuid.uuid4().hex[:12]}", topic_root=f"test-{uuid.uuid4().hex[:8]}"
    )
    worker = IngestWorker(scratch_db.factory, options)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    assert worker.subscribed.wait(10), "the worker did not subscribe"
    yield worker
    stop.set()
    thread.join(10)


def test_the_worker_stores_readings_raises_alerts_and_dead_letters(
    scratch_db: ScratchDatabase, worker_thread: IngestWorker
) -> None:
    code, serial = _seed(scratch_db)
    topic = f"{worker_thread.options.topic_root}/gateways/{code}/readings"
    publisher = Publisher()
    try:
        now = utcnow()
        publisher.publish(topic, {"readings": [_reading(serial, now, 200)]})
        publisher.publish(topic, {"readings": [_reading(serial, now, 200)]})  # a redelivery
        publisher.client.publish(topic, b"garbage", qos=1)
        _wait(lambda: _count(scratch_db) == 1, 10, "the reading")
        with scratch_db.factory() as s:
            _wait(
                lambda: s.scalar(select(func.count()).select_from(DeadLetter)) == 1,
                10,
                "the dead letter",
            )
            alert = s.scalars(select(Alert)).one()
            assert alert.rule == "hypertensive_crisis" and "[S47]" in alert.source
            assert s.scalar(select(DeviceGateway.code)) == code
    finally:
        publisher.close()


# --- SIGKILL mid-stream -------------------------------------------------------------------


class WorkerProcess:
    def __init__(self, database_url: str, client_id: str, topic_root: str) -> None:
        env = {**os.environ, "MEDALLIANCE_DATABASE_URL": database_url}
        self.proc = subprocess.Popen(  # noqa: S603 - our own CLI
            [
                sys.executable,
                "-c",
                "from medalliance.cli import main; main()",
                "mqtt-ingest",
                "--client-id",
                client_id,
                "--batch-max",
                "10",
                "--topic-root",
                topic_root,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.subscribed = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "subscribed to" in line:
                self.subscribed.set()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def test_sigkill_mid_stream_loses_nothing_and_stores_nothing_twice(
    scratch_db: ScratchDatabase, broker: None
) -> None:
    code, serial = _seed(scratch_db)
    root = f"test-{uuid.uuid4().hex[:8]}"
    topic = f"{root}/gateways/{code}/readings"
    client_id = f"ingest-kill-{uuid.uuid4().hex[:12]}"
    first = WorkerProcess(scratch_db.url, client_id, root)
    second: WorkerProcess | None = None
    publisher = Publisher()
    total = 600
    base = utcnow() - timedelta(days=1)
    sent: dict[int, datetime] = {}  # mid -> measured_at
    try:
        assert first.subscribed.wait(30), "".join(first.lines)
        killed = False
        for i in range(total):
            at = base + timedelta(seconds=i)
            sent[publisher.publish(topic, {"readings": [_reading(serial, at)]})] = at
            if not killed and i >= 150 and _count(scratch_db) >= 50:
                first.kill()  # mid-stream: messages in flight, some received, not committed
                killed = True
            time.sleep(0.002)
        assert killed, "the worker never got going"
        _wait(lambda: len(publisher.acked) == total, 30, "the broker's PUBACKs")
        stored_before_restart = _count(scratch_db)
        assert stored_before_restart < total
        second = WorkerProcess(scratch_db.url, client_id, root)
        assert second.subscribed.wait(30), "".join(second.lines)
        acked_at = {sent[mid] for mid in publisher.acked}
        _wait(lambda: _count(scratch_db) >= len(acked_at), 60, "every acknowledged reading")
        time.sleep(0.5)  # let any redelivered duplicates arrive: they must store nothing
        with scratch_db.factory() as s:
            rows = s.execute(
                select(Reading.measured_at, func.count()).group_by(Reading.measured_at)
            ).all()
        stored: dict[datetime, int] = {at: n for at, n in rows}  # noqa: C416 - rows are Row tuples
        assert set(stored) == acked_at, "an acknowledged reading was lost, or a stray stored"
        assert all(n == 1 for n in stored.values()), "a reading was stored twice"
        assert any("session present: True" in line for line in second.lines), second.lines
    finally:
        publisher.close()
        first.stop()
        if second is not None:
            second.stop()


def test_operators_see_the_dead_letters(
    session: Session, client: Any, make_actor: Any, auth_headers: Any
) -> None:
    handle_message(session, "medalliance/gateways/ghost/readings", b'{"readings": [1]}')
    session.flush()
    admin = auth_headers(make_actor(Role.ALLIANCE_ADMIN))
    listed = client.get(
        "/api/monitoring/dead-letters", params={"gateway_code": "ghost"}, headers=admin
    )
    assert listed.status_code == 200, listed.text
    (letter,) = listed.json()
    assert letter["topic"] == "medalliance/gateways/ghost/readings"
    assert "no active registered gateway 'ghost'" in letter["reason"]
    clinician = auth_headers(make_actor(Role.CLINICIAN, institution=InstitutionFactory()))
    assert client.get("/api/monitoring/dead-letters", headers=clinician).status_code == 403


def test_workers_in_a_share_group_split_the_stream(
    scratch_db: ScratchDatabase, broker: None
) -> None:
    code, serial = _seed(scratch_db)
    root, group = f"test-{uuid.uuid4().hex[:8]}", f"g{uuid.uuid4().hex[:6]}"
    workers, threads, stop = [], [], threading.Event()
    for n in range(2):
        options = MqttOptions(
            client_id=f"ingest-{n}-{uuid.uuid4().hex[:8]}", share_group=group, topic_root=root
        )
        assert options.subscription == f"$share/{group}/{root}/gateways/+/readings"
        worker = IngestWorker(scratch_db.factory, options)
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        assert worker.subscribed.wait(10)
        workers.append(worker)
        threads.append(thread)
    publisher = Publisher()
    try:
        base = utcnow() - timedelta(hours=1)
        for i in range(40):
            reading = _reading(serial, base + timedelta(seconds=i))
            publisher.publish(f"{root}/gateways/{code}/readings", {"readings": [reading]})
        _wait(lambda: _count(scratch_db) == 40, 15, "40 readings")
        _wait(lambda: sum(w.stored for w in workers) == 40, 5, "the workers' tallies")
        assert all(w.stored > 0 for w in workers), [w.stored for w in workers]
    finally:
        publisher.close()
        stop.set()
        for thread in threads:
            thread.join(10)
