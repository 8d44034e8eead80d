"""A real FHIR client (fhirpy) against a running uvicorn server with its own database."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import uvicorn
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import (
    AuthorizationError,
    ForbiddenError,
    OperationOutcome,
    ResourceNotFound,
)

from medalliance import wiring
from medalliance.app import create_app
from medalliance.config import Settings
from medalliance.db import migrate
from medalliance.db.engine import build_engine, build_session_factory
from medalliance.domains.alliance.models import Alliance, Institution
from medalliance.kernel.roles import Role
from tests.conftest import (
    TEST_SECRET,
    _create_postgres_database,
    _drop_postgres_database,
    actor_for,
    bearer_for,
)
from tests.fhir.conftest import condition_resource, encounter_resource, patient_resource


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """uvicorn serving the app on a database of its own (same dialect as the suite)."""
    if database_url.startswith("postgresql"):
        # a database of its own beside the suite's (named after it: runs side by side)
        url = _create_postgres_database(database_url + "_fhirpy")
    else:
        url = f"sqlite:///{Path(tmp_path_factory.mktemp('fhirpy')) / 'server.db'}"
    wiring.load_all()
    migrate.upgrade(url)
    engine = build_engine(url)
    factory = build_session_factory(engine)
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
        other = Institution(
            alliance_id=alliance.id,
            code="CHC",
            name_zh="社区",
            name_en="CHC",
            tier="primary",
            type="community_health_centre",
        )
        session.add_all([lead, other])
        session.commit()
        institutions = {"lead": lead, "other": other}
    app = create_app(Settings(database_url=url, secret_key=TEST_SECRET), factory)
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield {"url": f"http://127.0.0.1:{port}/fhir", "institutions": institutions}
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        engine.dispose()
        if url.startswith("postgresql"):
            _drop_postgres_database(url)


def _client(
    server: dict[str, Any], role: Role = Role.CLINICIAN, where: str = "lead"
) -> SyncFHIRClient:
    actor = actor_for(role, institution=server["institutions"][where], user_id=uuid.uuid4())
    return SyncFHIRClient(server["url"], authorization=bearer_for(actor)["Authorization"])


def test_fhirpy_create_read_search(server: dict[str, Any]) -> None:
    client = _client(server)
    patient = client.resource(
        "Patient",
        **{
            k: v
            for k, v in patient_resource(
                identifier=[
                    {"system": "urn:medalliance:id:resident-id", "value": "11010519491231002X"}
                ]
            ).items()
            if k != "resourceType"
        },
    )
    patient.save()
    assert patient.id
    encounter = client.resource(
        "Encounter",
        **{
            k: v
            for k, v in encounter_resource(f"Patient/{patient.id}").items()
            if k != "resourceType"
        },
    )
    encounter.save()
    condition = client.resource(
        "Condition",
        **{
            k: v
            for k, v in condition_resource(
                f"Patient/{patient.id}", f"Encounter/{encounter.id}"
            ).items()
            if k != "resourceType"
        },
    )
    condition.save()

    fetched = client.reference("Patient", patient.id).to_resource()
    assert fetched["birthDate"] == "1949-12-31"
    found = client.resources("Condition").search(patient=patient.id, code="I10").fetch_all()
    assert [c.id for c in found] == [condition.id]
    assert (
        client.resources("Encounter")
        .search(subject=f"Patient/{patient.id}", date__ge="2026-11-01")
        .count()
        == 1
    )
    assert (
        client.resources("Encounter")
        .search(subject=f"Patient/{patient.id}", date__lt="2026-11-01")
        .count()
        == 0
    )
    with_enc = (
        client.resources("Condition")
        .search(patient=patient.id)
        .include("Condition", "encounter")
        .fetch_raw()
    )
    assert {e["resource"]["resourceType"] for e in with_enc["entry"]} == {"Condition", "Encounter"}
    everything = client.execute(f"Patient/{patient.id}/$everything", method="get")
    assert len(everything["entry"]) == 3
    capability = client.execute("metadata", method="get")
    assert capability["fhirVersion"] == "4.0.1"


def test_fhirpy_paging_fetch_all_follows_next_links(server: dict[str, Any]) -> None:
    client = _client(server)
    patient = client.resource(
        "Patient",
        name=[{"family": "Lemke", "given": ["Abram"]}],
        gender="male",
        birthDate="1980-01-01",
    )
    patient.save()
    for day in range(1, 6):
        client.resource(
            "Encounter",
            **{
                k: v
                for k, v in encounter_resource(
                    f"Patient/{patient.id}", period={"start": f"2026-09-0{day}T08:00:00Z"}
                ).items()
                if k != "resourceType"
            },
        ).save()
    every = client.resources("Encounter").search(patient=patient.id).limit(2).fetch_all()
    assert len(every) == 5


def test_fhirpy_errors_and_auth(server: dict[str, Any]) -> None:
    client = _client(server)
    with pytest.raises(OperationOutcome) as bad:
        client.resource(
            "Encounter",
            status="finished",
            subject={"reference": "Patient/0190d0a0-0000-7000-8000-000000000000"},
            **{"class": {"code": "AMB"}},
            period={"start": "2026-01-01T00:00:00Z"},
        ).save()
    assert "refers to nothing" in str(bad.value)
    with pytest.raises(ResourceNotFound):
        client.reference("Patient", str(uuid.uuid4())).to_resource()
    anonymous = SyncFHIRClient(server["url"])
    with pytest.raises(AuthorizationError):
        anonymous.resources("Patient").fetch()
    patient = client.resource(
        "Patient",
        name=[{"family": "Zieme", "given": ["Maryanne"]}],
        gender="female",
        birthDate="1970-02-02",
    )
    patient.save()
    elsewhere = _client(server, where="other")
    with pytest.raises(ForbiddenError, match="care relationship"):
        elsewhere.reference("Patient", patient.id).to_resource()
    researcher = _client(server, Role.RESEARCHER)
    with pytest.raises(ForbiddenError):
        researcher.resources("Patient").fetch()


def test_fhirpy_transaction(server: dict[str, Any]) -> None:
    client = _client(server)
    p = "urn:uuid:" + str(uuid.uuid4())
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": p,
                "resource": patient_resource(
                    name=[{"family": "Kulas", "given": ["Marine"]}], identifier=[]
                ),
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": encounter_resource(p), "request": {"method": "POST", "url": "Encounter"}},
        ],
    }
    result = client.execute("", method="post", data=bundle)
    assert [e["response"]["status"] for e in result["entry"]] == ["201 Created"] * 2


def test_fhirpy_observations(server: dict[str, Any]) -> None:
    client = _client(server)
    patient = client.resource(
        "Patient",
        name=[{"family": "Walsh", "given": ["Alyce"]}],
        gender="female",
        birthDate="1975-05-05",
    )
    patient.save()
    for value, when in ((5.4, "2026-10-01T08:00:00Z"), (7.9, "2026-11-01T08:00:00Z")):
        client.resource(
            "Observation",
            status="final",
            code={"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            subject={"reference": f"Patient/{patient.id}"},
            effectiveDateTime=when,
            valueQuantity={"value": value, "system": "http://unitsofmeasure.org", "code": "mmol/L"},
        ).save()
    recent = (
        client.resources("Observation")
        .search(patient=patient.id, code="http://loinc.org|2345-7", date__ge="2026-10-15")
        .fetch_all()
    )
    assert [o["valueQuantity"]["value"] for o in recent] == [7.9]
    with_patient = (
        client.resources("Observation")
        .search(subject=f"Patient/{patient.id}", category="laboratory")
        .include("Observation", "patient")
        .fetch_raw()
    )
    kinds = [e["resource"]["resourceType"] for e in with_patient["entry"]]
    assert sorted(kinds) == ["Observation", "Observation", "Patient"]
    everything = client.execute(f"Patient/{patient.id}/$everything", method="get")
    assert sum(e["resource"]["resourceType"] == "Observation" for e in everything["entry"]) == 2
    with pytest.raises(OperationOutcome):
        client.resource(
            "Observation",
            status="final",
            code={"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            subject={"reference": f"Patient/{patient.id}"},
            effectiveDateTime="2026-11-02T08:00:00Z",
        ).save()  # no value: the results domain refuses it with an OperationOutcome


def test_fhirpy_history_vread_and_everything_paging(server: dict[str, Any]) -> None:
    client = _client(server)
    patient = client.resource(
        "Patient",
        name=[{"family": "Zhao", "given": ["Min"]}],
        gender="male",
        birthDate="1968-03-04",
    )
    patient.save()
    observations = []
    for day in ("01", "02", "03"):
        obs = client.resource(
            "Observation",
            status="final",
            code={"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            subject={"reference": f"Patient/{patient.id}"},
            effectiveDateTime=f"2026-10-{day}T08:00:00Z",
            valueQuantity={"value": 5.1, "system": "http://unitsofmeasure.org", "code": "mmol/L"},
        )
        obs.save()
        observations.append(obs)
    first = observations[0]
    assert first["meta"]["versionId"] == "1"
    history = client.execute(f"Observation/{first.id}/_history", method="get")
    assert history["type"] == "history" and history["total"] == 1
    assert history["entry"][0]["resource"]["id"] == first.id
    v1 = client.execute(f"Observation/{first.id}/_history/1", method="get")
    assert v1 == client.reference("Observation", first.id).to_resource().serialize()
    with pytest.raises(ResourceNotFound):
        client.execute(f"Observation/{first.id}/_history/2", method="get")
    with pytest.raises(OperationOutcome):  # updated in place: no versions kept, 405
        client.execute(f"Patient/{patient.id}/_history", method="get")

    # $everything paged by _count, followed through the next links
    seen: list[str] = []
    page = client.execute(f"Patient/{patient.id}/$everything", method="get", params={"_count": 2})
    while True:
        assert page["total"] == 4
        seen += [e["resource"]["id"] for e in page["entry"]]
        nxt = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        if nxt is None:
            break
        parts = urlsplit(nxt)
        page = client.execute(
            parts.path.removeprefix("/fhir/"), method="get", params=dict(parse_qsl(parts.query))
        )
    assert seen[0] == patient.id  # the patient first, then each resource once
    assert sorted(seen[1:]) == sorted(o.id for o in observations)
