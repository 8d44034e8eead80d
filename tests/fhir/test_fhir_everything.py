"""Patient/$everything: valid FHIR, the same resources a read answers, paging, filters,
the access policy per member, one audit event, and no query per resource."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from medalliance.audit.models import AuditEvent
from tests.fhir.conftest import condition_resource, encounter_resource, patient_resource


def _create(client: TestClient, h: dict[str, str], res: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/fhir/{res['resourceType']}", json=res, headers=h)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def _observation(pref: str, code: str, value: float, day: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": pref},
        "effectiveDateTime": f"{day}T08:00:00Z",
        "valueQuantity": {
            "value": value,
            "unit": "mmol/L",
            "system": "http://unitsofmeasure.org",
            "code": "mmol/L",
        },
        "identifier": [{"system": "urn:lab:sample", "value": f"{code}-{day}"}],
    }


def _chart(fhir: TestClient, h: dict[str, str], encounters: int = 2) -> dict[str, Any]:
    """A patient with encounters, conditions, a procedure, an allergy, a medication
    statement and observations: every type of the compartment that FHIR can create."""
    patient = _create(fhir, h, patient_resource())
    pref = f"Patient/{patient['id']}"
    for i in range(encounters):
        enc = _create(
            fhir, h, encounter_resource(pref, period={"start": f"2026-10-{10 + i:02d}T08:00:00Z"})
        )
        _create(fhir, h, condition_resource(pref, f"Encounter/{enc['id']}"))
        _create(
            fhir,
            h,
            {
                "resourceType": "Procedure",
                "status": "completed",
                "subject": {"reference": pref},
                "encounter": {"reference": f"Encounter/{enc['id']}"},
                "code": {"text": "针灸 acupuncture"},
                "performedDateTime": f"2026-10-{10 + i:02d}T09:00:00Z",
            },
        )
    _create(
        fhir,
        h,
        {
            "resourceType": "AllergyIntolerance",
            "patient": {"reference": pref},
            "code": {"text": "青霉素 penicillin"},
            "category": ["medication"],
        },
    )
    _create(
        fhir,
        h,
        {
            "resourceType": "MedicationStatement",
            "status": "active",
            "subject": {"reference": pref},
            "medicationCodeableConcept": {"text": "amlodipine 5 mg"},
        },
    )
    _create(fhir, h, _observation(pref, "2345-7", 5.4, "2026-10-10"))
    _create(fhir, h, _observation(pref, "2093-3", 4.9, "2026-10-11"))
    return patient


def test_everything_is_valid_fhir_and_each_entry_is_what_a_read_answers(
    fhir: TestClient, member: Any
) -> None:
    patient = _chart(fhir, member.h)
    r = fhir.get(f"/fhir/Patient/{patient['id']}/$everything", headers=member.h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    body = r.json()
    Bundle.model_validate(body)  # the whole answer is valid R4(B) by fhir.resources
    kinds = sorted(e["resource"]["resourceType"] for e in body["entry"])
    assert kinds == sorted(
        ["Patient", "AllergyIntolerance", "MedicationStatement"]
        + ["Encounter", "Condition", "Procedure"] * 2
        + ["Observation"] * 2
    )
    assert body["total"] == len(body["entry"])
    assert [link["relation"] for link in body["link"]] == ["self"]  # one page holds it all
    assert body["entry"][0]["resource"]["id"] == patient["id"]
    # the rows-as-dicts path answers exactly what the ORM path of a read answers
    for entry in body["entry"]:
        res = entry["resource"]
        read = fhir.get(f"/fhir/{res['resourceType']}/{res['id']}", headers=member.h).json()
        assert res == read, res["resourceType"]
        assert entry["fullUrl"].endswith(f"/{res['resourceType']}/{res['id']}")


def test_paging_with_count_follows_next_links_to_every_entry(fhir: TestClient, member: Any) -> None:
    patient = _chart(fhir, member.h)
    url = f"/fhir/Patient/{patient['id']}/$everything"
    whole = fhir.get(url, headers=member.h).json()
    expected = [(e["resource"]["resourceType"], e["resource"]["id"]) for e in whole["entry"]]
    seen: list[tuple[str, str]] = []
    page = fhir.get(f"{url}?_count=4", headers=member.h).json()
    pages = 1
    while True:
        Bundle.model_validate(page)
        assert page["total"] == len(expected)
        assert len(page["entry"]) <= 4
        seen += [(e["resource"]["resourceType"], e["resource"]["id"]) for e in page["entry"]]
        links = {link["relation"]: link["url"] for link in page["link"]}
        if pages > 1:
            assert "previous" in links
        if "next" not in links:
            break
        page = fhir.get(links["next"].replace("http://testserver", ""), headers=member.h).json()
        pages += 1
    assert seen == expected  # same order, nothing twice, nothing left out
    assert pages == -(-len(expected) // 4)


def test_type_and_since_narrow_the_answer(fhir: TestClient, member: Any) -> None:
    patient = _chart(fhir, member.h)
    url = f"/fhir/Patient/{patient['id']}/$everything"
    only = fhir.get(f"{url}?_type=Observation,Condition", headers=member.h).json()
    assert sorted({e["resource"]["resourceType"] for e in only["entry"]}) == [
        "Condition",
        "Observation",
    ]
    assert only["total"] == 4
    future = fhir.get(f"{url}?_since=2999-01-01T00:00:00Z", headers=member.h).json()
    assert [e["resource"]["resourceType"] for e in future["entry"]] == ["Patient"]
    past = fhir.get(f"{url}?_since=2000-01-01", headers=member.h).json()
    assert past["total"] == fhir.get(url, headers=member.h).json()["total"]
    bad = fhir.get(f"{url}?_type=Claim", headers=member.h)
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"


def test_unknown_parameter_is_strict_by_default_and_lenient_on_request(
    fhir: TestClient, member: Any
) -> None:
    patient = _create(fhir, member.h, patient_resource())
    url = f"/fhir/Patient/{patient['id']}/$everything?careplan=2020-01-01"
    strict = fhir.get(url, headers=member.h)
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["careplan"]
    lenient = fhir.get(url, headers={**member.h, "Prefer": "handling=lenient"})
    assert lenient.status_code == 200
    outcome = [e for e in lenient.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome[0]["resource"]["issue"][0]["severity"] == "warning"
    assert outcome[0]["resource"]["issue"][0]["expression"] == ["careplan"]


def test_other_members_entries_follow_the_access_policy(
    fhir: TestClient, member: Any, session: Session
) -> None:
    patient = _create(fhir, member.h, patient_resource())
    pid = patient["id"]
    # the same person registered at the other member (the resident ID links them)
    assert _create(fhir, member.h_other, patient_resource())["id"] == pid
    theirs = _create(fhir, member.h_other, encounter_resource(f"Patient/{pid}"))
    url = f"/fhir/Patient/{pid}/$everything"

    # no care relationship with the patient yet: the other member's entries are withheld
    body = fhir.get(url, headers=member.h).json()
    ids = {e["resource"].get("id") for e in body["entry"]}
    assert pid in ids and theirs["id"] not in ids
    withheld = [e for e in body["entry"] if e["search"]["mode"] == "outcome"]
    assert f"Organization/{member.other.id}" in withheld[0]["resource"]["issue"][0]["diagnostics"]
    Bundle.model_validate(body)

    # an encounter here is a care relationship: with the sharing consent, theirs opens
    ours = _create(fhir, member.h, encounter_resource(f"Patient/{pid}"))
    body = fhir.get(url, headers=member.h).json()
    ids = {e["resource"].get("id") for e in body["entry"]}
    assert {ours["id"], theirs["id"]} <= ids
    assert not [e for e in body["entry"] if e["search"]["mode"] == "outcome"]

    # the consent withdrawn: theirs is withheld again, ours stays
    r = fhir.post(f"/api/patients/{pid}/consent", json={"status": "withdrawn"}, headers=member.h)
    assert r.status_code in (200, 201), r.text
    body = fhir.get(url, headers=member.h).json()
    ids = {e["resource"].get("id") for e in body["entry"]}
    assert ours["id"] in ids and theirs["id"] not in ids

    # a researcher reads no identified records: denied and audited
    denied = fhir.get(url, headers=member.h_researcher)
    assert denied.status_code == 403
    assert (
        session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "everything", AuditEvent.outcome == "denied")
        )
        == 1
    )


def test_one_audit_event_and_no_query_per_resource(
    fhir: TestClient, member: Any, session: Session
) -> None:
    small = _chart(fhir, member.h, encounters=1)
    large = _chart_other_person(fhir, member.h, encounters=6)

    def statements(pid: str) -> int:
        engine = session.get_bind()
        seen: list[str] = []

        def count(*args: Any) -> None:
            seen.append(str(args[2]))

        event.listen(engine, "before_cursor_execute", count)
        try:
            r = fhir.get(f"/fhir/Patient/{pid}/$everything", headers=member.h)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert r.status_code == 200
        return len(seen)

    before = session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "everything")
    )
    few, many = statements(small["id"]), statements(large["id"])
    assert few == many  # 3× the resources, the same statements
    after = session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "everything")
    )
    assert after == (before or 0) + 2


def _chart_other_person(fhir: TestClient, h: dict[str, str], encounters: int) -> dict[str, Any]:
    patient = _create(
        fhir,
        h,
        patient_resource(
            identifier=[],
            name=[{"family": "李", "given": ["四"]}],
            gender="male",
            birthDate="1970-02-03",
        ),
    )
    pref = f"Patient/{patient['id']}"
    for i in range(encounters):
        enc = _create(
            fhir, h, encounter_resource(pref, period={"start": f"2026-09-{10 + i:02d}T08:00:00Z"})
        )
        _create(fhir, h, condition_resource(pref, f"Encounter/{enc['id']}"))
    _create(fhir, h, _observation(pref, "2345-7", 6.1, "2026-09-10"))
    return patient


def test_start_and_end_keep_the_care_dates_in_range_and_the_undated(
    fhir: TestClient, member: Any, session: Session
) -> None:
    patient = _chart(fhir, member.h)  # encounters 2026-10-10/11, observations 10-10/11
    pid = patient["id"]
    pref = f"Patient/{pid}"
    old = _create(
        fhir, member.h, encounter_resource(pref, period={"start": "2019-03-01T08:00:00Z"})
    )
    _create(fhir, member.h, _observation(pref, "2160-0", 80.0, "2019-03-01"))
    url = f"/fhir/Patient/{pid}/$everything"

    def kinds(query: str) -> list[str]:
        r = fhir.get(f"{url}?{query}", headers=member.h)
        assert r.status_code == 200, r.text
        body = r.json()
        Bundle.model_validate(body)
        assert body["total"] == len(body["entry"])
        return sorted(e["resource"]["resourceType"] for e in body["entry"])

    whole = kinds("")
    assert whole.count("Encounter") == 3 and whole.count("Observation") == 3
    # only 2026-10-10: one encounter, its procedure, one observation; the conditions and
    # the allergy were recorded today (recordedDate), the medication has no start date
    day = kinds("start=2026-10-10&end=2026-10-10")
    assert day.count("Encounter") == 1 and day.count("Procedure") == 1
    assert day.count("Observation") == 1 and day.count("Condition") == 0
    assert day.count("MedicationStatement") == 1  # no clinical date: kept
    assert "Patient" in day
    # the 2019 care only
    early = kinds("end=2019-12-31")
    assert early.count("Encounter") == 1 and early.count("Observation") == 1
    assert "Procedure" not in early and "AllergyIntolerance" not in early
    ids = {
        e["resource"]["id"] for e in fhir.get(f"{url}?end=2019", headers=member.h).json()["entry"]
    }
    assert old["id"] in ids
    # from 2026-10-11 on: the second encounter, the conditions and allergy of today
    late = kinds("start=2026-10-11")
    assert late.count("Encounter") == 1 and late.count("Condition") == 2
    assert late.count("Observation") == 1
    # the range goes into the links; a bad date or an empty range is a 400
    r = fhir.get(f"{url}?start=2026-10-11&_count=2", headers=member.h).json()
    assert "start=2026-10-11" in r["link"][0]["url"]
    for bad in ("start=yesterday", "end=2026-13-01", "start=2026-10-12&end=2026-10-10"):
        assert fhir.get(f"{url}?{bad}", headers=member.h).status_code == 400, bad


def test_capability_names_the_everything_parameters(fhir: TestClient) -> None:
    cap = fhir.get("/fhir/metadata").json()
    patient = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Patient")
    (op,) = patient["operation"]
    assert "start" in op["documentation"] and "end" in op["documentation"]


@pytest.mark.parametrize("query", ["_count=0", "_count=x", "_offset=-1", "_since=yesterday"])
def test_bad_parameters_are_400(fhir: TestClient, member: Any, query: str) -> None:
    patient = _create(fhir, member.h, patient_resource())
    r = fhir.get(f"/fhir/Patient/{patient['id']}/$everything?{query}", headers=member.h)
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def test_unknown_patient_is_404(fhir: TestClient, member: Any) -> None:
    r = fhir.get("/fhir/Patient/00000000-0000-0000-0000-000000000000/$everything", headers=member.h)
    assert r.status_code == 404
