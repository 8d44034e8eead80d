"""``medalliance mqtt-ingest``: the MQTT ingestion worker."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Annotated

import typer

from medalliance.domains.monitoring.mqtt_ingest import IngestWorker, MqttOptions


def mqtt_ingest(
    host: Annotated[str, typer.Option(help="Broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Broker port.")] = 1883,
    client_id: Annotated[
        str, typer.Option(help="Fixed client id: the broker keeps this worker's session.")
    ] = "medalliance-mqtt-ingest",
    share_group: Annotated[
        str | None,
        typer.Option(help="Subscribe as $share/<group>/… so several workers split the load."),
    ] = None,
    topic_root: Annotated[
        str, typer.Option(help="First topic level: <root>/gateways/<code>/readings.")
    ] = "medalliance",
    username: Annotated[str | None, typer.Option(help="Broker account.")] = None,
    batch_max: Annotated[int, typer.Option(help="Messages per transaction.")] = 50,
) -> None:
    """Subscribe to <root>/gateways/+/readings (QoS 1) and store the readings;
    each message is acknowledged only after its transaction commits. The broker
    password comes from MEDALLIANCE_MQTT_PASSWORD."""
    from medalliance import wiring
    from medalliance.config import get_settings
    from medalliance.db.engine import build_engine, build_session_factory

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stdout,
    )
    wiring.load_all()
    factory = build_session_factory(build_engine(get_settings().database_url))
    options = MqttOptions(
        host=host,
        port=port,
        client_id=client_id,
        share_group=share_group,
        topic_root=topic_root,
        username=username,
        password=os.environ.get("MEDALLIANCE_MQTT_PASSWORD"),
        batch_max=batch_max,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    IngestWorker(factory, options).run(stop)
