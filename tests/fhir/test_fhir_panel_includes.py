"""_include=DiagnosticReport:result (a lab panel's member Observations) and
_revinclude=DiagnosticReport:result on Observation: the included results pass the
access policy as a read of each would, and the CapabilityStatement says so."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.audit.models import AuditEvent
from tests.fhir.conftest import encounter_resource, patient_resource
from tests.fhir.test_fhir_panels import panel
from tests.fhir.test_fhir_results import LOINC, _create, observation


def _observation(pref: str, code: str) -> dict[str, Any]:
    return observation(pref, code={"coding": [{"system": LOINC, "code": code}]}, identifier=[])


def _by_mode(body: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    Bundle.model_validate(body)
    out: dict[str, list[tuple[str, str]]] = {}
    for e in body.get("entry", []):
        out.setdefault(e["search"]["mode"], []).append(
            (e["resource"]["resourceType"], e["resource"]["id"])
        )
    return out


def test_include_and_revinclude_of_a_panels_results(
    fhir: TestClient, member: Any, session: Session
) -> None:
    pid = _create(fhir, member.h, patient_resource())["id"]
    pref = f"Patient/{pid}"
    o1 = _create(fhir, member.h, _observation(pref, "718-7"))["id"]
    o2 = _create(fhir, member.h, _observation(pref, "6690-2"))["id"]
    alone = _create(fhir, member.h, _observation(pref, "2345-7"))["id"]
    rep = _create(fhir, member.h, panel(pref, [f"Observation/{o2}", f"Observation/{o1}"]))["id"]

    plain = _by_mode(fhir.get(f"/fhir/DiagnosticReport?patient={pref}", headers=member.h).json())
    assert plain == {"match": [("DiagnosticReport", rep)]}
    url = f"/fhir/DiagnosticReport?patient={pref}&_include=DiagnosticReport:result"
    got = _by_mode(fhir.get(url, headers=member.h).json())
    assert got["match"] == [("DiagnosticReport", rep)]
    assert got["include"] == [("Observation", o2), ("Observation", o1)]  # the report's order
    searches = session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == "search", AuditEvent.resource_type == "Observation")
    )
    assert searches == 1  # the included results are audited as a search

    url = f"/fhir/Observation?patient={pref}&_revinclude=DiagnosticReport:result"
    got = _by_mode(fhir.get(url, headers=member.h).json())
    assert sorted(got["match"]) == sorted(("Observation", i) for i in (o1, o2, alone))
    assert got["include"] == [("DiagnosticReport", rep)]
    only = f"/fhir/Observation?_id={alone}&_revinclude=DiagnosticReport:result"
    assert "include" not in _by_mode(fhir.get(only, headers=member.h).json())

    cap = fhir.get("/fhir/metadata").json()["rest"][0]["resource"]
    kinds = {r["type"]: r for r in cap}
    assert "DiagnosticReport:result" in kinds["DiagnosticReport"]["searchInclude"]
    assert "DiagnosticReport:result" in kinds["Observation"]["searchRevInclude"]


def test_included_results_of_another_member_follow_the_policy(
    fhir: TestClient, member: Any
) -> None:
    """A panel groups its own lab's results: the other member sees the panel and its
    results together or neither, as reads of each would answer."""
    pid = _create(fhir, member.h, patient_resource())["id"]
    assert _create(fhir, member.h_other, patient_resource())["id"] == pid  # one person
    pref = f"Patient/{pid}"
    o1 = _create(fhir, member.h, _observation(pref, "718-7"))["id"]
    o2 = _create(fhir, member.h, _observation(pref, "6690-2"))["id"]
    rep = _create(fhir, member.h, panel(pref, [f"Observation/{o1}", f"Observation/{o2}"]))["id"]
    url = f"/fhir/DiagnosticReport?patient={pref}&_include=DiagnosticReport:result"
    rev = f"/fhir/Observation?patient={pref}&_revinclude=DiagnosticReport:result"

    # the other member has no care relationship yet: the panel and its results withheld
    assert fhir.get(f"/fhir/Observation/{o1}", headers=member.h_other).status_code == 403
    assert _by_mode(fhir.get(url, headers=member.h_other).json()) == {}
    assert _by_mode(fhir.get(rev, headers=member.h_other).json()) == {}

    # an encounter there is a care relationship: with the sharing consent, all open
    _create(fhir, member.h_other, encounter_resource(pref))
    assert fhir.get(f"/fhir/Observation/{o1}", headers=member.h_other).status_code == 200
    got = _by_mode(fhir.get(url, headers=member.h_other).json())
    assert got == {
        "match": [("DiagnosticReport", rep)],
        "include": [("Observation", o1), ("Observation", o2)],
    }
    # (a _revinclude is searched without the patient, so it answers the actor's own
    # member's reports only: stricter than the policy, never wider)
    got = _by_mode(fhir.get(rev, headers=member.h_other).json())
    assert sorted(got["match"]) == sorted([("Observation", o1), ("Observation", o2)])
