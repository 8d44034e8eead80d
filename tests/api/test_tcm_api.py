"""The TCM API: lookups, the safety check (with and without a patient), prescriptions
(draft → signed with override, cancelled) and constitution assessments."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, event
from sqlalchemy.orm import Session

from medalliance.audit.models import AuditEvent
from medalliance.domains.tcm.constitution import questionnaire
from medalliance.domains.tcm.models import ConstitutionAssessment, Prescription
from medalliance.kernel.actor import Actor
from medalliance.kernel.roles import Role
from tests.api.access_matrix import assert_problem, audit_events, error_fields, row_count
from tests.factories.alliance import AllianceFactory, InstitutionFactory

Headers = Callable[[Actor], dict[str, str]]


@pytest.fixture
def world(
    session: Session, make_actor: Callable[..., Actor], auth_headers: Headers, client: TestClient
) -> dict[str, Any]:
    """A patient registered at A (pregnant, on warfarin, allergic to 当归) with an encounter."""
    alliance = AllianceFactory()
    a, b = InstitutionFactory(alliance=alliance), InstitutionFactory(alliance=alliance)
    clinician = make_actor(Role.CLINICIAN, institution=a)
    h = auth_headers(clinician)
    body = {
        "family_name": "李",
        "given_name": "娜",
        "sex": "female",
        "birth_date": "1990-03-08",
        "pregnancy_status": "pregnant",
    }
    reg = client.post("/api/patients", json=body, headers=h)
    assert reg.status_code == 201, reg.text
    pid = reg.json()["patient"]["id"]
    for path, payload in (
        ("medications", {"drug": "warfarin", "dose": "3 mg"}),
        ("allergies", {"substance": "当归", "category": "herb"}),
        ("allergies", {"substance": "花粉 pollen", "category": "environment"}),
    ):
        r = client.post(f"/api/patients/{pid}/{path}", json=payload, headers=h)
        assert r.status_code == 201, r.text
    enc = client.post(
        f"/api/patients/{pid}/encounters",
        json={"encounter_class": "outpatient", "start": "2026-11-01T09:00:00+08:00"},
        headers=h,
    )
    assert enc.status_code == 201, enc.text
    return {
        "pid": pid,
        "enc": enc.json()["id"],
        "h": h,
        "actor": clinician,
        "nurse": auth_headers(make_actor(Role.NURSE, institution=a)),
        "other": auth_headers(make_actor(Role.CLINICIAN, institution=b)),
    }


# --- lookups ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "first"),
    [
        ("dg", "当归"),
        ("当归", "当归"),
        ("danggui", "当归"),
        ("Angelicae Sinensis", "当归"),
        ("banxia", "半夏"),
    ],
)
def test_herb_lookup(client: TestClient, world: dict[str, Any], q: str, first: str) -> None:
    r = client.get("/api/tcm/herbs", params={"q": q}, headers=world["h"])
    assert r.status_code == 200
    assert r.json()[0]["name_zh"] == first


def test_herb_detail_shows_dose_basis_and_processed_parent(
    client: TestClient, world: dict[str, Any]
) -> None:
    fuzi = client.get("/api/tcm/herbs/附子", headers=world["h"]).json()
    assert fuzi["toxicity"] == "有毒" and fuzi["dose"]["basis"] == "ChP2020"
    assert fuzi["pregnancy"] == "caution"
    fabanxia = client.get("/api/tcm/herbs/法半夏", headers=world["h"]).json()
    assert fabanxia["parent"] == "半夏"
    missing = client.get("/api/tcm/herbs/当规", headers=world["h"])
    assert assert_problem(missing, 404)["suggestions"][0]["name_zh"] == "当归"


def test_formula_lookup_and_composition(client: TestClient, world: dict[str, Any]) -> None:
    found = client.get("/api/tcm/formulas", params={"q": "sjzt"}, headers=world["h"]).json()
    assert found[0]["name_zh"] == "四君子汤"
    one = client.get(f"/api/tcm/formulas/{found[0]['formula_id']}", headers=world["h"]).json()
    assert [h["herb"] for h in one["herbs"]] == ["人参", "白术", "茯苓", "甘草"]
    assert one["source"]
    assert client.get("/api/tcm/formulas/nothing", headers=world["h"]).status_code == 404


# --- safety check ---------------------------------------------------------------------


def test_safety_check_without_patient(client: TestClient, world: dict[str, Any]) -> None:
    body = {
        "pregnant": True,
        "herbs": [{"name": "附子", "dose_g": 9}, {"name": "半夏", "dose_g": 9}],
        "western_drugs": ["warfarin"],
    }
    r = client.post("/api/tcm/safety-check", json=body, headers=world["h"])
    assert r.status_code == 200, r.text
    out = r.json()
    rules = {f["rule"] for f in out["findings"]}
    assert rules == {"eighteen_incompatible", "pregnancy_caution"}
    assert out["blocking"] is True and out["clinically_reviewed"] is False
    assert "not been clinically reviewed" in out["notice_en"]
    for finding in out["findings"]:
        assert set(finding) == {
            "rule",
            "severity",
            "herbs",
            "drugs",
            "message_zh",
            "message_en",
            "source",
        }
        assert finding["source"]


def test_safety_check_reads_the_patient_record_audited_and_saves_nothing(
    client: TestClient, session: Session, world: dict[str, Any]
) -> None:
    before = (row_count(session, Prescription), row_count(session, ConstitutionAssessment))
    body = {
        "patient_id": world["pid"],
        "herbs": [
            {"name": "丹参", "dose_g": 10},
            {"name": "桃仁", "dose_g": 6},
            {"name": "当归", "dose_g": 6},
        ],
    }
    r = client.post("/api/tcm/safety-check", json=body, headers=world["h"])
    assert r.status_code == 200, r.text
    out = r.json()
    by_rule = {(f["rule"], tuple(f["herbs"]), tuple(f["drugs"])) for f in out["findings"]}
    assert ("herb_drug_interaction", ("丹参",), ("warfarin",)) in by_rule  # from the record
    assert ("allergy", ("当归",), ()) in by_rule  # recorded allergy
    # A pollen (花粉) allergy is not an allergy to 天花粉 (whose formula alias is 花粉).
    assert out["allergies"] == ["当归"]
    assert out["pregnant"] is True  # from the patient record
    assert any(
        f["rule"].startswith("pregnancy_") and f["herbs"] == ["桃仁"] for f in out["findings"]
    )
    assert [d["origin"].split(":")[0] for d in out["drugs"]] == ["record"]
    assert (row_count(session, Prescription), row_count(session, ConstitutionAssessment)) == before
    events = audit_events(session, resource_type="TcmSafetyCheck", resource_id=world["pid"])
    assert events and all(str(e.patient_id) == world["pid"] for e in events)
    # The request's own statement wins over the record.
    body["pregnant"] = False
    out = client.post("/api/tcm/safety-check", json=body, headers=world["h"]).json()
    assert not any(f["rule"].startswith("pregnancy_") for f in out["findings"])


def test_safety_check_refuses_a_patient_you_may_not_read(
    client: TestClient, session: Session, world: dict[str, Any]
) -> None:
    body = {"patient_id": world["pid"], "herbs": [{"name": "丹参", "dose_g": 10}]}
    r = client.post("/api/tcm/safety-check", json=body, headers=world["other"])
    assert_problem(r, 403)
    denied = audit_events(session, resource_type="TcmSafetyCheck", outcome="denied")
    assert denied


@pytest.mark.parametrize(
    ("herbs", "field"),
    [
        ([{"name": "当规", "dose_g": 9}], "herbs.0.name"),
        ([{"name": "当归", "dose_g": 0}], "herbs.0.dose_g"),
        ([{"name": "当归", "dose_g": -1}], "herbs.0.dose_g"),
        ([{"name": "当归", "dose_g": "9"}], "herbs.0.dose_g"),
        ([{"name": "当归", "dose_g": True}], "herbs.0.dose_g"),
        ([{"name": "当归"}], "herbs.0.dose_g"),
        ([], "herbs"),
    ],
)
def test_safety_check_bad_input(
    client: TestClient, world: dict[str, Any], herbs: list[Any], field: str
) -> None:
    r = client.post("/api/tcm/safety-check", json={"herbs": herbs}, headers=world["h"])
    body = assert_problem(r, 422)
    assert field in error_fields(body)
    if field.endswith(".name"):
        assert body["suggestions"][0] == {"name_zh": "当归", "pinyin": "Danggui"}


# --- prescriptions --------------------------------------------------------------------


def _draft(client: TestClient, world: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/api/encounters/{world['enc']}/prescriptions", json=body, headers=world["h"])
    assert r.status_code == 201, r.text
    return dict(r.json())


FORMULA_DRAFT = {
    "from_formula": {
        "formula": "四君子汤",
        "remove": ["茯苓"],
        "change": [{"name": "人参", "dose_g": 6}],
        "add": [{"name": "丹参", "dose_g": 10}],
    },
    "dose_count": 7,
    "herbal_form": "decoction",
    "instructions": "水煎服，日一剂",
    "western": [{"drug": "aspirin", "dose": "100 mg", "route": "oral", "frequency": "qd"}],
}


def test_prescription_from_a_modified_formula_is_checked_and_stored(
    client: TestClient, world: dict[str, Any]
) -> None:
    p = _draft(client, world, FORMULA_DRAFT)
    assert p["status"] == "draft" and p["formula_name"] == "四君子汤"
    assert [(h["name"], h["dose_g"], h["origin"]) for h in p["herbs"]] == [
        ("人参", 6.0, "changed"),
        ("白术", 9.0, "formula"),
        ("甘草", 6.0, "formula"),
        ("丹参", 10.0, "added"),
    ]
    hits = {(f["rule"], tuple(f["herbs"]), tuple(f["drugs"])) for f in p["findings"]}
    # Against the record's warfarin and against this prescription's own aspirin.
    assert ("herb_drug_interaction", ("丹参",), ("warfarin",)) in hits
    assert ("herb_drug_interaction", ("丹参",), ("aspirin",)) in hits
    assert ("herb_drug_interaction", ("人参",), ("warfarin",)) in hits
    assert p["check_context"]["pregnant"] is True
    listed = client.get(f"/api/encounters/{world['enc']}/prescriptions", headers=world["h"])
    assert [x["id"] for x in listed.json()] == [p["id"]]
    assert_problem(
        client.get(f"/api/encounters/{world['enc']}/prescriptions", headers=world["other"]), 403
    )
    timeline = client.get(
        f"/api/patients/{world['pid']}/timeline",
        params={"types": "prescription"},
        headers=world["h"],
    ).json()
    assert [e["id"] for e in timeline["entries"]] == [p["id"]]


def test_formula_herbs_can_be_named_as_written_or_by_herb(
    client: TestClient, world: dict[str, Any]
) -> None:
    # 桂枝汤 writes 芍药 (resolved to 白芍) and 大枣 3枚 (no gram dose: must be given).
    p = _draft(
        client,
        world,
        {
            "from_formula": {
                "formula": "F002",
                "remove": ["白芍"],
                "change": [{"name": "大枣", "dose_g": 10}],
            },
            "dose_count": 3,
            "herbal_form": "decoction",
        },
    )
    assert [h["name"] for h in p["herbs"]] == ["桂枝", "甘草", "生姜", "大枣"]


def test_signing_with_a_blocking_finding_needs_an_audited_override(
    client: TestClient, session: Session, world: dict[str, Any]
) -> None:
    p = _draft(client, world, FORMULA_DRAFT)  # 丹参 + warfarin is major → block
    assert any(f["severity"] == "block" for f in p["findings"])
    url = f"/api/prescriptions/{p['id']}/sign"
    refused = client.post(url, json={}, headers=world["h"])
    body = assert_problem(refused, 422)
    assert "override_reason" in error_fields(body) and body["findings"]
    assert client.get(f"/api/prescriptions/{p['id']}", headers=world["h"]).json()["status"] == (
        "draft"
    )
    reason = "INR monitored weekly by the anticoagulation clinic"
    signed = client.post(url, json={"override_reason": reason}, headers=world["h"])
    assert signed.status_code == 200, signed.text
    assert signed.json()["status"] == "signed" and signed.json()["override_reason"] == reason
    (override,) = audit_events(session, action="override", resource_id=p["id"])
    assert (
        override.reason == reason
        and "herb_drug_interaction" in json.loads(override.detail)["blocking_rules"]
    )
    # Signed: no more edits or signatures.
    again = client.put(f"/api/prescriptions/{p['id']}", json=FORMULA_DRAFT, headers=world["h"])
    assert_problem(again, 409)
    assert_problem(client.post(url, json={"override_reason": reason}, headers=world["h"]), 409)


def test_signed_western_drugs_are_active_for_later_checks(
    client: TestClient, world: dict[str, Any]
) -> None:
    p = _draft(
        client,
        world,
        {
            "western": [
                {
                    "drug": "地高辛",
                    "dose": "0.125 mg",
                    "route": "oral",
                    "frequency": "qd",
                    "duration_days": 30,
                }
            ]
        },
    )
    signed = client.post(f"/api/prescriptions/{p['id']}/sign", json={}, headers=world["h"])
    assert signed.status_code == 200, signed.text
    check = client.post(
        "/api/tcm/safety-check",
        headers=world["h"],
        json={"patient_id": world["pid"], "herbs": [{"name": "甘草", "dose_g": 6}]},
    ).json()
    assert any(
        f["rule"] == "herb_drug_interaction" and f["drugs"] == ["地高辛"] for f in check["findings"]
    )
    cancelled = client.post(
        f"/api/prescriptions/{p['id']}/cancel",
        json={"reason": "stopped: hypokalaemia"},
        headers=world["h"],
    )
    assert cancelled.json()["status"] == "cancelled"
    check = client.post(
        "/api/tcm/safety-check",
        headers=world["h"],
        json={"patient_id": world["pid"], "herbs": [{"name": "甘草", "dose_g": 6}]},
    ).json()
    assert not any(f["drugs"] == ["地高辛"] for f in check["findings"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"herbs": [{"name": "当规", "dose_g": 9}], "dose_count": 3, "herbal_form": "granules"},
            "herbs.0.name",
        ),
        (
            {"herbs": [{"name": "当归", "dose_g": 0}], "dose_count": 3, "herbal_form": "granules"},
            "herbs.0.dose_g",
        ),
        ({"herbs": [{"name": "当归", "dose_g": 9}], "herbal_form": "granules"}, "dose_count"),
        (
            {
                "from_formula": {"formula": "四君子汤", "remove": ["当归"]},
                "dose_count": 3,
                "herbal_form": "decoction",
            },
            "from_formula.remove.0",
        ),
        (
            {"from_formula": {"formula": "桂枝汤"}, "dose_count": 3, "herbal_form": "decoction"},
            "from_formula.change",
        ),  # 大枣 3枚 has no gram dose
        (
            {"from_formula": {"formula": "不存在汤"}, "dose_count": 3, "herbal_form": "decoction"},
            "from_formula.formula",
        ),
        ({}, "herbs"),
    ],
)
def test_prescription_bad_input_changes_nothing(
    client: TestClient, session: Session, world: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    before = row_count(session, Prescription)
    r = client.post(f"/api/encounters/{world['enc']}/prescriptions", json=body, headers=world["h"])
    assert field in error_fields(assert_problem(r, 422))
    assert row_count(session, Prescription) == before


def test_only_clinicians_prescribe(client: TestClient, world: dict[str, Any]) -> None:
    r = client.post(
        f"/api/encounters/{world['enc']}/prescriptions", json=FORMULA_DRAFT, headers=world["nurse"]
    )
    assert_problem(r, 403)


# --- constitution ---------------------------------------------------------------------


def _answers(value: int = 1, **overrides: int) -> dict[str, int]:
    q = questionnaire()
    answers = dict.fromkeys(q.required("female"), value)
    answers.update(overrides)
    return answers


def test_constitution_assessment_and_history(client: TestClient, world: dict[str, Any]) -> None:
    url = f"/api/patients/{world['pid']}/constitution"
    # Example 2 of the standard in spirit: balanced high, 痰湿 (E) in the tendency band.
    answers = _answers(1, A1=5, A6=5, E1=3, E2=3, E3=3, E4=2, E5=2, E6=2, E7=2, E8=1)
    first = client.post(
        url,
        json={"answers": answers, "assessed_at": "2026-10-01T09:00:00+08:00"},
        headers=world["h"],
    )
    assert first.status_code == 201, first.text
    out = first.json()
    assert out["scores"]["E"] == pytest.approx((18 - 8) / 32 * 100, abs=0.01)
    assert out["results"]["E"] == "tendency"
    assert out["results"]["A"] == "basically_yes"
    second = client.post(
        url, json={"answers": _answers(1, B1=5, B2=5, B3=5, B4=5, C5=5)}, headers=world["h"]
    )
    assert second.json()["results"]["B"] == "yes" and second.json()["results"]["A"] == "no"
    history = client.get(url, headers=world["h"]).json()
    assert [h["id"] for h in history] == [second.json()["id"], out["id"]]
    timeline = client.get(
        f"/api/patients/{world['pid']}/timeline",
        params={"types": "constitution"},
        headers=world["h"],
    ).json()
    assert {e["id"] for e in timeline["entries"]} == {second.json()["id"], out["id"]}


@pytest.mark.parametrize(
    ("answers", "field"),
    [
        ({k: v for k, v in _answers().items() if k != "D3"}, "answers.D3"),
        ({k: v for k, v in _answers().items() if k != "F6"}, "answers.F6"),
        (_answers(F7=2), "answers.F7"),  # the male-only item, for a woman
        (_answers(D3=6), "answers.D3"),
        (_answers(D3=0), "answers.D3"),
        ({**_answers(), "Z9": 3}, "answers.Z9"),
    ],
)
def test_incomplete_or_bad_questionnaire_is_422(
    client: TestClient, session: Session, world: dict[str, Any], answers: dict[str, int], field: str
) -> None:
    before = row_count(session, ConstitutionAssessment)
    r = client.post(
        f"/api/patients/{world['pid']}/constitution", json={"answers": answers}, headers=world["h"]
    )
    assert field in error_fields(assert_problem(r, 422))
    assert row_count(session, ConstitutionAssessment) == before


def test_questionnaire_lists_sixty_one_items(client: TestClient, world: dict[str, Any]) -> None:
    q = client.get("/api/tcm/constitution/questionnaire", headers=world["h"]).json()
    assert len(q["items"]) == 61  # 60 per respondent + the other sex's 湿热质 item
    assert len(q["scales"]["A"]["items"]) == 8
    assert sum(i["reverse_scored"] for i in q["scales"]["A"]["items"]) == 6


def test_audit_rows_exist_for_reads(
    session: Session, client: TestClient, world: dict[str, Any]
) -> None:
    client.get(f"/api/patients/{world['pid']}/constitution", headers=world["h"])
    assert session.query(AuditEvent).filter_by(resource_type="ConstitutionAssessment").count()


def test_safety_check_leaves_out_what_the_policy_hides(
    client: TestClient, make_actor: Callable[..., Actor], auth_headers: Headers
) -> None:
    """The same person at A and B; B's record says digoxin. A clinician at A without the
    patient's sharing consent is told B's entries were withheld, and B's drug is not used."""
    alliance = AllianceFactory()
    a, b = InstitutionFactory(alliance=alliance), InstitutionFactory(alliance=alliance)
    ha = auth_headers(make_actor(Role.CLINICIAN, institution=a))
    hb = auth_headers(make_actor(Role.CLINICIAN, institution=b))
    body = {"family_name": "王", "given_name": "秀英", "sex": "female",
            "birth_date": "1949-12-31", "id_number": "11010519491231002X"}  # fmt: skip
    pid = client.post("/api/patients", json=body, headers=ha).json()["patient"]["id"]
    assert client.post("/api/patients", json=body, headers=hb).json()["patient"]["id"] == pid
    consent = client.post(f"/api/patients/{pid}/consent", json={"status": "withdrawn"}, headers=ha)
    assert consent.status_code in (200, 201), consent.text
    med = client.post(f"/api/patients/{pid}/medications", json={"drug": "digoxin"}, headers=hb)
    assert med.status_code == 201
    check = {"patient_id": pid, "herbs": [{"name": "甘草", "dose_g": 6}]}
    seen_by_a = client.post("/api/tcm/safety-check", json=check, headers=ha).json()
    assert seen_by_a["hidden_institutions"] == [b.code]
    assert not seen_by_a["findings"]
    seen_by_b = client.post("/api/tcm/safety-check", json=check, headers=hb).json()
    assert [f["drugs"] for f in seen_by_b["findings"]] == [["digoxin"]]


def _expected_entry(p: dict[str, Any], *, overridden: bool) -> dict[str, Any]:
    herbs = [{"name": h["name"], "dose_g": h["dose_g"]} for h in p["herbs"]]
    western = [{"drug": d["drug"], "dose": d["dose"]} for d in p["drugs"]]
    herbal = f"{p['formula_name']} {len(herbs)}味×{p['dose_count']}剂" if herbs else ""
    drugs = ", ".join(f"{d['drug']} {d['dose']} {d['frequency']}" for d in p["drugs"])
    return {
        "id": p["id"],
        "summary": " | ".join(x for x in (herbal, drugs) if x),
        "encounter_id": p["encounter_id"],
        "detail": {
            "herbs": herbs,
            "western": western,
            "findings": len(p["findings"]),
            "blocking_rules": sorted(
                {f["rule"] for f in p["findings"] if f["severity"] == "block"}
            ),
            "overridden": overridden,
        },
    }


def test_prescriptions_on_the_timeline_are_paged_with_their_herbs_and_drugs(
    client: TestClient, connection: Connection, world: dict[str, Any]
) -> None:
    """Newest first by signature (else creation) time; herbs in the prescription's
    order, western drugs, the safety summary; a page holds only its entries, and the
    prescriptions are read only in the paged (LIMITed) statement."""
    mixed = _draft(client, world, FORMULA_DRAFT)
    herbal = _draft(
        client,
        world,
        {"from_formula": {"formula": "四君子汤"}, "dose_count": 3, "herbal_form": "decoction"},
    )
    signed = client.post(
        f"/api/prescriptions/{mixed['id']}/sign",
        json={"override_reason": "INR monitored weekly by the anticoagulation clinic"},
        headers=world["h"],
    )
    assert signed.status_code == 200, signed.text
    url = f"/api/patients/{world['pid']}/timeline"
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(connection, "before_cursor_execute", seen)
    try:
        pages = [
            client.get(
                url, params={"types": "prescription", "limit": 1, "offset": n}, headers=world["h"]
            ).json()
            for n in (0, 1, 2)
        ]
    finally:
        event.remove(connection, "before_cursor_execute", seen)
    on_prescriptions = [s for s in statements if "tcm_prescription" in s]
    assert on_prescriptions and all("LIMIT" in s.upper() for s in on_prescriptions)
    assert [p["total"] for p in pages] == [2, 2, 2]
    assert pages[2]["entries"] == []
    got = [p["entries"][0] for p in pages[:2]]
    assert [(e["status"], e["type"]) for e in got] == [
        ("signed", "prescription"),
        ("draft", "prescription"),
    ]
    expected = [
        _expected_entry(signed.json(), overridden=True),
        _expected_entry(herbal, overridden=False),
    ]
    assert [{k: e[k] for k in expected[0]} for e in got] == expected
    assert got[0]["at"] > got[1]["at"]  # signed after the second draft was written
