"""Remote monitoring over HTTP: batches with per-reading results, idempotent retries,
alerts with their sources, the alert lifecycle, thresholds, the desk."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, event, func, insert, select
from sqlalchemy.orm import Session

from medalliance.audit.models import AuditEvent
from medalliance.domains.monitoring.catalogue import DeviceType, MeasurementType
from medalliance.domains.monitoring.models import Alert, Reading, ThresholdOverride
from medalliance.domains.records.models import (
    ClinicalStatus,
    Diagnosis,
    Encounter,
    EncounterClass,
    EncounterStatus,
)
from medalliance.jobs.models import Job
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.ids import new_id
from medalliance.kernel.roles import Role
from tests.api.access_matrix import assert_problem
from tests.factories.access import UserFactory
from tests.factories.alliance import AllianceFactory, InstitutionFactory
from tests.factories.monitoring import assign, make_device, make_gateway
from tests.factories.patients import make_patient

Headers = Callable[[Actor], dict[str, str]]
URL = "/api/monitoring/readings"


def _at(minutes_ago: int) -> str:
    return (utcnow() - timedelta(minutes=minutes_ago)).isoformat()


@pytest.fixture
def world(session: Session, make_actor: Callable[..., Actor], auth_headers: Headers) -> Any:
    alliance = AllianceFactory()
    home = InstitutionFactory(alliance=alliance)
    other = InstitutionFactory(alliance=alliance)
    clinician = UserFactory(role=Role.CLINICIAN, institution=home)
    person, record = make_patient(home)
    gateway = make_gateway(home)
    devices = {
        t: make_device(gateway, t)
        for t in (
            DeviceType.BP_MONITOR,
            DeviceType.GLUCOMETER,
            DeviceType.PULSE_OXIMETER,
            DeviceType.SCALE,
            DeviceType.THERMOMETER,
            DeviceType.ACTIVITY_TRACKER,
        )
    }
    for device in devices.values():
        assign(device, record, responsible_user_id=clinician.id)

    class W:
        pass

    w = W()
    w.home, w.other, w.person, w.record, w.gateway, w.devices = (  # type: ignore[attr-defined]
        home,
        other,
        person,
        record,
        gateway,
        devices,
    )
    w.clinician = clinician  # type: ignore[attr-defined]
    w.gw = auth_headers(  # type: ignore[attr-defined]
        make_actor(Role.DEVICE_GATEWAY, institution=home, user_id=gateway.user_id)
    )
    w.doc = auth_headers(  # type: ignore[attr-defined]
        make_actor(Role.CLINICIAN, institution=home, user_id=clinician.id)
    )
    w.serial = {t: d.serial for t, d in devices.items()}  # type: ignore[attr-defined]
    return w


def _bp(w: Any, sbp: float, dbp: float, minutes_ago: int = 10, **extra: Any) -> dict[str, Any]:
    return {
        "device": w.serial[DeviceType.BP_MONITOR],
        "type": "blood_pressure",
        "measured_at": _at(minutes_ago),
        "unit": "mm[Hg]",
        "systolic": sbp,
        "diastolic": dbp,
        **extra,
    }


def _one(w: Any, kind: DeviceType, type_: str, value: float, unit: str, ago: int = 10, **x: Any):
    return {
        "device": w.serial[kind],
        "type": type_,
        "measured_at": _at(ago),
        "unit": unit,
        "value": value,
        **x,
    }


def _readings(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Reading)) or 0


def test_a_mixed_batch_stores_the_good_readings_and_says_why_the_rest_were_rejected(
    client: TestClient, session: Session, world: Any
) -> None:
    w = world
    batch = [
        _bp(w, 128, 82, pulse=71),  # 0 stored (+ heart rate)
        _one(w, DeviceType.GLUCOMETER, "glucose", 5.6, "mmol/L", context="fasting"),  # 1
        _one(w, DeviceType.PULSE_OXIMETER, "spo2", 140, "%"),  # 2 impossible
        {**_one(w, DeviceType.PULSE_OXIMETER, "spo2", 97, "%"), "device": "NO-SUCH"},  # 3
        _one(w, DeviceType.SCALE, "weight", 154.3, "[lb_av]"),  # 4 stored as kg
        _one(w, DeviceType.THERMOMETER, "body_temperature", 36.6, "mm[Hg]"),  # 5 bad unit
        _one(w, DeviceType.THERMOMETER, "body_temperature", 36.6, "Cel", ago=-24 * 60),  # 6 future
        {"device": w.serial[DeviceType.SCALE], "type": "weight"},  # 7 malformed
        _one(w, DeviceType.SCALE, "glucose", 5.0, "mmol/L"),  # 8 a scale measures no glucose
        _one(
            w,
            DeviceType.ACTIVITY_TRACKER,
            "steps",
            4200,
            "{steps}",
            period_start=_at(70),
        ),  # 9 stored
        _one(w, DeviceType.ACTIVITY_TRACKER, "steps", 10, "{steps}", ago=5),  # 10 no interval
        "not an object",  # 11
    ]
    response = client.post(URL, json={"readings": batch}, headers=w.gw)
    assert response.status_code == 200, response.text
    body = response.json()
    status = [r["status"] for r in body["results"]]
    assert status == [
        "stored",
        "stored",
        "rejected",
        "rejected",
        "stored",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "stored",
        "rejected",
        "rejected",
    ]
    reasons = {r["index"]: r["reason"] for r in body["results"] if r["reason"]}
    assert "not a possible spo2" in reasons[2]
    assert "unknown device 'NO-SUCH'" in reasons[3]
    assert "unit 'mm[Hg]' does not fit body_temperature" in reasons[5]
    assert "in the future" in reasons[6]
    assert "measured_at: Field required" in reasons[7]
    assert "does not measure glucose" in reasons[8]
    assert "period_start" in reasons[10]
    assert (body["stored"], body["rejected"], body["duplicate"]) == (4, 8, 0)
    rows = {r.measurement: r for r in session.scalars(select(Reading))}
    assert set(rows) == {"blood_pressure", "heart_rate", "glucose", "weight", "steps"}
    assert rows["blood_pressure"].loinc == "85354-9"
    assert (rows["blood_pressure"].value, rows["blood_pressure"].diastolic) == (128, 82)
    assert rows["heart_rate"].loinc == "8867-4" and rows["heart_rate"].value == 71
    assert rows["weight"].unit == "kg" and rows["weight"].value == pytest.approx(69.99, abs=0.01)
    assert rows["glucose"].glucose_context == "fasting" and rows["glucose"].unit == "mmol/L"
    assert rows["steps"].period_start is not None
    audit = session.scalars(
        select(AuditEvent).where(
            AuditEvent.resource_type == "Observation", AuditEvent.patient_id == w.person.id
        )
    ).all()
    # one event for the batch's readings of this patient, naming how many and their span
    assert len(audit) == 1
    detail = json.loads(audit[0].detail)
    times = sorted(r.measured_at for r in rows.values())
    assert detail["readings"] == 5
    assert (detail["measured_from"], detail["measured_to"]) == (
        times[0].isoformat(),
        times[-1].isoformat(),
    )


def test_a_retried_batch_stores_nothing_twice(
    client: TestClient, session: Session, world: Any
) -> None:
    w = world
    batch = [_bp(w, 130, 85, pulse=66), _one(w, DeviceType.PULSE_OXIMETER, "spo2", 96, "%")]
    first = client.post(URL, json={"readings": batch}, headers=w.gw).json()
    assert [r["status"] for r in first["results"]] == ["stored", "stored"]
    count = _readings(session)
    assert count == 3
    again = client.post(URL, json={"readings": [*batch, batch[0]]}, headers=w.gw).json()
    assert [r["status"] for r in again["results"]] == ["duplicate"] * 3
    assert again["stored"] == 0 and _readings(session) == count


def test_batch_level_bad_input_is_a_problem_and_changes_nothing(
    client: TestClient, session: Session, world: Any
) -> None:
    w = world
    for payload in ({"readings": []}, {"items": [1]}, [1, 2], {"readings": [{}] * 1001}):
        response = client.post(URL, json=payload, headers=w.gw)
        assert_problem(response, 422)
    response = client.post(URL, content=b"{not json", headers=w.gw)
    assert_problem(response, 422)
    assert _readings(session) == 0


def test_a_gateway_cannot_submit_for_another_gateways_device(
    client: TestClient, session: Session, world: Any, make_actor: Any, auth_headers: Headers
) -> None:
    w = world
    stranger = make_gateway(w.home)
    headers = auth_headers(
        make_actor(Role.DEVICE_GATEWAY, institution=w.home, user_id=stranger.user_id)
    )
    body = client.post(URL, json={"readings": [_bp(w, 120, 80)]}, headers=headers).json()
    assert body["results"][0]["status"] == "rejected"
    assert "unknown device" in body["results"][0]["reason"]
    # An account with the gateway role but no registered gateway is refused outright.
    nobody = auth_headers(make_actor(Role.DEVICE_GATEWAY, institution=w.home))
    assert_problem(client.post(URL, json={"readings": [_bp(w, 120, 80)]}, headers=nobody), 403)
    assert _readings(session) == 0


def test_a_reading_outside_the_assignment_period_is_rejected(
    client: TestClient, session: Session, world: Any
) -> None:
    w = world
    old = _bp(w, 120, 80, minutes_ago=90 * 24 * 60)  # before the 60-day assignment began
    body = client.post(URL, json={"readings": [old]}, headers=w.gw).json()
    assert "was not assigned to a patient" in body["results"][0]["reason"]


def _alerts(session: Session) -> dict[str, Alert]:
    session.expire_all()  # the app wrote through its own session
    return {a.rule: a for a in session.scalars(select(Alert))}


def test_dangerous_readings_raise_alerts_with_their_source_and_notify(
    client: TestClient, session: Session, world: Any
) -> None:
    w = world
    batch = [
        _bp(w, 186, 100, minutes_ago=30),  # crisis: SBP > 180
        _one(w, DeviceType.GLUCOMETER, "glucose", 2.8, "mmol/L", context="random"),
        _one(w, DeviceType.PULSE_OXIMETER, "spo2", 89, "%"),
    ]
    body = client.post(URL, json={"readings": batch}, headers=w.gw).json()
    assert all(r["alerts"] for r in body["results"]), body
    found = _alerts(session)
    assert set(found) == {"hypertensive_crisis", "hypoglycaemia_level_2", "low_spo2"}
    assert "[S47]" in found["hypertensive_crisis"].source
    assert "[S45]" in found["hypoglycaemia_level_2"].source
    assert "[S51]" in found["low_spo2"].source
    assert found["hypertensive_crisis"].severity == "critical"
    jobs = session.scalars(select(Job).where(Job.kind == "notifications.deliver")).all()
    assert len(jobs) == 3
    assert all(str(w.clinician.id) in j.payload for j in jobs)
    # A second high BP joins the open alert instead of raising another.
    client.post(URL, json={"readings": [_bp(w, 190, 95, minutes_ago=5)]}, headers=w.gw)
    session.expire_all()
    crisis = session.scalars(select(Alert).where(Alert.rule == "hypertensive_crisis")).all()
    assert len(crisis) == 1 and crisis[0].occurrences == 2 and crisis[0].value == 190


@pytest.mark.parametrize(
    ("sbp", "dbp", "rule"),
    [
        (180, 100, "hypertensive_urgency"),
        (170, 110, "hypertensive_urgency"),
        (181, 90, "hypertensive_crisis"),
        (170, 121, "hypertensive_crisis"),
        (179, 109, None),
    ],
)
def test_blood_pressure_levels(
    client: TestClient, session: Session, world: Any, sbp: int, dbp: int, rule: str | None
) -> None:
    client.post(URL, json={"readings": [_bp(world, sbp, dbp)]}, headers=world.gw)
    assert list(_alerts(session)) == ([rule] if rule else [])


def _diagnose(session: Session, w: Any, code: str) -> None:
    encounter = Encounter(
        patient_record_id=w.record.id,
        institution_id=w.home.id,
        encounter_class=EncounterClass.OUTPATIENT,
        status=EncounterStatus.FINISHED,
        start=utcnow() - timedelta(days=30),
    )
    session.add(encounter)
    session.flush()
    session.add(
        Diagnosis(
            encounter_id=encounter.id,
            patient_record_id=w.record.id,
            institution_id=w.home.id,
            western_code=code,
            status=ClinicalStatus.ACTIVE,
            recorded_at=utcnow(),
        )
    )
    session.flush()


def test_copd_patients_alert_below_88_not_90(
    client: TestClient, session: Session, world: Any
) -> None:
    w = world
    _diagnose(session, w, "J44.1")
    spo2 = DeviceType.PULSE_OXIMETER
    client.post(URL, json={"readings": [_one(w, spo2, "spo2", 89, "%", ago=20)]}, headers=w.gw)
    assert _alerts(session) == {}
    client.post(URL, json={"readings": [_one(w, spo2, "spo2", 87, "%", ago=10)]}, headers=w.gw)
    alert = _alerts(session)["low_spo2"]
    assert "88" in alert.criterion and "[S50]" in alert.source


def test_heart_failure_weight_gain_over_three_days(
    client: TestClient, session: Session, world: Any
) -> None:
    w = world
    _diagnose(session, w, "I50.9")
    scale = DeviceType.SCALE
    day = 24 * 60
    steady = [
        _one(w, scale, "weight", 70.0, "kg", ago=5 * day),
        _one(w, scale, "weight", 70.5, "kg", ago=2 * day),
    ]
    client.post(URL, json={"readings": steady}, headers=w.gw)
    assert _alerts(session) == {}
    client.post(
        URL, json={"readings": [_one(w, scale, "weight", 72.6, "kg", ago=10)]}, headers=w.gw
    )
    alert = _alerts(session)["hf_weight_gain"]
    assert "+2.1 kg" in alert.message and "[S49]" in alert.source


def test_a_clinicians_override_changes_the_threshold_and_is_audited(
    client: TestClient, session: Session, world: Any, make_actor: Any, auth_headers: Headers
) -> None:
    w = world
    url = f"/api/monitoring/patients/{w.person.id}/thresholds/low_spo2"
    nurse = auth_headers(make_actor(Role.NURSE, institution=w.home))
    assert_problem(client.put(url, json={"threshold": 88, "reason": "COPD"}, headers=nurse), 403)
    bad = client.put(
        url, json={"threshold": 88, "second_threshold": 5, "reason": "x"}, headers=w.doc
    )
    assert_problem(bad, 422)
    ok = client.put(url, json={"threshold": 88, "reason": "COPD, GOLD 3"}, headers=w.doc)
    assert ok.status_code == 200, ok.text
    listed = client.get(f"/api/monitoring/patients/{w.person.id}/thresholds", headers=w.doc).json()
    spo2 = next(t for t in listed if t["rule"] == "low_spo2")
    assert spo2["override"]["threshold"] == 88 and "[S51]" in spo2["source"]
    ox = DeviceType.PULSE_OXIMETER
    client.post(URL, json={"readings": [_one(w, ox, "spo2", 89, "%", ago=9)]}, headers=w.gw)
    assert _alerts(session) == {}
    client.post(URL, json={"readings": [_one(w, ox, "spo2", 87, "%", ago=8)]}, headers=w.gw)
    assert "clinician override (COPD, GOLD 3)" in _alerts(session)["low_spo2"].source
    trail = session.scalars(
        select(AuditEvent).where(AuditEvent.resource_type == "MonitoringThreshold")
    ).all()
    assert any(json.loads(e.detail).get("after") == [88.0, None] for e in trail)
    assert client.delete(url, headers=w.doc).status_code == 204
    assert_problem(client.delete(url, headers=w.doc), 404)


def test_alert_lifecycle(client: TestClient, session: Session, world: Any) -> None:
    w = world
    client.post(URL, json={"readings": [_bp(w, 200, 130)]}, headers=w.gw)
    alert_id = str(_alerts(session)["hypertensive_crisis"].id)
    base = f"/api/monitoring/alerts/{alert_id}"
    listed = client.get("/api/monitoring/alerts", headers=w.doc).json()
    assert [a["id"] for a in listed] == [alert_id] and listed[0]["patient_id"] == str(w.person.id)
    ack = client.post(f"{base}/acknowledge", json={"note": "called the patient"}, headers=w.doc)
    assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
    assert_problem(client.post(f"{base}/acknowledge", headers=w.doc), 409)
    esc = client.post(f"{base}/escalate", headers=w.doc)
    assert esc.json()["status"] == "escalated"
    done = client.post(
        f"{base}/resolve", json={"note": "BP 150/95 after nifedipine"}, headers=w.doc
    )
    assert done.json()["status"] == "resolved" and "nifedipine" in done.json()["note"]
    assert_problem(client.post(f"{base}/resolve", headers=w.doc), 409)
    assert client.get("/api/monitoring/alerts", headers=w.doc).json() == []
    # A new crisis after resolution is a new alert.
    client.post(URL, json={"readings": [_bp(w, 199, 90, minutes_ago=1)]}, headers=w.gw)
    assert session.scalar(select(func.count()).select_from(Alert)) == 2


def test_other_institutions_see_no_readings_or_alerts(
    client: TestClient, session: Session, world: Any, make_actor: Any, auth_headers: Headers
) -> None:
    w = world
    client.post(URL, json={"readings": [_bp(w, 200, 130)]}, headers=w.gw)
    foreign = auth_headers(make_actor(Role.CLINICIAN, institution=w.other))
    readings = f"/api/monitoring/patients/{w.person.id}/readings"
    assert_problem(client.get(readings, headers=foreign), 403)
    assert client.get("/api/monitoring/alerts", headers=foreign).json() == []
    assert client.get("/api/monitoring/desk", headers=foreign).json() == []
    alert_id = _alerts(session)["hypertensive_crisis"].id
    assert_problem(
        client.post(f"/api/monitoring/alerts/{alert_id}/acknowledge", headers=foreign), 403
    )
    mine = client.get(readings, headers=w.doc)
    assert mine.status_code == 200 and mine.headers["X-Total-Count"] == "1"


def test_the_desk_puts_the_most_urgent_patient_first(
    client: TestClient, session: Session, world: Any
) -> None:
    w = world
    calm_person, calm_record = make_patient(w.home, given_name="静")
    calm_device = make_device(w.gateway, DeviceType.BP_MONITOR)
    assign(calm_device, calm_record, responsible_user_id=w.clinician.id)
    readings = [
        {**_bp(w, 128, 80, minutes_ago=5), "device": calm_device.serial},
        _bp(w, 150, 95, minutes_ago=60 * 30),
        _bp(w, 185, 112, minutes_ago=10),
        _one(w, DeviceType.GLUCOMETER, "glucose", 3.5, "mmol/L"),
    ]
    client.post(URL, json={"readings": readings}, headers=w.gw)
    desk = client.get("/api/monitoring/desk", headers=w.doc)
    assert desk.status_code == 200, desk.text
    rows = desk.json()
    assert [r["patient_id"] for r in rows] == [str(w.person.id), str(calm_person.id)]
    first = rows[0]
    assert first["open_alerts"] == 2 and first["highest_severity"] == "critical"
    assert {a["rule"] for a in first["alerts"]} == {"hypertensive_crisis", "hypoglycaemia_level_1"}
    latest = {r["measurement"]: r for r in first["latest"]}
    assert latest["blood_pressure"]["value"] == 185
    assert len(first["trends"]["blood_pressure"]) == 2
    assert rows[1]["open_alerts"] == 0
    reads = session.scalars(
        select(AuditEvent).where(AuditEvent.resource_type == "MonitoringDesk")
    ).all()
    assert {e.patient_id for e in reads} == {w.person.id, calm_person.id}


def test_readings_and_alerts_join_the_timeline(client: TestClient, world: Any) -> None:
    w = world
    client.post(URL, json={"readings": [_bp(w, 200, 130)]}, headers=w.gw)
    timeline = client.get(f"/api/patients/{w.person.id}/timeline", headers=w.doc).json()
    types = {e["type"] for e in timeline["entries"]}
    assert {"reading", "monitoring_alert"} <= types


def test_a_member_without_the_patients_record_gets_the_records_conflict(
    client: TestClient, session: Session, world: Any, make_actor: Any, auth_headers: Headers
) -> None:
    """Monitoring and the record share one check: the policy lets another member in
    (break-the-glass) but writes need the patient registered at the writer's own
    institution, and both say so the same way."""
    w = world
    user = UserFactory(role=Role.CLINICIAN, institution=w.other)
    doc = auth_headers(make_actor(Role.CLINICIAN, institution=w.other, user_id=user.id))
    glass = client.post(
        "/api/access/break-glass",
        json={"patient_id": str(w.person.id), "reason": "seen in our ED"},
        headers=doc,
    )
    assert glass.status_code == 201, glass.text
    url = f"/api/monitoring/patients/{w.person.id}/thresholds/low_spo2"
    refused = assert_problem(
        client.put(url, json={"threshold": 88, "reason": "COPD, GOLD 3"}, headers=doc), 409
    )
    encounter = client.post(
        f"/api/patients/{w.person.id}/encounters",
        json={"encounter_class": "outpatient", "start": _at(5)},
        headers=doc,
    )
    assert refused["detail"] == assert_problem(encounter, 409)["detail"]
    assert "MPI" in refused["detail"]
    assert session.scalar(select(func.count()).select_from(ThresholdOverride)) == 0


def test_continuous_monitoring_pages_the_timeline_without_reading_every_reading(
    client: TestClient, session: Session, connection: Connection, world: Any
) -> None:
    """12,000 glucose readings (six weeks of a CGM every 5 minutes): a timeline page
    holds the right readings, newest first, with the right total, and no statement
    reads the readings table without a LIMIT."""
    w = world
    device = w.devices[DeviceType.GLUCOMETER]
    newest = utcnow().replace(microsecond=0) - timedelta(minutes=1)
    times = [newest - timedelta(minutes=5 * i) for i in range(12_000)]
    rows = [
        {
            "id": new_id(),
            "device_id": device.id,
            "measurement": MeasurementType.GLUCOSE,
            "measured_at": at,
            "patient_record_id": w.record.id,
            "institution_id": w.home.id,
            "gateway_id": w.gateway.id,
            "loinc": "14743-9",
            "unit": "mmol/L",
            "value": 4.0 + (i % 70) / 10,
            "received_at": at,
        }
        for i, at in enumerate(times)
    ]
    session.execute(insert(Reading), rows)
    alerted = client.post(URL, json={"readings": [_bp(w, 200, 130, minutes_ago=0)]}, headers=w.gw)
    assert alerted.json()["stored"] == 1
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(connection, "before_cursor_execute", seen)
    try:
        url = f"/api/patients/{w.person.id}/timeline"
        page = client.get(url, params={"limit": 50, "offset": 100}, headers=w.doc).json()
        readings = client.get(
            url, params={"types": "reading", "limit": 50, "offset": 11_990}, headers=w.doc
        ).json()
    finally:
        event.remove(connection, "before_cursor_execute", seen)

    # everything: 12,000 glucose readings + the BP reading + its alert
    assert page["total"] == 12_002
    # newest first: the alert and the BP reading (now), then glucose from the newest on
    glucose = [e for e in page["entries"] if e["summary"].startswith("glucose")]
    assert len(page["entries"]) == 50 and len(glucose) == 50
    assert [datetime.fromisoformat(e["at"]) for e in glucose] == times[98:148]
    assert glucose[0]["summary"] == f"glucose: {rows[98]['value']:g} mmol/L"
    assert glucose[0]["detail"] == {"loinc": "14743-9"}
    assert readings["total"] == 12_001
    assert [datetime.fromisoformat(e["at"]) for e in readings["entries"]] == times[11_989:]
    on_readings = [s for s in statements if "readings" in s]
    assert on_readings and all("LIMIT" in s.upper() for s in on_readings)
