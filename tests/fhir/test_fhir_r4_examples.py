"""The official R4 examples (copied in tests/data/fhir/fhir-r4-examples) of the mapped
types round-trip through the fhir.resources R4B models, and through our mappers."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class

from medalliance.fhir.resources import REGISTRY

EXAMPLES = Path(__file__).parent.parent / "data" / "fhir" / "fhir-r4-examples"
MAPPED = {m.resource_type for m in REGISTRY}
INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")


def _load(name: str) -> dict[str, Any]:
    return dict(json.loads((EXAMPLES / name).read_text(encoding="utf-8-sig")))


def _resources() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.json")):
        data = _load(path.name)
        items = (
            [e["resource"] for e in data["entry"]] if data["resourceType"] == "Bundle" else [data]
        )
        found += [
            (f"{path.name}:{r['resourceType']}/{r.get('id', i)}", r)
            for i, r in enumerate(items)
            if r["resourceType"] in MAPPED
        ]
    return found


def _normal(value: Any) -> Any:
    """Instants compare as instants ('.87+00:00' and '.870000Z' are the same moment)."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, str) and INSTANT.match(value):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


EXAMPLE_RESOURCES = _resources()


def test_there_are_examples_of_every_mapped_type() -> None:
    kinds = {r["resourceType"] for _, r in EXAMPLE_RESOURCES}
    assert kinds >= MAPPED - {"PractitionerRole"}


@pytest.mark.parametrize(
    ("name", "resource"), EXAMPLE_RESOURCES, ids=[n for n, _ in EXAMPLE_RESOURCES]
)
def test_example_round_trips_through_the_models(name: str, resource: dict[str, Any]) -> None:
    model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    again = json.loads(model.model_dump_json(exclude_none=True))
    assert _normal(again) == _normal(resource)


def _codes(concept: dict[str, Any] | None) -> set[tuple[str | None, str | None]]:
    return {(c.get("system"), c.get("code")) for c in (concept or {}).get("coding", [])}


def test_examples_round_trip_through_the_mappers(fhir: TestClient, member: Any) -> None:
    """Clinical examples, re-pointed at a patient of ours, stored and answered back with
    what the domain models: codes, statuses, classes and times kept."""
    patient = next(
        r
        for n, r in EXAMPLE_RESOURCES
        if n.startswith("SmartPatientA") and r["resourceType"] == "Patient"
    )
    p, e = (
        "urn:uuid:a0000000-0000-4000-8000-000000000001",
        "urn:uuid:a0000000-0000-4000-8000-000000000002",
    )
    encounter = {**_load("encounter-example.json"), "subject": {"reference": p}}
    # the domain dates every encounter: the example has no period and is refused, clearly
    refused = fhir.post(
        "/fhir/Encounter",
        json={
            **encounter,
            "subject": {"reference": "Patient/0190d0a0-0000-7000-8000-000000000000"},
        },
        headers=member.h,
    )
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["expression"] == ["Encounter.period.start"]
    encounter["period"] = {"start": "2013-04-05T09:00:00Z"}
    condition = {
        **_load("Condition-For-Patient-f001.json"),
        "subject": {"reference": p},
        "encounter": {"reference": e},
    }
    allergy = {**_load("allergyintolerance-example.json"), "patient": {"reference": p}}
    allergy.pop("recorder", None)
    allergy.pop("asserter", None)
    medication = {**_load("medicationstatementexample1.json"), "subject": {"reference": p}}
    procedure = {
        **_load("procedure-example.json"),
        "subject": {"reference": p},
        "encounter": {"reference": e},
    }
    entries = [
        {"fullUrl": p, "resource": patient, "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": e, "resource": encounter, "request": {"method": "POST", "url": "Encounter"}},
        *(
            {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for r in (condition, allergy, medication, procedure)
        ),
    ]
    r = fhir.post(
        "/fhir",
        json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
        headers=member.h,
    )
    assert r.status_code == 200, r.text
    out = {x["resource"]["resourceType"]: x["resource"] for x in r.json()["entry"]}
    for resource in out.values():
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)

    assert out["Patient"]["birthDate"] == patient["birthDate"]
    assert out["Patient"]["gender"] == patient["gender"]
    assert out["Encounter"]["class"]["code"] == encounter["class"]["code"]
    assert out["Encounter"]["status"] == encounter["status"]
    assert _codes(out["Condition"]["code"]) >= _codes(condition["code"])
    assert (
        out["Condition"]["clinicalStatus"]["coding"][0]["code"]
        == condition["clinicalStatus"]["coding"][0]["code"]
    )
    assert _codes(out["AllergyIntolerance"]["code"]) >= _codes(allergy["code"])
    assert out["AllergyIntolerance"]["category"] == allergy["category"]
    assert out["MedicationStatement"]["status"] == medication["status"]
    contained = medication["contained"][0]["code"]
    assert _codes(out["MedicationStatement"]["medicationCodeableConcept"]) >= _codes(contained)
    assert _codes(out["Procedure"]["code"]) >= _codes(procedure["code"])
