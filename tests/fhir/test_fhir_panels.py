"""Lab panel DiagnosticReports: a transaction writes the results and the panel grouping
them; the panel is read, searched (alone and beside imaging reports) and checked."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.audit.models import AuditEvent
from medalliance.domains.results import schemas as result_schemas
from medalliance.domains.results import service as results_service
from medalliance.domains.results.models import Result, ResultPanel, ResultPanelMember
from tests.fhir.conftest import encounter_resource, patient_resource
from tests.fhir.test_fhir_results import LOINC, _create, _valid, observation

CBC = {"system": LOINC, "code": "58410-2", "display": "CBC panel - Blood by Automated count"}


def panel(pref: str, results: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}
        ],
        "code": {"coding": [CBC], "text": CBC["display"]},
        "subject": {"reference": pref},
        "effectiveDateTime": "2026-11-02T08:00:00+08:00",
        "issued": "2026-11-02T10:00:00+08:00",
        "identifier": [{"system": "urn:test:lis", "value": "REP-1"}],
        "result": [{"reference": r} for r in results],
        "conclusion": "Within normal limits.",
        **extra,
    }


def _bundle(pref: str) -> dict[str, Any]:
    """An encounter, two results and the panel over them, by urn:uuid references."""
    enc, o1, o2, rep = (f"urn:uuid:{uuid.uuid4()}" for _ in range(4))
    hb = observation(
        pref,
        code={"coding": [{"system": LOINC, "code": "718-7", "display": "Hemoglobin"}]},
        valueQuantity={"value": 13.5, "system": "http://unitsofmeasure.org", "code": "g/dL"},
        identifier=[],
    )
    entries = [
        (rep, panel(pref, [o1, o2], encounter={"reference": enc})),  # before what it names
        (enc, encounter_resource(pref)),
        (o1, observation(pref, identifier=[], encounter={"reference": enc})),
        (o2, hb),
    ]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": url,
                "resource": res,
                "request": {"method": "POST", "url": res["resourceType"]},
            }
            for url, res in entries
        ],
    }


def test_transaction_stores_a_lab_panel_over_its_results(
    fhir: TestClient, member: Any, session: Session
) -> None:
    patient = _create(fhir, member.h, patient_resource())
    pref = f"Patient/{patient['id']}"
    r = fhir.post("/fhir", json=_bundle(pref), headers=member.h)
    assert r.status_code == 200, r.text
    locations = [e["response"]["location"] for e in r.json()["entry"]]
    rep_id = locations[0].rsplit("/", 1)[1]
    obs_ids = [loc.rsplit("/", 1)[1] for loc in locations[2:]]
    enc_id = locations[1].rsplit("/", 1)[1]
    report = fhir.get(f"/fhir/DiagnosticReport/{rep_id}", headers=member.h).json()
    _valid(report)
    assert report["result"] == [{"reference": f"Observation/{i}"} for i in obs_ids]
    assert report["code"]["coding"] == [CBC] and report["status"] == "final"
    assert report["encounter"] == {"reference": f"Encounter/{enc_id}"}
    assert report["subject"] == {"reference": pref}
    assert report["conclusion"] == "Within normal limits."
    assert report["performer"] == [{"reference": f"Organization/{member.inst.id}"}]
    assert report["identifier"] == [{"system": "urn:test:lis", "value": "REP-1"}]
    assert report["category"][0]["coding"][0]["code"] == "LAB"
    for query, n in (
        (f"patient={pref}", 1),
        ("code=58410-2", 1),
        (f"code={LOINC}|58410-2", 1),
        ("code=24627-2", 0),
        ("date=ge2026-11-01", 1),
        ("date=lt2026-11-01", 0),
        ("status=final", 1),
        ("status=preliminary", 0),
        (f"_id={rep_id}", 1),
        ("identifier=urn:test:lis|REP-1", 1),
        ("identifier=REP-2", 0),
        ("category=LAB", 1),
        ("category=RAD", 0),
        (f"result=Observation/{obs_ids[1]}", 1),
        (f"encounter=Encounter/{enc_id}", 1),
    ):
        got = fhir.get(f"/fhir/DiagnosticReport?patient={pref}&{query}", headers=member.h)
        assert got.status_code == 200, (query, got.text)
        assert got.json()["total"] == n, query
    # the patient's timeline shows the panel beside its results
    entries = fhir.get(f"/api/patients/{patient['id']}/timeline", headers=member.h).json()[
        "entries"
    ]
    panels = [e for e in entries if e["type"] == "result_panel"]
    assert [(p["id"], p["summary"]) for p in panels] == [
        (rep_id, f"{CBC['display']}: Within normal limits.")
    ]
    assert panels[0]["encounter_id"] == enc_id and panels[0]["status"] == "final"
    # another member without consent or care sees nothing of it
    assert fhir.get(f"/fhir/DiagnosticReport/{rep_id}", headers=member.h_other).status_code == 403


def test_panels_and_imaging_reports_share_one_search(
    fhir: TestClient, member: Any, session: Session
) -> None:
    patient = _create(fhir, member.h, patient_resource())
    pref = f"Patient/{patient['id']}"
    obs = _create(fhir, member.h, observation(pref, identifier=[]))
    early = _create(
        fhir,
        member.h,
        panel(pref, [f"Observation/{obs['id']}"], effectiveDateTime="2026-10-01", identifier=[]),
    )
    late = _create(fhir, member.h, panel(pref, [], effectiveDateTime="2026-11-05", identifier=[]))
    imaging = results_service.record_imaging_report(
        session=session,
        actor=member.clinician,
        person_id=uuid.UUID(patient["id"]),
        data=result_schemas.ImagingReportIn(
            item_code="24627-2",
            effective_at=datetime(2026, 10, 15, 9, tzinfo=UTC),
            modality="CT",
            report_text="No nodules.",
        ),
    )
    session.commit()
    ids = [early["id"], str(imaging.id), late["id"]]

    def page(query: str) -> tuple[int, list[str]]:
        got = fhir.get(f"/fhir/DiagnosticReport?patient={pref}&{query}", headers=member.h).json()
        return got["total"], [e["resource"]["id"] for e in got.get("entry", [])]

    assert page("_sort=date") == (3, ids)
    assert page("_sort=-date") == (3, ids[::-1])
    assert page("_sort=date&_count=2&_offset=1") == (3, ids[1:])
    assert page("_summary=count") == (3, [])
    assert page("category=RAD") == (1, [str(imaging.id)])
    assert page("category=LAB&_sort=date") == (2, [early["id"], late["id"]])
    assert page("encounter=Encounter/" + str(uuid.uuid4())) == (0, [])
    everything = fhir.get(f"/fhir/Patient/{patient['id']}/$everything", headers=member.h).json()
    got = {e["resource"]["id"] for e in everything["entry"]}
    assert set(ids) <= got


def test_bad_panels_change_nothing(fhir: TestClient, member: Any, session: Session) -> None:
    mine = _create(fhir, member.h, patient_resource())
    other = _create(
        fhir,
        member.h,
        patient_resource(
            identifier=[],
            name=[{"family": "李", "given": ["雷"]}],
            birthDate="1980-01-01",
            gender="male",
        ),
    )
    theirs = _create(fhir, member.h, observation(f"Patient/{other['id']}", identifier=[]))
    pref = f"Patient/{mine['id']}"
    before = (
        session.scalar(select(func.count()).select_from(ResultPanel)),
        session.scalar(select(func.count()).select_from(ResultPanelMember)),
        session.scalar(select(func.count()).select_from(Result)),
    )
    cases = [
        (panel(pref, [f"Observation/{theirs['id']}"]), "another patient's"),
        (panel(pref, [f"Observation/{uuid.uuid4()}"]), "refers to nothing"),
        (panel(pref, [], code={"text": "no code"}), "DiagnosticReport.code"),
        (panel(pref, [], status="cancelled"), "DiagnosticReport.status"),
        (panel(pref, [], effectiveDateTime=None, issued=None), "effective"),
        (
            panel(pref, [], presentedForm=[{"contentType": "text/plain", "data": "eA=="}]),
            "presentedForm",
        ),
    ]
    for body, why in cases:
        body = {k: v for k, v in body.items() if v is not None}
        r = fhir.post("/fhir/DiagnosticReport", json=body, headers=member.h)
        assert r.status_code == 422, (why, r.text)
        assert why in r.text, (why, r.text)
    # a transaction whose panel is bad writes none of its results either
    bundle = _bundle(pref)
    bundle["entry"][0]["resource"]["status"] = "cancelled"
    audits = session.scalar(select(func.count()).select_from(AuditEvent))
    r = fhir.post("/fhir", json=bundle, headers=member.h)
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.status"]
    after = (
        session.scalar(select(func.count()).select_from(ResultPanel)),
        session.scalar(select(func.count()).select_from(ResultPanelMember)),
        session.scalar(select(func.count()).select_from(Result)),
    )
    assert after == before
    # the failed transaction's writes left no audit rows behind (denials would)
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == audits


def test_a_lab_panel_is_in_everything_and_has_its_one_version(
    fhir: TestClient, member: Any
) -> None:
    patient = _create(fhir, member.h, patient_resource())
    pref = f"Patient/{patient['id']}"
    r = fhir.post("/fhir", json=_bundle(pref), headers=member.h)
    assert r.status_code == 200, r.text
    rep_id = r.json()["entry"][0]["response"]["location"].rsplit("/", 1)[1]
    report = fhir.get(f"/fhir/DiagnosticReport/{rep_id}", headers=member.h).json()
    assert report["meta"]["versionId"] == "1"
    everything = fhir.get(f"/fhir/Patient/{patient['id']}/$everything", headers=member.h).json()
    reports = [
        e["resource"]
        for e in everything["entry"]
        if e["resource"]["resourceType"] == "DiagnosticReport"
    ]
    assert reports == [report]  # the same answer as a plain read
    vread = fhir.get(f"/fhir/DiagnosticReport/{rep_id}/_history/1", headers=member.h)
    assert vread.status_code == 200 and vread.json() == report
    assert vread.headers["etag"] == 'W/"1"'
    assert (
        fhir.get(f"/fhir/DiagnosticReport/{rep_id}/_history/2", headers=member.h).status_code == 404
    )
    history = fhir.get(f"/fhir/DiagnosticReport/{rep_id}/_history", headers=member.h).json()
    assert history["type"] == "history" and history["entry"][0]["resource"] == report
