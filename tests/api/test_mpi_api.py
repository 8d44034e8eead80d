"""The master patient index through the API: probabilistic linking, the review
queue, link and unlink with history."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.domains.alliance.models import Institution
from medalliance.domains.patients.models import PatientRecord, Person
from medalliance.domains.patients.mpi.models import LinkEvent
from medalliance.kernel.actor import Actor
from medalliance.kernel.roles import Role
from tests.factories.alliance import AllianceFactory, InstitutionFactory

Headers = Callable[[Actor], dict[str, str]]


@pytest.fixture
def members(session: Session) -> tuple[Institution, Institution]:
    alliance = AllianceFactory()
    return InstitutionFactory(alliance=alliance), InstitutionFactory(alliance=alliance)


@pytest.fixture
def clerks(
    members: tuple[Institution, Institution],
    make_actor: Callable[..., Actor],
    auth_headers: Headers,
) -> tuple[dict[str, str], dict[str, str]]:
    a, b = members
    return (
        auth_headers(make_actor(Role.NURSE, institution=a)),
        auth_headers(make_actor(Role.NURSE, institution=b)),
    )


def _register(client: TestClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {
        "family_name": "欧阳",
        "given_name": "娜娜",
        "sex": "female",
        "birth_date": "1975-03-08",
        "phones": ["13812345678"],
        "city": "清河市",
        "district": "东城区",
        "street": "和平街12号",
        "postcode": "330102",
    }
    body.update(fields)
    response = client.post("/api/patients", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_homophone_with_shared_phone_links_automatically(
    client: TestClient, clerks: tuple[dict[str, str], dict[str, str]], session: Session
) -> None:
    first = _register(client, clerks[0])
    second = _register(client, clerks[1], given_name="那那", street="和平街12号")
    assert second["link_method"] == "probabilistic"
    assert second["patient"]["id"] == first["patient"]["id"]
    assert session.scalar(select(func.count()).select_from(Person)) == 1


def test_a_different_person_with_the_same_common_name_stays_apart(
    client: TestClient, clerks: tuple[dict[str, str], dict[str, str]]
) -> None:
    first = _register(client, clerks[0], family_name="王", given_name="伟", sex="male")
    other = _register(
        client,
        clerks[1],
        family_name="王",
        given_name="伟",
        sex="male",
        birth_date="1988-11-02",
        phones=["13999999999"],
        street="解放路300号",
        district="西城区",
        postcode="330105",
    )
    assert other["link_method"] == "new_person"
    assert other["patient"]["id"] != first["patient"]["id"]
    assert other["review_candidates"] == 0


def test_uncertain_match_goes_to_review_and_can_be_linked(
    client: TestClient, clerks: tuple[dict[str, str], dict[str, str]], session: Session
) -> None:
    first = _register(client, clerks[0])
    # Same name and sex, birth day and month swapped, new phone, moved: unsure.
    second = _register(
        client,
        clerks[1],
        birth_date="1975-08-03",
        phones=["13700000001"],
        street="人民路5号",
        district="南湖区",
        postcode="330109",
    )
    assert second["link_method"] == "new_person", second
    assert second["review_candidates"] == 1
    queue = client.get("/api/mpi/review", headers=clerks[1])
    assert queue.status_code == 200
    [item] = queue.json()
    assert {item["record"]["id"], item["candidate"]["id"]} == {
        first["record_id"],
        second["record_id"],
    }
    assert 0.5 <= item["probability"] < 0.99
    assert "birth_date" in item["differing_fields"]
    assert "name" not in item["differing_fields"]
    assert item["comparison"]["birth_date"]["level"] == "typo or day/month swap"
    # The first institution sees the same item: it concerns its record too.
    assert [i["id"] for i in client.get("/api/mpi/review", headers=clerks[0]).json()] == [
        item["id"]
    ]

    decided = client.post(
        f"/api/mpi/review/{item['id']}/decision",
        json={"same_person": True, "note": "same passport seen at the desk"},
        headers=clerks[1],
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "linked"
    merged = client.get(f"/api/patients/{first['patient']['id']}", headers=clerks[0]).json()
    assert {r["id"] for r in merged["records"]} == {first["record_id"], second["record_id"]}
    again = client.post(
        f"/api/mpi/review/{item['id']}/decision", json={"same_person": False}, headers=clerks[1]
    )
    assert again.status_code == 409


def test_marked_distinct_is_never_proposed_again(
    client: TestClient, clerks: tuple[dict[str, str], dict[str, str]]
) -> None:
    first = _register(client, clerks[0])
    second = _register(
        client,
        clerks[1],
        birth_date="1975-08-03",
        phones=["13700000001"],
        street="人民路5号",
        district="南湖区",
        postcode="330109",
    )
    [item] = client.get("/api/mpi/review", headers=clerks[1]).json()
    decided = client.post(
        f"/api/mpi/review/{item['id']}/decision",
        json={"same_person": False, "note": "twins"},
        headers=clerks[1],
    )
    assert decided.json()["status"] == "distinct"
    assert client.get("/api/mpi/review", headers=clerks[1]).json() == []
    assert second["patient"]["id"] != first["patient"]["id"]
    distinct = client.get("/api/mpi/review", params={"status": "distinct"}, headers=clerks[1])
    assert [i["id"] for i in distinct.json()] == [item["id"]]


def test_unlink_splits_and_keeps_history(
    client: TestClient, clerks: tuple[dict[str, str], dict[str, str]], session: Session
) -> None:
    first = _register(client, clerks[0])
    second = _register(client, clerks[1], given_name="那那")
    person_id = first["patient"]["id"]
    assert second["patient"]["id"] == person_id
    refused = client.post(
        f"/api/mpi/records/{second['record_id']}/unlink",
        json={"reason": "not her"},
        headers=clerks[0],
    )
    assert refused.status_code == 403  # only the registering institution relinks its record
    split = client.post(
        f"/api/mpi/records/{second['record_id']}/unlink",
        json={"reason": "different mother's name"},
        headers=clerks[1],
    )
    assert split.status_code == 200, split.text
    new_person = split.json()["person_id"]
    assert new_person != person_id
    assert session.scalar(select(func.count()).select_from(PatientRecord)) == 2

    history = client.get(f"/api/mpi/persons/{person_id}/history", headers=clerks[0])
    assert history.status_code == 200
    actions = [(e["record_id"], e["action"]) for e in history.json()]
    assert actions == [
        (first["record_id"], "created"),
        (second["record_id"], "auto_linked"),
        (second["record_id"], "unlinked"),
    ]
    relink = client.post(
        f"/api/mpi/records/{second['record_id']}/link",
        json={"person_id": person_id, "reason": "checked the ID card after all"},
        headers=clerks[1],
    )
    assert relink.status_code == 200, relink.text
    assert relink.json()["person_id"] == person_id
    events = session.scalars(
        select(LinkEvent.action).where(LinkEvent.record_id == uuid.UUID(second["record_id"]))
    ).all()
    assert [str(e) for e in events] == ["auto_linked", "unlinked", "linked"]


def test_review_needs_the_permission(
    client: TestClient,
    members: tuple[Institution, Institution],
    make_actor: Callable[..., Actor],
    auth_headers: Headers,
) -> None:
    for role in (Role.RESEARCHER, Role.AUDITOR, Role.INSTITUTION_ADMIN):
        headers = auth_headers(make_actor(role, institution=members[0]))
        assert client.get("/api/mpi/review", headers=headers).status_code == 403
