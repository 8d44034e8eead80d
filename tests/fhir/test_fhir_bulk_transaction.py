"""Transactions written in groups (create_many): the guarantees of one-by-one stay —
conditional creates see what was written before them, a bad entry is named and
changes nothing, and every entry is audited."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.audit.models import AuditEvent
from medalliance.domains.results.models import Result
from tests.fhir.conftest import condition_resource, encounter_resource, patient_resource
from tests.fhir.test_fhir_results import LOINC, observation


def _entry(url: str, res: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
    request = {"method": "POST", "url": res["resourceType"]}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    return {"fullUrl": url, "resource": res, "request": request}


def _obs(pref: str, code: str, ident: str) -> dict[str, Any]:
    return observation(
        pref,
        code={"coding": [{"system": LOINC, "code": code}]},
        identifier=[{"system": "urn:test:lis", "value": ident}],
    )


def test_conditional_create_sees_the_group_written_before_it(
    fhir: TestClient, member: Any, session: Session
) -> None:
    pat = f"urn:uuid:{uuid.uuid4()}"
    entries = [_entry(pat, patient_resource())]
    entries += [_entry(f"urn:uuid:{uuid.uuid4()}", _obs(pat, "2345-7", f"A-{i}")) for i in range(3)]
    # after the plain creates: finds A-1 (written by the group before it), creates nothing
    entries.append(
        _entry(
            f"urn:uuid:{uuid.uuid4()}",
            _obs(pat, "2345-7", "A-1"),
            if_none_exist="identifier=urn:test:lis|A-1",
        )
    )
    # a plain create after the conditional one still joins a group
    entries.append(_entry(f"urn:uuid:{uuid.uuid4()}", _obs(pat, "2093-3", "A-9")))
    audits = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    r = fhir.post(
        "/fhir",
        json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
        headers=member.h,
    )
    assert r.status_code == 200, r.text
    answers = r.json()["entry"]
    assert [a["response"]["status"] for a in answers] == [
        "201 Created",
        "201 Created",
        "201 Created",
        "201 Created",
        "200 OK",
        "201 Created",
    ]
    assert answers[4]["response"]["location"] == answers[2]["response"]["location"]
    assert answers[4]["resource"]["identifier"] == [{"system": "urn:test:lis", "value": "A-1"}]
    assert session.scalar(select(func.count()).select_from(Result)) == 4
    # one audited write per result, as one by one
    written = session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == "create", AuditEvent.resource_type == "Result")
    )
    assert written == 4
    assert (session.scalar(select(func.count()).select_from(AuditEvent)) or 0) > audits + 4


def test_a_bad_entry_in_a_group_is_named_and_changes_nothing(
    fhir: TestClient, member: Any, session: Session
) -> None:
    pat = f"urn:uuid:{uuid.uuid4()}"
    entries = [_entry(pat, patient_resource())]
    entries += [_entry(f"urn:uuid:{uuid.uuid4()}", _obs(pat, "2345-7", f"B-{i}")) for i in range(3)]
    # the same identifier twice in one group: the second clashes with the first
    entries.append(_entry(f"urn:uuid:{uuid.uuid4()}", _obs(pat, "2093-3", "B-1")))
    before = session.scalar(select(func.count()).select_from(Result))
    audits = session.scalar(select(func.count()).select_from(AuditEvent))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    r = fhir.post("/fhir", json=bundle, headers=member.h)
    assert r.status_code == 409, r.text
    issue = r.json()["issue"][0]
    assert issue["diagnostics"].startswith("entry 4:")
    assert issue["expression"] == ["Bundle.entry[4].resource.identifier"]
    # a bad unit in the middle of a group names its own entry
    entries[4] = _entry(entries[4]["fullUrl"], _obs(pat, "2093-3", "B-4"))
    entries[2]["resource"]["valueQuantity"] = {"value": 1, "code": "mmol/%%L"}
    r = fhir.post("/fhir", json=bundle, headers=member.h)
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["diagnostics"].startswith("entry 2:")
    assert session.scalar(select(func.count()).select_from(Result)) == before
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == audits


def test_an_update_runs_alone_between_groups(
    fhir: TestClient, member: Any, session: Session
) -> None:
    patient = fhir.post("/fhir/Patient", json=patient_resource(), headers=member.h).json()
    pref = f"Patient/{patient['id']}"
    open_visit = encounter_resource(pref, status="in-progress")
    open_visit["period"] = {"start": "2026-11-01T09:00:00+08:00"}
    enc = fhir.post("/fhir/Encounter", json=open_visit, headers=member.h).json()
    closed = {
        **encounter_resource(pref),
        "id": enc["id"],
        "period": {"start": "2026-11-01T09:00:00+08:00", "end": "2026-11-01T10:00:00+08:00"},
    }
    new_visit = f"urn:uuid:{uuid.uuid4()}"
    entries = [
        _entry(new_visit, encounter_resource(pref)),
        {
            "fullUrl": f"Encounter/{enc['id']}",
            "resource": closed,
            "request": {"method": "PUT", "url": f"Encounter/{enc['id']}"},
        },
        _entry(f"urn:uuid:{uuid.uuid4()}", condition_resource(pref, new_visit)),
        _entry(f"urn:uuid:{uuid.uuid4()}", condition_resource(pref, f"Encounter/{enc['id']}")),
    ]
    r = fhir.post(
        "/fhir",
        json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
        headers=member.h,
    )
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["201 Created", "200 OK", "201 Created", "201 Created"]
    updated = fhir.get(f"/fhir/Encounter/{enc['id']}", headers=member.h).json()
    assert updated["status"] == "finished" and updated["period"]["end"].startswith("2026-11-01")
    new_id = r.json()["entry"][0]["response"]["location"].rsplit("/", 1)[1]
    for encounter_id in (new_id, enc["id"]):
        found = fhir.get(
            f"/fhir/Condition?patient={pref}&encounter=Encounter/{encounter_id}", headers=member.h
        ).json()
        assert found["total"] == 1, encounter_id


def _batch(fhir: TestClient, headers: dict[str, str], entries: list[dict[str, Any]]) -> Any:
    r = fhir.post(
        "/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": entries}, headers=headers
    )
    assert r.status_code == 200, r.text
    return r.json()["entry"]


def _result_audits(session: Session) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "create", AuditEvent.resource_type == "Result")
        )
        or 0
    )


def test_a_clean_batch_run_is_written_as_one_group(
    fhir: TestClient, member: Any, session: Session
) -> None:
    patient = fhir.post("/fhir/Patient", json=patient_resource(), headers=member.h).json()
    pref = f"Patient/{patient['id']}"
    entries = [
        {"resource": _obs(pref, "2345-7", f"B-{i}"), "request": {"method": "POST", "url": "Obs"}}
        for i in range(5)
    ]
    answers = _batch(fhir, member.h, entries)
    assert [a["response"]["status"] for a in answers] == ["201 Created"] * 5
    assert session.scalar(select(func.count()).select_from(Result)) == 5
    assert _result_audits(session) == 5


def test_a_bad_entry_in_a_batch_run_fails_alone(
    fhir: TestClient, member: Any, session: Session
) -> None:
    """The run is tried as one group; one bad entry undoes the try (and its audit
    events), then each entry is answered on its own: the good ones are written once
    and audited once."""
    patient = fhir.post("/fhir/Patient", json=patient_resource(), headers=member.h).json()
    pref = f"Patient/{patient['id']}"
    entries = [
        {"resource": _obs(pref, "2345-7", f"C-{i}"), "request": {"method": "POST", "url": "Obs"}}
        for i in range(4)
    ]
    entries[2]["resource"]["subject"] = {"reference": f"Patient/{uuid.uuid4()}"}  # nobody
    answers = _batch(fhir, member.h, entries)
    statuses = [a["response"]["status"] for a in answers]
    assert statuses[:2] == ["201 Created", "201 Created"] and statuses[3] == "201 Created"
    assert statuses[2].startswith("4")
    assert session.scalar(select(func.count()).select_from(Result)) == 3
    assert _result_audits(session) == 3
    found = fhir.get(f"/fhir/Observation?patient={pref}&_summary=count", headers=member.h)
    assert found.json()["total"] == 3


def test_a_denied_batch_run_audits_each_denial_once(
    fhir: TestClient, member: Any, session: Session
) -> None:
    patient = fhir.post("/fhir/Patient", json=patient_resource(), headers=member.h).json()
    pref = f"Patient/{patient['id']}"
    entries = [
        {"resource": _obs(pref, "2345-7", f"D-{i}"), "request": {"method": "POST", "url": "Obs"}}
        for i in range(3)
    ]
    denied_before = (
        session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.outcome == "denied")
        )
        or 0
    )
    answers = _batch(fhir, member.h_other, entries)
    assert [a["response"]["status"] for a in answers] == ["403"] * 3
    assert session.scalar(select(func.count()).select_from(Result)) == 0
    denied = session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.outcome == "denied")
    )
    assert denied == denied_before + 3
