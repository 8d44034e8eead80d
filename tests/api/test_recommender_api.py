"""Herb recommendations and the symptom vocabulary through the JSON API."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from medalliance.api.problems import MEDIA_TYPE
from medalliance.kernel.actor import Actor
from medalliance.kernel.roles import Role

Headers = Callable[[Actor], dict[str, str]]


@pytest.fixture
def pharmacist(make_actor: Callable[..., Actor], auth_headers: Headers) -> dict[str, str]:
    return auth_headers(make_actor(Role.PHARMACIST))


def test_recommendations_for_known_and_unknown_symptoms(
    client: TestClient, pharmacist: dict[str, str]
) -> None:
    response = client.get(
        "/api/tcm/recommendations",
        params={"symptoms": "咳嗽 发烧了 头痛", "k": 7},
        headers=pharmacist,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["symptoms"] == ["咳嗽", "头痛"]
    assert body["unknown_symptoms"] == ["发烧了"]
    assert [s["rank"] for s in body["suggestions"]] == list(range(1, 8))
    assert len({s["herb"] for s in body["suggestions"]}) == 7
    assert body["safety"] == {
        "checker": "TCM reference rules (not clinically reviewed)",
        "checked": True,
    }


def test_herbs_already_prescribed_are_not_suggested_again(
    client: TestClient, pharmacist: dict[str, str]
) -> None:
    first = client.get(
        "/api/tcm/recommendations", params={"symptoms": "咳嗽", "k": 3}, headers=pharmacist
    ).json()["suggestions"][0]["herb"]
    again = client.get(
        "/api/tcm/recommendations",
        params={"symptoms": "咳嗽", "k": 3, "herbs": first},
        headers=pharmacist,
    ).json()
    assert first not in [s["herb"] for s in again["suggestions"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"symptoms": "", "k": 5}, "symptoms"),
        ({"symptoms": "   ", "k": 5}, "symptoms"),
        ({"k": 5}, "symptoms"),
        ({"symptoms": "咳嗽", "k": 0}, "k"),
        ({"symptoms": "咳嗽", "k": 51}, "k"),
        ({"symptoms": "咳嗽", "k": "ten"}, "k"),
    ],
)
def test_bad_input_is_a_422_problem(
    client: TestClient, pharmacist: dict[str, str], params: dict[str, object], field: str
) -> None:
    response = client.get("/api/tcm/recommendations", params=params, headers=pharmacist)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(MEDIA_TYPE)
    assert field in [e["field"] for e in response.json()["errors"]]


def test_only_unknown_symptoms_is_a_422_naming_them(
    client: TestClient, pharmacist: dict[str, str]
) -> None:
    response = client.get(
        "/api/tcm/recommendations", params={"symptoms": "发烧了 头好疼"}, headers=pharmacist
    )
    assert response.status_code == 422
    assert response.json()["unknown_symptoms"] == ["发烧了", "头好疼"]


def test_symptom_lookup(client: TestClient, pharmacist: dict[str, str]) -> None:
    # 2532: lines of the source train.txt whose symptoms include id 1 (咳嗽), counted by awk.
    response = client.get("/api/tcm/symptoms", params={"q": "kesou"}, headers=pharmacist)
    assert response.status_code == 200
    assert response.json()[0] == {"name": "咳嗽", "pinyin": "kesou", "prescriptions": 2532}
    assert (
        client.get("/api/tcm/symptoms", params={"limit": 0}, headers=pharmacist).status_code == 422
    )


def test_a_nurse_may_not_ask_for_herbs(
    client: TestClient, make_actor: Callable[..., Actor], auth_headers: Headers
) -> None:
    headers = auth_headers(make_actor(Role.NURSE))
    response = client.get("/api/tcm/recommendations", params={"symptoms": "咳嗽"}, headers=headers)
    assert response.status_code == 403
