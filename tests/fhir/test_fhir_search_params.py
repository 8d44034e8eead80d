"""Search parameters, table-driven per resource type, and the CapabilityStatement held to
what works: every advertised parameter, _include and _revinclude is accepted; anything
else is a 400 (strict, the default) or left out with a warning (Prefer: handling=lenient)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from medalliance.kernel.roles import Role
from tests.fhir.conftest import condition_resource, encounter_resource, patient_resource
from tests.fhir.test_fhir_everything import _create, _observation


def _ids(body: dict[str, Any], rtype: str | None = None) -> list[str]:
    return [
        e["resource"]["id"]
        for e in body.get("entry", [])
        if e["search"]["mode"] != "outcome"
        and (rtype is None or e["resource"]["resourceType"] == rtype)
    ]


@pytest.fixture
def chart(fhir: TestClient, member: Any) -> dict[str, Any]:
    """Patient P with two encounters (1 Oct finished, 3 Oct in progress), a diagnosis in
    each, two observations; patient Q with one encounter on 2 Oct."""
    h = member.h
    p = _create(fhir, h, patient_resource())
    q = _create(
        fhir,
        h,
        patient_resource(
            identifier=[], name=[{"family": "李", "given": ["四"]}], birthDate="1970-02-03"
        ),
    )
    pref, qref = f"Patient/{p['id']}", f"Patient/{q['id']}"
    e1 = _create(
        fhir,
        h,
        encounter_resource(
            pref,
            period={"start": "2026-10-01T08:00:00Z"},
            identifier=[{"system": "urn:his:visit", "value": "V1"}],
        ),
    )
    e2 = _create(
        fhir,
        h,
        encounter_resource(pref, status="in-progress", period={"start": "2026-10-03T08:00:00Z"}),
    )
    e3 = _create(fhir, h, encounter_resource(qref, period={"start": "2026-10-02T08:00:00Z"}))
    c1 = _create(fhir, h, condition_resource(pref, f"Encounter/{e1['id']}"))
    c2 = condition_resource(pref, f"Encounter/{e2['id']}")
    c2["code"] = {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"}]}
    c2["clinicalStatus"]["coding"][0]["code"] = "resolved"
    c2 = _create(fhir, h, c2)
    o1 = _create(fhir, h, _observation(pref, "2345-7", 5.4, "2026-10-01"))
    o2 = _create(fhir, h, _observation(pref, "2093-3", 4.9, "2026-10-03"))
    return {
        "P": p["id"], "Q": q["id"], "E1": e1["id"], "E2": e2["id"], "E3": e3["id"],
        "C1": c1["id"], "C2": c2["id"], "O1": o1["id"], "O2": o2["id"],
    }  # fmt: skip


# (resource type, query with {P} {E1} … placeholders, the ids expected in order or as a set)
CASES: list[tuple[str, str, list[str] | set[str]]] = [
    ("Encounter", "_id={E1}", {"E1"}),
    ("Encounter", "_id={E1},{E3}", {"E1", "E3"}),
    ("Encounter", "identifier=urn:his:visit|V1", {"E1"}),
    ("Encounter", "identifier=V1", {"E1"}),
    ("Encounter", "patient=Patient/{P}", {"E1", "E2"}),
    ("Encounter", "subject=Patient/{P}", {"E1", "E2"}),
    ("Encounter", "patient={Q}", {"E3"}),
    ("Encounter", "patient=Patient/{P}&date=2026-10-01", {"E1"}),
    ("Encounter", "patient=Patient/{P}&date=eq2026-10-01", {"E1"}),
    ("Encounter", "patient=Patient/{P}&date=ne2026-10-01", {"E2"}),
    ("Encounter", "patient=Patient/{P}&date=lt2026-10-03", {"E1"}),
    ("Encounter", "patient=Patient/{P}&date=le2026-10-03", {"E1", "E2"}),
    ("Encounter", "patient=Patient/{P}&date=gt2026-10-01", {"E2"}),
    ("Encounter", "patient=Patient/{P}&date=ge2026-10-01", {"E1", "E2"}),
    ("Encounter", "patient=Patient/{P}&date=sa2026-10-01", {"E2"}),
    ("Encounter", "patient=Patient/{P}&date=eb2026-10-03", {"E1"}),
    ("Encounter", "patient=Patient/{P}&date=ap2026-10-02", {"E1", "E2"}),
    ("Encounter", "patient=Patient/{P}&date=ap2020-10-02", set()),
    ("Encounter", "patient=Patient/{P}&date=2026-10", {"E1", "E2"}),
    ("Encounter", "patient=Patient/{P}&date=ge2026-10-02&date=lt2026-10-04", {"E2"}),
    ("Encounter", "patient=Patient/{P}&status=finished", {"E1"}),
    ("Encounter", "patient=Patient/{P}&status:not=finished", {"E2"}),
    ("Encounter", "patient=Patient/{P}&_lastUpdated=gt2000-01-01", {"E1", "E2"}),
    ("Encounter", "patient=Patient/{P}&_lastUpdated=lt2000-01-01", set()),
    ("Encounter", "date=2026-10&_sort=date", ["E1", "E3", "E2"]),
    ("Encounter", "date=2026-10&_sort=-date", ["E2", "E3", "E1"]),
    ("Encounter", "class=AMB&date=2026-10", {"E1", "E2", "E3"}),
    ("Condition", "patient=Patient/{P}", {"C1", "C2"}),
    ("Condition", "code=I10", {"C1"}),
    ("Condition", "code=http://hl7.org/fhir/sid/icd-10|E11.9", {"C2"}),
    ("Condition", "code=http://snomed.info/sct|I10", set()),
    ("Condition", "code=http://id.who.int/icd/release/11/mms|SF52", {"C1"}),
    ("Condition", "clinical-status=resolved", {"C2"}),
    ("Condition", "encounter=Encounter/{E1}", {"C1"}),
    ("Condition", "patient=Patient/{P}&recorded-date=ge2000-01-01", {"C1", "C2"}),
    ("Observation", "patient=Patient/{P}", {"O1", "O2"}),
    ("Observation", "subject=Patient/{P}&code=http://loinc.org|2345-7", {"O1"}),
    ("Observation", "patient=Patient/{P}&date=lt2026-10-02", {"O1"}),
    ("Observation", "patient=Patient/{P}&date=ge2026-10-02", {"O2"}),
    ("Observation", "patient=Patient/{P}&status=final", {"O1", "O2"}),
    ("Observation", "patient=Patient/{P}&status=amended", set()),
    ("Observation", "patient=Patient/{P}&category=laboratory", {"O1", "O2"}),
    ("Observation", "patient=Patient/{P}&category:not=laboratory", set()),
    ("Observation", "patient=Patient/{P}&_sort=-date", ["O2", "O1"]),
    ("Observation", "patient=Patient/{P}&_sort=date", ["O1", "O2"]),
    ("Observation", "identifier=urn:lab:sample|2093-3-2026-10-03", {"O2"}),
    ("Patient", "_id={P}", {"P"}),
    ("Patient", "identifier=urn:medalliance:id:resident-id|11010519491231002X", {"P"}),
    ("Patient", "name=李", {"Q"}),
    ("Patient", "birthdate=1970-02-03", {"Q"}),
    ("Patient", "birthdate=lt1960", {"P"}),
    ("Patient", "gender=female", {"P", "Q"}),
    ("Patient", "_sort=-birthdate", ["Q", "P"]),
]


@pytest.mark.parametrize("rtype", sorted({c[0] for c in CASES}))
def test_search_parameters(
    fhir: TestClient, member: Any, chart: dict[str, Any], rtype: str
) -> None:
    for case_type, query, expected in CASES:
        if case_type != rtype:
            continue
        r = fhir.get(f"/fhir/{rtype}?{query.format(**chart)}", headers=member.h)
        assert r.status_code == 200, (query, r.text)
        got = _ids(r.json(), rtype)
        want = [chart[k] for k in expected] if isinstance(expected, list) else expected
        if isinstance(expected, list):
            assert got == want, query
        else:
            assert set(got) == {chart[k] for k in expected}, query
        assert r.json()["total"] == len(got), query


def test_count_paging_links_and_summary_count(
    fhir: TestClient, member: Any, chart: dict[str, Any]
) -> None:
    url = "/fhir/Encounter?date=2026-10&_sort=date"
    first = fhir.get(f"{url}&_count=2", headers=member.h).json()
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert set(links) == {"self", "next"} and first["total"] == 3
    assert _ids(first) == [chart["E1"], chart["E3"]]
    second = fhir.get(links["next"].replace("http://testserver", ""), headers=member.h).json()
    links2 = {link["relation"]: link["url"] for link in second["link"]}
    assert set(links2) == {"self", "previous"} and _ids(second) == [chart["E2"]]
    back = fhir.get(links2["previous"].replace("http://testserver", ""), headers=member.h).json()
    assert _ids(back) == _ids(first)
    count = fhir.get(f"{url}&_summary=count", headers=member.h).json()
    assert count["total"] == 3 and "entry" not in count


@pytest.mark.parametrize(
    ("rtype", "query", "included"),
    [
        ("Encounter", "_id={E1}&_include=Encounter:patient", {"E1": "Encounter", "P": "Patient"}),
        (
            "Condition",
            "_id={C1}&_include=Condition:encounter",
            {"C1": "Condition", "E1": "Encounter"},
        ),
        (
            "Observation",
            "_id={O1}&_include=Observation:patient",
            {"O1": "Observation", "P": "Patient"},
        ),
        (
            "Patient",
            "_id={P}&_revinclude=Observation:patient",
            {"P": "Patient", "O1": "Observation", "O2": "Observation"},
        ),
        (
            "Patient",
            "_id={P}&_revinclude=Encounter:patient",
            {"P": "Patient", "E1": "Encounter", "E2": "Encounter"},
        ),
        (
            "Patient",
            "_id={P}&_revinclude=Condition:patient",
            {"P": "Patient", "C1": "Condition", "C2": "Condition"},
        ),
        (
            "Encounter",
            "_id={E1}&_revinclude=Condition:encounter",
            {"E1": "Encounter", "C1": "Condition"},
        ),
    ],
)
def test_include_and_revinclude_pairs(
    fhir: TestClient, member: Any, chart: dict[str, Any], rtype: str, query: str, included: Any
) -> None:
    body = fhir.get(f"/fhir/{rtype}?{query.format(**chart)}", headers=member.h).json()
    got = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in body["entry"]}
    assert got == {(t, chart[k]) for k, t in included.items()}
    assert body["total"] == 1  # includes are not counted


def _value(ptype: str, name: str, pid: str) -> str:
    return {
        "token": "true" if name == "active" else "x",
        "date": "ge2026-01-01",
        "reference": f"Patient/{pid}",
        "string": "a",
        "number": "1",
    }[ptype]


def test_every_advertised_parameter_include_and_revinclude_is_accepted(
    fhir: TestClient, member: Any, make_actor: Any, auth_headers: Any
) -> None:
    patient = _create(fhir, member.h, patient_resource())
    pid = patient["id"]
    auditor = auth_headers(make_actor(Role.AUDITOR, institution=member.inst))
    statement = fhir.get("/fhir/metadata").json()
    checked = 0
    for res in statement["rest"][0]["resource"]:
        rtype = res["type"]
        h = auditor if rtype == "AuditEvent" else member.h
        # Consent searches must name the patient; every other type takes it as given here
        base = [f"patient=Patient/{pid}"] if rtype == "Consent" else []
        for param in res["searchParam"]:
            name = param["name"]
            value = {"_sort": "_id", "_summary": "count", "_id": pid}.get(name) or _value(
                param["type"], name, pid
            )
            query = "&".join([*base, f"{name}={value}"])
            r = fhir.get(f"/fhir/{rtype}?{query}", headers=h)
            assert r.status_code == 200, (rtype, name, r.text)
            checked += 1
        for spec in res.get("searchInclude", []):
            r = fhir.get(f"/fhir/{rtype}?{'&'.join([*base, f'_include={spec}'])}", headers=h)
            assert r.status_code == 200, (rtype, spec, r.text)
        for spec in res.get("searchRevInclude", []):
            r = fhir.get(f"/fhir/{rtype}?{'&'.join([*base, f'_revinclude={spec}'])}", headers=h)
            assert r.status_code == 200, (rtype, spec, r.text)
    assert checked > 100


@pytest.mark.parametrize(
    "query",
    [
        "foo=bar",  # not a parameter of Encounter
        "code=I10",  # a parameter of other types only
        "date:missing=true",  # a modifier this server does not honour
        "status:text=done",
        "_include=Encounter:nothing",
        "_sort=nothing",
        "_summary=true",
        "date=yesterday",
        "_count=-1",
    ],
)
def test_what_is_not_advertised_is_refused(fhir: TestClient, member: Any, query: str) -> None:
    r = fhir.get(f"/fhir/Encounter?{query}", headers=member.h)
    assert r.status_code == 400, query
    assert r.json()["resourceType"] == "OperationOutcome"


def test_lenient_handling_ignores_unknown_parameters_with_a_warning(
    fhir: TestClient, member: Any, chart: dict[str, Any]
) -> None:
    url = f"/fhir/Encounter?patient=Patient/{chart['P']}&foo=bar&date:missing=true"
    r = fhir.get(url, headers={**member.h, "Prefer": "handling=lenient"})
    assert r.status_code == 200
    body = r.json()
    assert set(_ids(body)) == {chart["E1"], chart["E2"]}
    outcome = [e["resource"] for e in body["entry"] if e["search"]["mode"] == "outcome"]
    assert [i["expression"] for i in outcome[0]["issue"]] == [["foo"], ["date:missing"]]
    assert all(i["severity"] == "warning" for i in outcome[0]["issue"])
    self_link = next(link["url"] for link in body["link"] if link["relation"] == "self")
    assert "foo" not in self_link  # the links show what was used
    assert uuid.UUID(chart["P"])
