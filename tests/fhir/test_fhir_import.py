"""`medalliance fhir import`: Synthea bundles and bulk NDJSON through the FHIR handler.

Observations are stored as results (lab, vital signs, surveys, social history alike:
their category is kept) and found again by search; lab DiagnosticReports as result
panels grouping them. MedicationRequests are recorded as orders placed in another
system, Devices as recorded devices of their patients: no mapped type is read-only, so
nothing is counted "read-only here"; ImagingStudy is "not yet modelled"; Claim and the
like are "not modelled". All asserted exactly below: nothing is dropped silently.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from medalliance.domains.alliance.models import Institution, Practitioner
from medalliance.domains.patients.models import Person
from medalliance.fhir import handler, systems
from medalliance.fhir.cli import import_actor
from medalliance.fhir.context import FhirContext
from medalliance.fhir.importer import Importer, ImportSummary
from medalliance.fhir.resources import REGISTRY
from medalliance.kernel.actor import Actor
from tests.factories.alliance import AllianceFactory, InstitutionFactory

DATA = Path(__file__).parent.parent / "data" / "fhir"
SYNTHEA = DATA / "synthea-r4"
BULK = DATA / "synthea-bulk-ndjson"
PATIENTS = sorted(p for p in SYNTHEA.glob("*.json.gz") if "_" in p.name)
REGISTRY_BUNDLES = sorted(SYNTHEA.glob("hospital*")) + sorted(SYNTHEA.glob("practitioner*"))
MODELLED = {m.resource_type for m in REGISTRY if REGISTRY.writable(m.resource_type)}


def _load(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return dict(json.load(handle))


def _input_counts(paths: list[Path]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in paths:
        for entry in _load(path)["entry"]:
            counts[entry["resource"]["resourceType"]] += 1
    return counts


@pytest.fixture
def importer(session: Session, session_factory: sessionmaker[Session]) -> tuple[Importer, Actor]:
    alliance = AllianceFactory()
    member = InstitutionFactory(alliance=alliance)
    session.flush()
    actor = import_actor(member.id, member.code)
    assert isinstance(actor, Actor)
    return Importer(session_factory, actor, REGISTRY), actor


def _stage(tmp_path: Path, files: list[Path]) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for f in files:
        (folder / f.name).write_bytes(f.read_bytes())
    return folder


def _findable(session: Session, actor: Actor, paths: list[Path]) -> int:
    """Every resource of a modelled type is found again by its sender's id."""
    ctx = FhirContext(session=session, actor=actor, registry=REGISTRY)
    checked = 0
    for path in paths:
        for entry in _load(path)["entry"]:
            res = entry["resource"]
            if res["resourceType"] not in MODELLED:
                continue
            bundle = handler.search(
                ctx, res["resourceType"], [("identifier", f"{systems.SOURCE_ID}|{res['id']}")]
            )
            assert bundle["total"] == 1, (res["resourceType"], res["id"])
            checked += 1
    return checked


def _categories_findable(session: Session, actor: Actor, paths: list[Path]) -> None:
    """Each patient's Observations are found again by category (vital signs, survey …)."""
    ctx = FhirContext(session=session, actor=actor, registry=REGISTRY)
    for path in paths:
        entries = [e["resource"] for e in _load(path)["entry"]]
        patient = next((r for r in entries if r["resourceType"] == "Patient"), None)
        if patient is None:
            continue
        found = handler.search(
            ctx, "Patient", [("identifier", f"{systems.SOURCE_ID}|{patient['id']}")]
        )
        pid = found["entry"][0]["resource"]["id"]
        by_category = Counter(
            r["category"][0]["coding"][0]["code"]
            for r in entries
            if r["resourceType"] == "Observation"
        )
        for category, n in by_category.items():
            got = handler.search(
                ctx,
                "Observation",
                [("patient", f"Patient/{pid}"), ("category", category), ("_summary", "count")],
            )
            assert got["total"] == n, (path.name, category)


def _orders_findable(session: Session, actor: Actor, paths: list[Path]) -> None:
    """Each patient's MedicationRequests are found again by patient, code, status and
    authoredon, as sent."""
    ctx = FhirContext(session=session, actor=actor, registry=REGISTRY)
    for path in paths:
        entries = [e["resource"] for e in _load(path)["entry"]]
        orders = [r for r in entries if r["resourceType"] == "MedicationRequest"]
        patient = next((r for r in entries if r["resourceType"] == "Patient"), None)
        if patient is None or not orders:
            continue
        found = handler.search(
            ctx, "Patient", [("identifier", f"{systems.SOURCE_ID}|{patient['id']}")]
        )
        pref = f"Patient/{found['entry'][0]['resource']['id']}"

        def total(*criteria: tuple[str, str], pref: str = pref) -> int:
            items = [("patient", pref), *criteria, ("_summary", "count")]
            return int(handler.search(ctx, "MedicationRequest", items)["total"])

        assert total() == len(orders), path.name
        for status, n in Counter(o["status"] for o in orders).items():
            assert total(("status", status)) == n, (path.name, status)
        codes = Counter(
            f"{c['system']}|{c['code']}"
            for o in orders
            for c in o["medicationCodeableConcept"]["coding"][:1]
        )
        for code, n in codes.items():
            assert total(("code", code)) == n, (path.name, code)
        first = orders[0]
        got = handler.search(
            ctx,
            "MedicationRequest",
            [("identifier", f"{systems.SOURCE_ID}|{first['id']}")],
        )["entry"][0]["resource"]
        assert got["status"] == first["status"]
        assert (
            got["medicationCodeableConcept"]["coding"]
            == first["medicationCodeableConcept"]["coding"]
        )
        assert got["subject"]["reference"] == pref
        rid = got["id"]
        assert total(("_id", rid), ("authoredon", f"eq{got['authoredOn'][:10]}")) == 1


def _bulk_findable(session: Session, actor: Actor, files: list[Path]) -> None:
    """Each order and device of the bulk set is found again by its patient, and by its
    code / type."""
    ctx = FhirContext(session=session, actor=actor, registry=REGISTRY)
    persons: dict[str, str] = {}

    def person(ref: str) -> str:
        sender = ref.split("/")[-1]
        if sender not in persons:
            found = handler.search(
                ctx, "Patient", [("identifier", f"{systems.SOURCE_ID}|{sender}")]
            )
            persons[sender] = f"Patient/{found['entry'][0]['resource']['id']}"
        return persons[sender]

    for rtype, subject, code in (
        ("MedicationRequest", "subject", "medicationCodeableConcept"),
        ("Device", "patient", "type"),
    ):
        with gzip.open(BULK / f"{rtype}.000.ndjson.gz", "rt", encoding="utf-8") as handle:
            resources = [json.loads(line) for line in handle]
        per_patient = Counter(person(r[subject]["reference"]) for r in resources)
        for pref, n in per_patient.items():
            got = handler.search(ctx, rtype, [("patient", pref), ("_summary", "count")])
            assert got["total"] == n, (rtype, pref)
        by_code = Counter(
            (person(r[subject]["reference"]), f"{c['system']}|{c['code']}")
            for r in resources
            for c in r[code]["coding"][:1]
        )
        param = "code" if rtype == "MedicationRequest" else "type"
        for (pref, token), n in by_code.items():
            got = handler.search(
                ctx, rtype, [("patient", pref), (param, token), ("_summary", "count")]
            )
            assert got["total"] == n, (rtype, pref, token)


def _registry_findable(session: Session, actor: Actor) -> None:
    """Each Location and PractitionerRole of the bulk set is found again by search: by
    its sender id, its identifier, its name, its organization, its practitioner."""
    ctx = FhirContext(session=session, actor=actor, registry=REGISTRY)

    def one(rtype: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        got = handler.search(ctx, rtype, params)
        assert got["total"] == 1, (rtype, params, got["total"])
        return dict(got["entry"][0]["resource"])

    def org_of(ref: dict[str, Any]) -> str:
        ident = ref["identifier"]
        found = one("Organization", [("identifier", f"{ident['system']}|{ident['value']}")])
        return f"Organization/{found['id']}"

    with gzip.open(BULK / "Location.000.ndjson.gz", "rt", encoding="utf-8") as handle:
        locations = [json.loads(line) for line in handle]
    for loc in locations:
        found = one(
            "Location",
            [("_id", one("Location", [("identifier", f"{systems.SOURCE_ID}|{loc['id']}")])["id"])],
        )
        ident = loc["identifier"][0]
        assert (
            one("Location", [("identifier", f"{ident['system']}|{ident['value']}")])["id"]
            == found["id"]
        )
        if "managingOrganization" in loc:
            org = org_of(loc["managingOrganization"])
            assert found["managingOrganization"]["reference"] == org
            named = handler.search(ctx, "Location", [("organization", org), ("name", loc["name"])])
            assert found["id"] in [e["resource"]["id"] for e in named["entry"]]
    with gzip.open(BULK / "PractitionerRole.000.ndjson.gz", "rt", encoding="utf-8") as handle:
        roles = [json.loads(line) for line in handle]
    for role in roles:
        npi = role["practitioner"]["identifier"]
        prac = one("Practitioner", [("identifier", f"{npi['system']}|{npi['value']}")])
        found = one("PractitionerRole", [("practitioner", f"Practitioner/{prac['id']}")])
        assert found["id"] == prac["id"]
        # the practitioners the import registered stay at the importing member
        org_of(role["organization"])  # the role's own member exists (left out, reported)
        home = f"Organization/{actor.institution_id}"
        assert found["organization"]["reference"] == home
        by_org = handler.search(ctx, "PractitionerRole", [("organization", home)])
        assert prac["id"] in [e["resource"]["id"] for e in by_org["entry"]]
        assert "location" not in found
        nucc = role["specialty"][0]["coding"][0]
        assert nucc in [c for concept in found["specialty"] for c in concept["coding"]]
        sender = f"{systems.SOURCE_ID}|{role['id']}"
        assert one("PractitionerRole", [("identifier", sender)])["id"] == prac["id"]
        assert one("PractitionerRole", [("_id", prac["id"])])["id"] == prac["id"]


def _home_encounters(session: Session, actor: Actor) -> int:
    """The imported encounters at the Location of no organization (Synthea's "Patient's
    Home", kept as a department of the importing member)."""
    ctx = FhirContext(session=session, actor=actor, registry=REGISTRY)
    with gzip.open(BULK / "Location.000.ndjson.gz", "rt", encoding="utf-8") as handle:
        homes = [r for r in map(json.loads, handle) if "managingOrganization" not in r]
    total = 0
    for home in homes:
        sender = f"{systems.SOURCE_ID}|{home['id']}"
        place = handler.search(ctx, "Location", [("identifier", sender)])["entry"][0]
        assert place["resource"]["managingOrganization"]["reference"] == (
            f"Organization/{actor.institution_id}"
        )
        found = handler.search(
            ctx,
            "Encounter",
            [("location", f"Location/{place['resource']['id']}"), ("_summary", "count")],
        )
        total += found["total"]
    return total


def _check_summary(summary: ImportSummary, expected: Counter[str]) -> None:
    assert summary.failed == []
    for rtype, n in expected.items():
        if rtype in MODELLED:
            assert summary.created[rtype] + summary.already_present[rtype] == n, rtype
        elif rtype in REGISTRY.not_yet_modelled:
            assert summary.not_yet_modelled[rtype] == n, rtype
        elif rtype in REGISTRY:
            assert summary.read_only[rtype] == n, rtype
        else:
            assert summary.not_modelled[rtype] == n, rtype
    assert summary.total_read == sum(expected.values())


def test_synthea_bundles_import_with_nothing_lost(
    importer: tuple[Importer, Actor], session: Session, tmp_path: Path
) -> None:
    imp, actor = importer
    chosen = REGISTRY_BUNDLES + PATIENTS[:3]
    institutions_before = session.scalar(select(func.count()).select_from(Institution)) or 0
    summary = imp.run(_stage(tmp_path, chosen))
    expected = _input_counts(chosen)
    _check_summary(summary, expected)
    # Every Observation is stored, and every lab panel (DiagnosticReport) grouping them.
    assert summary.created["Observation"] == expected["Observation"] > 0
    assert summary.created["DiagnosticReport"] == expected["DiagnosticReport"] > 0
    assert summary.created["MedicationRequest"] == expected["MedicationRequest"] > 0
    assert summary.read_only == Counter()
    _categories_findable(session, actor, chosen)
    _orders_findable(session, actor, chosen)
    assert summary.not_modelled["Claim"] == expected["Claim"] > 0
    assert summary.not_modelled["ExplanationOfBenefit"] == expected["ExplanationOfBenefit"] > 0
    # the hospitals joined the registry once each, though every patient bundle repeats them
    hospitals = {e["resource"]["id"] for e in _load(REGISTRY_BUNDLES[0])["entry"]}
    institutions = session.scalar(select(func.count()).select_from(Institution)) or 0
    assert institutions - institutions_before == len(hospitals)
    assert summary.created["Organization"] == len(hospitals)
    assert (
        session.scalar(select(func.count()).select_from(Practitioner))
        == summary.created["Practitioner"]
    )
    # Latin names without a resident ID register through the patients service
    names = {p.name for p in session.scalars(select(Person))}
    first = _load(PATIENTS[0])["entry"][0]["resource"]["name"][0]
    assert f"{' '.join(first['given'])} {first['family']}" in names
    assert _findable(session, actor, chosen) == sum(n for t, n in expected.items() if t in MODELLED)
    # a second run creates nothing: the senders' ids map onto what exists
    again = Importer(imp.factory, actor, REGISTRY).run(
        _stage(tmp_path / "2", chosen) if (tmp_path / "2").mkdir() is None else tmp_path
    )
    assert sum(again.created.values()) == 0
    assert sum(again.already_present.values()) == sum(
        n for t, n in expected.items() if t in MODELLED
    )


@pytest.mark.slow
def test_all_forty_synthea_bundles(
    importer: tuple[Importer, Actor], session: Session, tmp_path: Path
) -> None:
    imp, actor = importer
    chosen = REGISTRY_BUNDLES + PATIENTS
    assert len(PATIENTS) == 40
    summary = imp.run(_stage(tmp_path, chosen))
    _check_summary(summary, _input_counts(chosen))
    assert summary.created["Patient"] == 40
    assert summary.read_only == Counter()
    assert summary.created["MedicationRequest"] == 349
    _findable(session, actor, chosen)
    _orders_findable(session, actor, chosen)


def test_ndjson_dangling_references_are_reported_not_fatal(
    importer: tuple[Importer, Actor], session: Session, tmp_path: Path
) -> None:
    imp, _ = importer
    small = [
        f
        for f in sorted(BULK.glob("*.ndjson.gz"))
        if f.name.split(".")[0] in ("Organization", "Patient", "AllergyIntolerance")
    ]
    folder = _stage(tmp_path, small)
    with gzip.open(BULK / "Patient.000.ndjson.gz", "rt", encoding="utf-8") as handle:
        patient_id = json.loads(handle.readline())["id"]
    extra = [
        # refers to an Observation the input does not hold: reported, the allergy is kept
        {
            "resourceType": "AllergyIntolerance",
            "id": "a-1",
            "code": {"text": "peanut"},
            "category": ["food"],
            "patient": {"reference": f"Patient/{patient_id}"},
            "reaction": [{"manifestation": [{"text": "hives"}], "substance": {"text": "peanut"}}],
            "note": [{"authorReference": {"reference": "Observation/missing-1"}, "text": "x"}],
        },
        # its required patient is missing: this one fails, the import goes on
        {
            "resourceType": "AllergyIntolerance",
            "id": "a-2",
            "code": {"text": "dust"},
            "patient": {"reference": "Patient/missing-2"},
        },
    ]
    (folder / "extra.ndjson").write_text("\n".join(json.dumps(x) for x in extra) + "\n")
    summary = imp.run(folder)
    assert summary.dangling == Counter({"Observation": 1, "Patient": 1})
    assert summary.failed_by_type["AllergyIntolerance"] == 1
    assert [why for _, why in summary.failed] == [
        "AllergyIntolerance.patient: Patient/missing-2 refers to nothing on this server"
    ]
    assert summary.created["Patient"] == 13
    assert summary.created["AllergyIntolerance"] == 12


@pytest.mark.slow
def test_bulk_ndjson_imports(
    importer: tuple[Importer, Actor], session: Session, tmp_path: Path
) -> None:
    imp, actor = importer
    files = sorted(BULK.glob("*.ndjson.gz"))
    summary = imp.run(_stage(tmp_path, files))
    assert summary.failed == []
    assert summary.created["Patient"] == 13
    expected: Counter[str] = Counter()
    for f in files:
        with gzip.open(f, "rt", encoding="utf-8") as handle:
            for line in handle:
                rtype = json.loads(line).get("resourceType")
                expected[rtype or "(not a FHIR resource)"] += 1
    for rtype in (
        "Encounter",
        "Condition",
        "Procedure",
        "AllergyIntolerance",
        "Organization",
        "Practitioner",
    ):
        assert summary.created[rtype] == expected[rtype], rtype
    assert summary.created["MedicationRequest"] == expected["MedicationRequest"] > 0
    assert summary.created["Device"] == expected["Device"] > 0
    # nothing read-only is left: Locations are departments, PractitionerRoles roles
    assert summary.read_only == Counter()
    assert summary.created["Location"] == expected["Location"] > 0
    assert summary.created["PractitionerRole"] == expected["PractitionerRole"] > 0
    _bulk_findable(session, actor, files)
    _registry_findable(session, actor)
    assert summary.created["DiagnosticReport"] == expected["DiagnosticReport"]
    assert summary.not_modelled["Immunization"] == expected["Immunization"]
    # every reference of this set resolves (the files the source left out are not named)
    assert summary.dangling == Counter()
    # Synthea's hospital Locations are departments of other members: Encounter.location
    # (the encounter is written at the importing member) is left out and reported, the
    # encounters are kept; so are a role's other member and its department there (the
    # practitioners the import registered stay at the importing member, whose records
    # name them). The one Location of no organization ("Patient's Home") is kept at the
    # importing member, and its encounter keeps it.
    home = _home_encounters(session, actor)
    assert home == 1
    assert (
        summary.left_out["Location"] == expected["Encounter"] - home + expected["PractitionerRole"]
    )
    assert summary.left_out["Organization"] == expected["PractitionerRole"]


def test_cli_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medalliance import wiring
    from medalliance.cli import app
    from medalliance.config import get_settings
    from medalliance.db import migrate
    from medalliance.db.engine import build_engine, build_session_factory
    from medalliance.domains.alliance.models import Alliance

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    wiring.load_all()
    migrate.upgrade(url)
    factory = build_session_factory(build_engine(url))
    with factory() as s:
        alliance = Alliance(code="QH", name_zh="清河医联体", name_en="Qinghe")
        s.add(alliance)
        s.flush()
        s.add(
            Institution(
                alliance_id=alliance.id,
                code="LEAD",
                name_zh="总院",
                name_en="Lead",
                tier="lead",
                type="integrated",
            )
        )
        s.commit()
    monkeypatch.setenv("MEDALLIANCE_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        folder = _stage(tmp_path, [*REGISTRY_BUNDLES[:1], PATIENTS[0]])
        result = CliRunner().invoke(app, ["fhir", "import", str(folder), "-i", "LEAD"])
        missing = CliRunner().invoke(app, ["fhir", "import", str(folder), "-i", "NOPE"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "Observation" in result.output and "MedicationRequest" in result.output
    assert "read-only here" not in result.output  # every mapped type is written
    assert "Claim" in result.output
    assert missing.exit_code == 2


def test_a_resource_sent_twice_in_one_chunk_is_created_once(
    importer: tuple[Importer, Actor], session: Session, tmp_path: Path
) -> None:
    """Two lines with the same sender id in one NDJSON chunk (one group): the second
    maps onto the first, as one by one, instead of clashing on the sender-id index."""
    imp, _ = importer
    hospital = {
        "resourceType": "Organization",
        "id": "twice-1",
        "name": "Twice General Hospital",
    }
    others = [{**hospital, "id": f"other-{i}", "name": f"Other {i}"} for i in range(3)]
    folder = tmp_path / "dup"
    folder.mkdir()
    lines = [hospital, *others, hospital]
    (folder / "Organization.ndjson").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    summary = imp.run(folder)
    assert summary.failed == []
    assert summary.created["Organization"] == 4
    assert summary.already_present["Organization"] == 1
    named = session.scalar(
        select(func.count()).select_from(Institution).where(Institution.name_zh == hospital["name"])
    )
    assert named == 1


def test_a_chunk_entry_naming_an_earlier_one_is_linked_to_it(
    importer: tuple[Importer, Actor], session: Session, tmp_path: Path
) -> None:
    """An NDJSON line that refers to an earlier line of its chunk (a member hospital and
    its lead) waits for it, as one by one: the reference is linked, not left out."""
    imp, _ = importer
    lead = {"resourceType": "Organization", "id": "lead-1", "name": "Lead Hospital"}
    member = {
        "resourceType": "Organization",
        "id": "member-1",
        "name": "Member Clinic",
        "partOf": {"reference": "Organization/lead-1"},
    }
    folder = tmp_path / "chain"
    folder.mkdir()
    (folder / "Organization.ndjson").write_text(f"{json.dumps(lead)}\n{json.dumps(member)}\n")
    summary = imp.run(folder)
    assert summary.failed == [] and summary.created["Organization"] == 2
    assert not summary.left_out
    found = {i.name_zh: i for i in session.scalars(select(Institution))}
    assert found["Member Clinic"].lead_institution_id == found["Lead Hospital"].id
