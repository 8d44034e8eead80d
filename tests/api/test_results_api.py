"""Results over HL7 v2, the order-time recognition check, decisions and statistics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.domains.patients.models import PatientRecord
from medalliance.domains.results.models import Hl7Message, RecognitionDecision, Result
from medalliance.kernel.actor import Actor
from medalliance.kernel.roles import Role
from tests.api.access_matrix import assert_problem, audit_events
from tests.factories.alliance import AllianceFactory, InstitutionFactory
from tests.factories.results import RESIDENT_ID, accredit, days_ago, obx, oru, seed_catalogue

Headers = Callable[[Actor], dict[str, str]]
ER7 = {"Content-Type": "x-application/hl7-v2+er7"}


def _count(session: Session, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def _stored(session: Session) -> tuple[int, int, int]:
    return _count(session, Hl7Message), _count(session, Result), _count(session, PatientRecord)


def _segments(ack: str) -> dict[str, list[str]]:
    """Test-side reading of an ACK (the product parses with hl7apy; the test only looks)."""
    return {line.split("|", 1)[0]: line.split("|") for line in ack.strip("\r").split("\r")}


@pytest.fixture
def world(session: Session, make_actor: Callable[..., Actor], auth_headers: Headers) -> Any:
    seed_catalogue()
    alliance = AllianceFactory()
    a, b, c = (InstitutionFactory(alliance=alliance) for _ in range(3))
    accredit(a, "14749-6", "2823-3", "30745-4")
    accredit(b, "14749-6")

    class World:
        pass

    w = World()
    w.a, w.b, w.c = a, b, c  # type: ignore[attr-defined]
    w.gw_a = {**auth_headers(make_actor(Role.INTERFACE_GATEWAY, institution=a)), **ER7}  # type: ignore[attr-defined]
    w.gw_b = {**auth_headers(make_actor(Role.INTERFACE_GATEWAY, institution=b)), **ER7}  # type: ignore[attr-defined]
    w.doc_c = auth_headers(make_actor(Role.CLINICIAN, institution=c))  # type: ignore[attr-defined]
    w.admin = auth_headers(make_actor(Role.ALLIANCE_ADMIN))  # type: ignore[attr-defined]
    return w


def _post(
    client: TestClient, headers: dict[str, str], message: str
) -> tuple[int, dict[str, list[str]]]:
    response = client.post("/api/interop/hl7v2", content=message.encode(), headers=headers)
    assert response.headers["content-type"].startswith("x-application/hl7-v2+er7")
    return response.status_code, _segments(response.text)


def _register_at_c_with_encounter(client: TestClient, w: Any) -> str:
    body = {
        "family_name": "王",
        "given_name": "秀英",
        "sex": "female",
        "birth_date": "1949-12-31",
        "id_number": RESIDENT_ID,
    }
    registered = client.post("/api/patients", json=body, headers=w.doc_c)
    assert registered.status_code == 201, registered.text
    pid = registered.json()["patient"]["id"]
    encounter = client.post(
        f"/api/patients/{pid}/encounters",
        json={"encounter_class": "outpatient", "start": days_ago(0).isoformat()},
        headers=w.doc_c,
    )
    assert encounter.status_code == 201, encounter.text
    return str(pid)


# --- HL7 v2 ingestion ----------------------------------------------------------------------


def test_an_oru_is_stored_acknowledged_and_registers_the_patient(
    client: TestClient, session: Session, world: Any
) -> None:
    message = oru(
        "C-1",
        world.a.code,
        observations=[obx(1, "14749-6", "5.6", "mmol/L"), obx(2, "2823-3", "4.1", "mmol/L")],
    )
    status, ack = _post(client, world.gw_a, message)
    assert status == 200
    assert ack["MSA"][1:3] == ["AA", "C-1"]
    assert ack["MSH"][8].startswith("ACK")
    stored = session.scalars(select(Result).order_by(Result.item_code)).all()
    assert [(r.item_code, r.value_numeric, r.unit) for r in stored] == [
        ("14749-6", 5.6, "mmol/L"),
        ("2823-3", 4.1, "mmol/L"),
    ]
    assert all(r.institution_id == world.a.id and r.hr_mark for r in stored)
    record = session.get(PatientRecord, stored[0].patient_record_id)
    assert record is not None and record.institution_id == world.a.id and record.mrn == "MRN-1"
    kept = session.scalars(select(Hl7Message)).one()
    assert kept.raw == message and kept.result_count == 2 and kept.control_id == "C-1"


def test_a_duplicate_control_id_is_acknowledged_again_and_stored_once(
    client: TestClient, session: Session, world: Any
) -> None:
    message = oru("DUP-1", world.a.code)
    assert _post(client, world.gw_a, message)[0] == 200
    before = _stored(session)
    status, ack = _post(client, world.gw_a, message)
    assert status == 200 and ack["MSA"][1:3] == ["AA", "DUP-1"]
    assert _stored(session) == before
    assert audit_events(session, action="duplicate", resource_type="Hl7Message")
    # The same control id from another member is another message.
    other = oru("DUP-1", world.b.code, mrn="B-7")
    assert _post(client, world.gw_b, other)[0] == 200
    assert _count(session, Hl7Message) == before[0] + 1


def _without_identifiers(message: str) -> str:
    return message.replace("MRN-1^^^", "").replace(f"{RESIDENT_ID}^^^CHN^NNCHN", "")


def _potassium_in_mg_per_dl(message: str) -> str:
    return message.replace("14749-6^14749-6", "2823-3^2823-3").replace("mmol/L", "mg/dL")


@pytest.mark.parametrize(
    ("mutate", "ack_code", "location"),
    [
        (lambda m: "NOT AN HL7 MESSAGE", "AR", "MSH^1^0"),
        (lambda m: m.replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01"), "AR", "MSH^1^9"),
        (lambda m: m.replace("|P|2.5.1", "|P|2.3"), "AR", "MSH^1^12"),
        (lambda m: m.replace("|5.6|", "|five|"), "AE", "OBX^1^5"),
        (lambda m: m.replace("|NM|", "|ZZ|"), "AE", "OBX^1^2"),
        (lambda m: m.replace("|F|||", "|X|||"), "AE", "OBX^1^11"),
        (_without_identifiers, "AE", "PID^1^3"),
        (lambda m: m.replace("|19491231|", "|1949-12-31|"), "AE", "PID^1^7"),
        # Potassium is a substance concentration: mg/dL does not fit its unit family.
        (_potassium_in_mg_per_dl, "AE", "OBX^1^6"),
        (lambda m: m.replace("mmol/L", "furlongs"), "AE", "OBX^1^6"),
    ],
    ids=["garbage", "type", "version", "value", "value-type", "status", "no-identifier",
         "birth-date", "unit-family", "unit-not-ucum"],
)  # fmt: skip
def test_a_bad_message_gets_ae_or_ar_naming_segment_and_field_and_stores_nothing(
    client: TestClient,
    session: Session,
    world: Any,
    mutate: Callable[[str], str],
    ack_code: str,
    location: str,
) -> None:
    before = _stored(session)
    status, ack = _post(client, world.gw_a, mutate(oru("BAD-1", world.a.code)))
    assert ack["MSA"][1] == ack_code
    assert ack["ERR"][2] == location, ack["ERR"]
    assert status == (422 if ack_code == "AE" else 400)
    assert _stored(session) == before
    assert audit_events(session, action="reject", resource_type="Hl7Message")
    assert not audit_events(session, action="create", resource_type="Result")


def test_a_late_bad_observation_rolls_back_the_whole_message(
    client: TestClient, session: Session, world: Any
) -> None:
    message = oru(
        "HALF-1",
        world.a.code,
        observations=[obx(1, "14749-6", "5.6", "mmol/L"), obx(2, "2823-3", "4.1", "g")],
    )
    before = _stored(session)
    status, ack = _post(client, world.gw_a, message)
    assert status == 422 and ack["MSA"][1] == "AE" and ack["ERR"][2] == "OBX^2^6"
    assert _stored(session) == before  # not even the good first result, nor the patient


def test_a_gateway_cannot_post_for_another_institution(
    client: TestClient, session: Session, world: Any
) -> None:
    before = _stored(session)
    status, ack = _post(client, world.gw_b, oru("X-1", world.a.code))
    assert status == 403 and ack["MSA"][1] == "AR" and ack["ERR"][2] == "MSH^1^4"
    assert _stored(session) == before
    assert audit_events(session, action="denied", resource_type="Hl7Message")


def test_an_unknown_sender_is_rejected(client: TestClient, session: Session, world: Any) -> None:
    status, ack = _post(client, world.gw_a, oru("U-1", "NOSUCHPLACE"))
    assert status == 400 and ack["MSA"][1] == "AR" and ack["ERR"][2] == "MSH^1^4"


def test_clinicians_cannot_post_hl7(client: TestClient, world: Any) -> None:
    response = client.post(
        "/api/interop/hl7v2", content=oru("Z-1", world.c.code).encode(), headers=world.doc_c
    )
    assert_problem(response, 403)


def test_a_known_patient_is_found_by_mrn_and_linked_across_members_by_resident_id(
    client: TestClient, session: Session, world: Any
) -> None:
    assert _post(client, world.gw_a, oru("K-1", world.a.code))[0] == 200
    records = _count(session, PatientRecord)
    assert _post(client, world.gw_a, oru("K-2", world.a.code, filler="FIL-2"))[0] == 200
    assert _count(session, PatientRecord) == records  # found by MRN at A
    assert _post(client, world.gw_b, oru("K-3", world.b.code, mrn="B-1"))[0] == 200
    rows = session.scalars(select(PatientRecord).order_by(PatientRecord.created_at)).all()
    assert len(rows) == records + 1
    assert rows[-1].institution_id == world.b.id
    assert rows[-1].person_id == rows[0].person_id  # the MPI linked B's record by resident ID


def test_a_correction_supersedes_and_never_overwrites(
    client: TestClient, session: Session, world: Any
) -> None:
    assert _post(client, world.gw_a, oru("V-1", world.a.code))[0] == 200
    corrected = oru(
        "V-2", world.a.code, observations=[obx(1, "14749-6", "6.2", "mmol/L", status="C")]
    )
    assert _post(client, world.gw_a, corrected)[0] == 200
    old, new = session.scalars(select(Result).order_by(Result.created_at)).all()
    assert (old.value_numeric, old.status) == (5.6, "final")
    assert old.superseded_by_id == new.id and new.supersedes_id == old.id
    assert (new.value_numeric, new.status) == (6.2, "corrected")


def test_the_timeline_shows_the_correction_not_the_report_it_superseded(
    client: TestClient, world: Any
) -> None:
    assert _post(client, world.gw_a, oru("W-1", world.a.code))[0] == 200
    corrected = oru(
        "W-2", world.a.code, observations=[obx(1, "14749-6", "6.2", "mmol/L", status="C")]
    )
    assert _post(client, world.gw_a, corrected)[0] == 200
    pid = _register_at_c_with_encounter(client, world)

    timeline = client.get(f"/api/patients/{pid}/timeline", params={"types": "result"},
                          headers=world.doc_c)  # fmt: skip

    assert timeline.status_code == 200, timeline.text
    body = timeline.json()
    assert [(e["status"], "6.2 mmol/L" in e["summary"]) for e in body["entries"]] == [
        ("corrected", True)
    ]


def test_an_imaging_report_carries_report_conclusion_and_pacs_link(
    client: TestClient, session: Session, world: Any
) -> None:
    study = days_ago(3)
    message = "\r".join(
        [
            oru("IMG-1", world.a.code).split("\rORC")[0],
            "ORC|RE|ORD-9|FIL-9",
            f"OBR|1|ORD-9|FIL-9|30745-4^XR Chest^LN|||{study.strftime('%Y%m%d%H%M%S+0000')}"
            "|||||||||||||||||RX|F",
            "OBX|1|TX|18782-3^Findings^LN||Lungs clear.\\.br\\No effusion.||||||F|||||||||Chest",
            "OBX|2|TX|19005-8^Impression^LN||No acute disease.||||||F",
            "OBX|3|RP|PACS^Study^L||https://pacs.example.org/study/9||||||F",
        ]
    )
    status, ack = _post(client, world.gw_a, message)
    assert status == 200, ack
    report = session.scalars(select(Result)).one()
    assert report.kind == "imaging" and report.modality == "DX" and report.item_code == "30745-4"
    assert report.report_text == "Lungs clear.\nNo effusion."
    assert report.conclusion == "No acute disease."
    assert report.pacs_url == "https://pacs.example.org/study/9"
    assert report.body_site == "Chest"


# --- order-time check, decisions, statistics, trend ----------------------------------------


def _results_for_check(client: TestClient, world: Any) -> None:
    observations = [
        obx(1, "14749-6", "5.6", "mmol/L", at=days_ago(5)),  # glucose: 30 d window, accredited
        obx(2, "2823-3", "4.1", "mmol/L", at=days_ago(10)),  # potassium: 7 d window → expired
        obx(3, "4548-4", "6.1", "%", at=days_ago(5)),  # HbA1c: A has no EQA for it
        obx(4, "12345-6", "1.0", "mg/L", at=days_ago(5)),  # not on the list
    ]
    status, ack = _post(client, world.gw_a, oru("OC-1", world.a.code, observations=observations))
    assert status == 200, ack


def test_order_check_says_per_item_what_is_recognisable_or_why_not(
    client: TestClient, session: Session, world: Any
) -> None:
    _results_for_check(client, world)
    pid = _register_at_c_with_encounter(client, world)
    response = client.post(
        "/api/results/order-check",
        json={
            "patient_id": pid,
            "institution_code": world.c.code,
            "items": ["14749-6", "2823-3", "4548-4", "12345-6", "2093-3"],
        },
        headers=world.doc_c,
    )
    assert response.status_code == 200, response.text
    items = {i["item_code"]: i for i in response.json()["items"]}
    glucose = items["14749-6"]
    assert glucose["reason"] is None and glucose["validity_days"] == 30
    (hit,) = glucose["recognisable"]
    assert hit["value"] == 5.6 and hit["unit"] == "mmol/L" and hit["hr_mark"] is True
    assert hit["performing_institution_code"] == world.a.code and 23 <= hit["days_left"] <= 25
    assert items["2823-3"]["reason"] == "expired" and not items["2823-3"]["recognisable"]
    assert items["4548-4"]["reason"] == "lab_not_accredited"
    assert items["12345-6"]["reason"] == "item_not_on_list" and not items["12345-6"]["on_list"]
    assert items["2093-3"]["reason"] == "none"
    assert audit_events(session, resource_type="ResultOrderCheck", action="read")


def test_order_check_only_for_your_own_institution_and_patients_you_may_read(
    client: TestClient, world: Any, make_actor: Callable[..., Actor], auth_headers: Headers
) -> None:
    _results_for_check(client, world)
    pid = _register_at_c_with_encounter(client, world)
    body = {"patient_id": pid, "institution_code": world.a.code, "items": ["14749-6"]}
    assert_problem(client.post("/api/results/order-check", json=body, headers=world.doc_c), 403)
    stranger = auth_headers(make_actor(Role.CLINICIAN, institution=world.b))
    body["institution_code"] = world.b.code
    assert_problem(client.post("/api/results/order-check", json=body, headers=stranger), 403)
    body["items"] = ["not a code!"]
    assert_problem(client.post("/api/results/order-check", json=body, headers=world.doc_c), 422)


def test_decisions_reuse_and_repeat_with_reasons_feed_the_statistics(
    client: TestClient, session: Session, world: Any
) -> None:
    _results_for_check(client, world)
    pid = _register_at_c_with_encounter(client, world)
    glucose = session.scalars(select(Result).where(Result.item_code == "14749-6")).one()
    potassium = session.scalars(select(Result).where(Result.item_code == "2823-3")).one()
    # A price is site configuration with its own source, never invented by the product.
    priced = client.post(
        "/api/results/catalogue",
        json={
            "code": "14749-6",
            "kind": "lab",
            "name_zh": "葡萄糖",
            "name_en": "Glucose",
            "unit_property": "MCnc",
            "validity_days": 30,
            "validity_source": "S9",
            "price": "12.50",
            "price_source": "test site configuration",
            "source": "test",
            "valid_from": days_ago(30).date().isoformat(),
        },
        headers=world.admin,
    )
    assert priced.status_code == 201, priced.text
    assert priced.json()["version"] == 2

    def decide(**body: Any) -> Any:
        payload = {"patient_id": pid, **body}
        return client.post("/api/results/decisions", json=payload, headers=world.doc_c)

    reuse = decide(result_id=str(glucose.id), decision="reuse", order_ref="ORD-C-1")
    assert reuse.status_code == 201, reuse.text
    assert reuse.json()["price"] == "12.50"
    assert_problem(decide(result_id=str(glucose.id), decision="repeat"), 422)
    assert_problem(decide(result_id=str(glucose.id), decision="repeat", reason_codes=["R6"]), 422)
    assert_problem(decide(result_id=str(glucose.id), decision="repeat", reason_codes=["R11"]), 422)
    repeat = decide(
        result_id=str(glucose.id),
        decision="repeat",
        reason_codes=["R3", "R6"],
        free_text="术前复查",
    )
    assert repeat.status_code == 201, repeat.text
    assert repeat.json()["reason_codes"] == ["R3", "R6"]
    expired = decide(result_id=str(potassium.id), decision="reuse")
    assert assert_problem(expired, 409)["reason"] == "expired"
    assert _count(session, RecognitionDecision) == 2

    stats = client.get("/api/results/statistics", headers=world.doc_c)
    assert stats.status_code == 200, stats.text
    (row,) = stats.json()["by_institution_month"]
    assert row["institution_code"] == world.c.code
    assert (row["reused"], row["repeated"], row["tests_avoided"]) == (1, 1, 1)
    assert row["money_saved"] == "12.50"
    reasons = {r["code"]: r["count"] for r in stats.json()["repeat_reasons"]}
    assert reasons == {"R3": 1, "R6": 1}


def test_trend_and_timeline_show_results_across_members(client: TestClient, world: Any) -> None:
    for n, (control, days, value) in enumerate([("T-1", 20, "5.1"), ("T-2", 10, "6.3")]):
        reading = obx(1, "14749-6", value, "mmol/L", at=days_ago(days))
        message = oru(control, world.a.code, filler=f"F-{n}", observations=[reading])
        assert _post(client, world.gw_a, message)[0] == 200
    pid = _register_at_c_with_encounter(client, world)
    trend = client.get(f"/api/patients/{pid}/results/trend", params={"item": "14749-6"},
                       headers=world.doc_c)  # fmt: skip
    assert trend.status_code == 200, trend.text
    assert [p["value"] for p in trend.json()["points"]] == [5.1, 6.3]
    timeline = client.get(f"/api/patients/{pid}/timeline", params={"types": "result"},
                          headers=world.doc_c)  # fmt: skip
    assert timeline.status_code == 200, timeline.text
    summaries = [e["summary"] for e in timeline.json()["entries"]]
    assert len(summaries) == 2 and "6.3 mmol/L" in summaries[0]
