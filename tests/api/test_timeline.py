"""The timeline's paging, window and sources: counted and paged in SQL, the same answer
as reading everything and slicing it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from medalliance.domains.records import timeline
from medalliance.domains.records.models import Encounter, EncounterClass, EncounterStatus
from medalliance.kernel.actor import Actor
from medalliance.kernel.roles import Role
from tests.factories.alliance import AllianceFactory, InstitutionFactory

Headers = Callable[[Actor], dict[str, str]]
START = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def world(
    session: Session, make_actor: Callable[..., Actor], auth_headers: Headers, client: TestClient
) -> dict[str, Any]:
    """A patient registered at A and B; A has written 8 visits with diagnoses."""
    alliance = AllianceFactory()
    a, b = InstitutionFactory(alliance=alliance), InstitutionFactory(alliance=alliance)
    headers = {
        name: auth_headers(make_actor(Role.CLINICIAN, institution=inst))
        for name, inst in (("a", a), ("b", b))
    }
    body = {
        "family_name": "李",
        "given_name": "秀兰",
        "sex": "female",
        "birth_date": "1949-12-31",
        "id_number": "11010519491231002X",
    }
    pid = client.post("/api/patients", json=body, headers=headers["a"]).json()["patient"]["id"]
    client.post("/api/patients", json=body, headers=headers["b"])
    for day in range(8):
        visit = client.post(
            f"/api/patients/{pid}/encounters",
            json={
                "encounter_class": "outpatient",
                "start": (START + timedelta(days=3 * day)).isoformat(),
                "reason": f"visit {day}",
            },
            headers=headers["a"],
        )
        assert visit.status_code == 201, visit.text
        if day % 2 == 0:
            diagnosis = client.post(
                f"/api/encounters/{visit.json()['id']}/diagnoses",
                json={"primary": True, "western_code": "I10", "western_text": "hypertension"},
                headers=headers["a"],
            )
            assert diagnosis.status_code == 201, diagnosis.text
    return {"a": a, "b": b, "h": headers, "pid": pid}


def _read(client: TestClient, world: dict[str, Any], **params: Any) -> dict[str, Any]:
    response = client.get(
        f"/api/patients/{world['pid']}/timeline", params=params, headers=world["h"]["a"]
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _ids(body: dict[str, Any]) -> list[str]:
    return [e["id"] for e in body["entries"]]


def test_pages_are_slices_of_the_whole_timeline_newest_first(
    client: TestClient, world: dict[str, Any]
) -> None:
    whole = _read(client, world, limit=5000)
    assert whole["total"] == len(whole["entries"]) == 12  # 8 visits, 4 diagnoses
    keys = [(e["at"], e["id"]) for e in whole["entries"]]
    assert keys == sorted(keys, reverse=True)
    pages = [_read(client, world, limit=5, offset=offset) for offset in (0, 5, 10, 15)]
    assert [len(p["entries"]) for p in pages] == [5, 5, 2, 0]
    assert [i for p in pages for i in _ids(p)] == _ids(whole)
    assert {p["total"] for p in pages} == {12}


def test_since_and_until_bound_the_timeline(client: TestClient, world: dict[str, Any]) -> None:
    whole = _read(client, world, limit=5000)
    since, until = START + timedelta(days=5), START + timedelta(days=16)
    inside = [e["id"] for e in whole["entries"] if since <= datetime.fromisoformat(e["at"]) < until]
    bounded = _read(client, world, since=since.isoformat(), until=until.isoformat())
    assert _ids(bounded) == inside and bounded["total"] == len(inside) > 0
    naive = client.get(
        f"/api/patients/{world['pid']}/timeline",
        params={"since": "2026-10-05T00:00:00"},
        headers=world["h"]["a"],
    )
    assert naive.status_code == 422
    assert naive.json()["errors"][0]["field"] == "since"


@pytest.fixture
def reminders(world: dict[str, Any]) -> Iterator[list[uuid.UUID]]:
    """A source registered the simple way (all entries at once), as a domain may."""
    made = [uuid.uuid4() for _ in range(3)]

    def source(_session: Session, records: Sequence[uuid.UUID]) -> list[timeline.RawEntry]:
        assert records  # the person's source records
        return [
            timeline.RawEntry(
                "reminder", made[k], START + timedelta(days=4 * k + 1), world["a"].id, f"r{k}"
            )
            for k in range(3)
        ]

    timeline.register_source("reminder", source)
    try:
        yield made
    finally:
        timeline.unregister_source("reminder")


def test_a_simple_source_is_merged_into_the_pages(
    client: TestClient, world: dict[str, Any], reminders: list[uuid.UUID]
) -> None:
    whole = _read(client, world, limit=5000)
    assert whole["total"] == 15
    assert {str(r) for r in reminders} <= set(_ids(whole))
    keys = [(e["at"], e["id"]) for e in whole["entries"]]
    assert keys == sorted(keys, reverse=True)
    pages = [_read(client, world, limit=4, offset=offset) for offset in range(0, 16, 4)]
    assert [i for p in pages for i in _ids(p)] == _ids(whole)
    only = _read(client, world, types="reminder,diagnosis")
    assert {e["type"] for e in only["entries"]} == {"reminder", "diagnosis"}
    assert only["total"] == 7


def test_withheld_entries_are_neither_shown_nor_counted(
    client: TestClient, world: dict[str, Any]
) -> None:
    response = client.get(f"/api/patients/{world['pid']}/timeline", headers=world["h"]["b"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["entries"] == [] and body["total"] == 0
    assert body["hidden_institutions"] == [world["a"].code]


def test_entries_written_by_a_member_without_a_record_are_decided_and_shown(
    client: TestClient,
    session: Session,
    make_actor: Callable[..., Actor],
    auth_headers: Headers,
) -> None:
    """A member that holds no record of the person wrote into the record at A (as a
    teleconsultation might): its entries are found, decided as another member's, and
    shown to A's clinician, who has a care relationship and the patient's consent."""
    alliance = AllianceFactory()
    a, b = InstitutionFactory(alliance=alliance), InstitutionFactory(alliance=alliance)
    headers = auth_headers(make_actor(Role.CLINICIAN, institution=a))
    body = {"family_name": "周", "given_name": "敏", "sex": "female", "birth_date": "1961-03-02"}
    registered = client.post("/api/patients", json=body, headers=headers).json()
    pid = registered["patient"]["id"]
    recent = datetime.now(UTC) - timedelta(days=3)
    own = client.post(
        f"/api/patients/{pid}/encounters",
        json={"encounter_class": "outpatient", "start": recent.isoformat(), "reason": "visit"},
        headers=headers,
    )
    assert own.status_code == 201, own.text
    remote = Encounter(
        patient_record_id=uuid.UUID(registered["record_id"]),
        institution_id=b.id,
        encounter_class=EncounterClass.TELEMEDICINE,
        status=EncounterStatus.FINISHED,
        start=recent - timedelta(days=1),
        reason="teleconsultation",
    )
    session.add(remote)
    session.flush()

    read = client.get(f"/api/patients/{pid}/timeline", headers=headers).json()

    assert [e["id"] for e in read["entries"]] == [own.json()["id"], str(remote.id)]
    assert read["entries"][1]["institution_code"] == b.code
    assert read["total"] == 2 and read["hidden_institutions"] == []
