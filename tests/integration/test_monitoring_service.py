"""Monitoring use cases below the API: the silent-patient job, gateways with their own
accounts signing in and submitting, device assignment rules."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.domains.monitoring import jobs as monitoring_jobs
from medalliance.domains.monitoring.models import Alert, Reading
from medalliance.jobs.models import Job
from medalliance.jobs.registry import get_handler, schedules
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role
from tests.api.access_matrix import assert_problem, use_cheap_argon2
from tests.factories.access import UserFactory
from tests.factories.alliance import InstitutionFactory
from tests.factories.monitoring import assign, make_device, make_gateway
from tests.factories.patients import make_patient


def test_the_silent_patient_job_raises_one_alert_per_patient(session: Session) -> None:
    home = InstitutionFactory()
    nurse = UserFactory(role=Role.NURSE, institution=home)
    gateway = make_gateway(home)
    _, quiet = make_patient(home, given_name="静")
    _, busy = make_patient(home, given_name="忙")
    quiet_device, busy_device = make_device(gateway), make_device(gateway)
    assign(quiet_device, quiet, start=utcnow() - timedelta(days=10), responsible_user_id=nurse.id)
    assign(busy_device, busy, start=utcnow() - timedelta(days=10))
    session.add(
        Reading(
            device_id=busy_device.id,
            measurement="blood_pressure",
            measured_at=utcnow() - timedelta(hours=2),
            patient_record_id=busy.id,
            institution_id=home.id,
            gateway_id=gateway.id,
            loinc="85354-9",
            unit="mm[Hg]",
            value=130,
            diastolic=80,
            received_at=utcnow(),
        )
    )
    session.flush()
    assert monitoring_jobs.NO_READINGS in {s.kind for s in schedules()}
    assert get_handler(monitoring_jobs.NO_READINGS) is not None
    raised = monitoring_jobs.check_silent_patients(session)
    assert len(raised) == 1
    alert = session.get(Alert, raised[0])
    assert alert is not None and alert.patient_record_id == quiet.id
    assert alert.rule == "no_readings" and "none since the device was assigned" in alert.message
    jobs = session.scalars(select(Job).where(Job.kind == "notifications.deliver")).all()
    assert len(jobs) == 1 and str(nurse.id) in jobs[0].payload
    assert monitoring_jobs.check_silent_patients(session) == []  # still open: not raised again


def test_a_gateway_gets_its_own_account_signs_in_and_submits(
    client: TestClient,
    session: Session,
    make_actor: Any,
    auth_headers: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_cheap_argon2(monkeypatch)
    home = InstitutionFactory()
    admin = auth_headers(make_actor(Role.INSTITUTION_ADMIN, institution=home))
    body = {"code": "ward3-hub", "name": "Ward 3 hub", "username": "gw-ward3", "password": "x" * 16}
    created = client.post("/api/monitoring/gateways", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert_problem(client.post("/api/monitoring/gateways", json=body, headers=admin), 409)
    device = client.post(
        "/api/monitoring/devices",
        json={
            "gateway_id": created.json()["id"],
            "device_type": "pulse_oximeter",
            "model": "Yuwell YX306",
            "serial": "YX306-0001",
        },
        headers=admin,
    )
    assert device.status_code == 201, device.text
    doctor = UserFactory(role=Role.CLINICIAN, institution=home)
    clinician = auth_headers(make_actor(Role.CLINICIAN, institution=home, user_id=doctor.id))
    person, _ = make_patient(home)
    start = (utcnow() - timedelta(days=1)).isoformat()
    assigned = client.post(
        f"/api/monitoring/devices/{device.json()['id']}/assignments",
        json={"patient_id": str(person.id), "start": start},
        headers=clinician,
    )
    assert assigned.status_code == 201, assigned.text
    overlapping = client.post(
        f"/api/monitoring/devices/{device.json()['id']}/assignments",
        json={"patient_id": str(person.id), "start": utcnow().isoformat()},
        headers=clinician,
    )
    assert_problem(overlapping, 409)
    token = client.post(
        "/api/auth/token", data={"username": "gw-ward3", "password": "x" * 16}
    ).json()["access_token"]
    reading = {
        "device": "YX306-0001",
        "type": "spo2",
        "measured_at": utcnow().isoformat(),
        "unit": "%",
        "value": 95,
    }
    sent = client.post(
        "/api/monitoring/readings",
        json={"readings": [reading]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["results"][0]["status"] == "stored"
    # The gateway's account holds no patient-data permission.
    readings = f"/api/monitoring/patients/{person.id}/readings"
    assert_problem(client.get(readings, headers={"Authorization": f"Bearer {token}"}), 403)


def test_a_racing_second_alert_of_the_same_rule_joins_the_first(session: Session) -> None:
    """What a transaction that lost the race sees: the partial unique index refuses a
    second active alert, and raise_alert counts an occurrence on the winner's."""
    from medalliance.domains.monitoring import alerts
    from medalliance.domains.monitoring.models import AlertStatus
    from medalliance.domains.monitoring.rules import Finding
    from medalliance.domains.monitoring.thresholds import AlertRule, Severity

    home = InstitutionFactory()
    nurse = UserFactory(role=Role.NURSE, institution=home)
    _, record = make_patient(home)
    finding = Finding(
        AlertRule.LOW_SPO2,
        Severity.HIGH,
        "Low oxygen saturation",
        "SpO2 87 %",
        "SpO2 < 90 %",
        "[S51]",
        87,
    )
    kwargs = {
        "patient_record_id": record.id,
        "institution_id": home.id,
        "finding": finding,
        "reading_id": None,
        "notify": [nurse.id],
    }
    first = alerts.raise_alert(session, at=utcnow(), **kwargs)
    second = alerts.raise_alert(session, at=utcnow(), **kwargs)
    assert second.id == first.id and second.occurrences == 2
    assert len(session.scalars(select(Job)).all()) == 1  # one notification, not two
    first.status = AlertStatus.RESOLVED
    session.flush()
    third = alerts.raise_alert(session, at=utcnow(), **kwargs)
    assert third.id != first.id and third.status == AlertStatus.OPEN


def test_a_batch_that_loses_the_alert_race_joins_the_winner(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch path raises new alerts with one INSERT … ON CONFLICT DO NOTHING: when
    another transaction's alert for the same rule commits between our look-up and our
    insert, the index skips our row and the batch's readings join the winner."""
    from medalliance.domains.monitoring import alerts, ingest
    from medalliance.domains.monitoring.catalogue import DeviceType
    from medalliance.domains.monitoring.rules import Finding
    from medalliance.domains.monitoring.thresholds import AlertRule, Severity

    home = InstitutionFactory()
    nurse = UserFactory(role=Role.NURSE, institution=home)
    gateway = make_gateway(home)
    _, record = make_patient(home)
    oximeter = make_device(gateway, DeviceType.PULSE_OXIMETER)
    assign(oximeter, record, responsible_user_id=nurse.id)
    finding = Finding(
        AlertRule.LOW_SPO2, Severity.HIGH, "Low oxygen saturation", "SpO2 87 %", "c", "s", 87
    )
    winner = alerts.raise_alert(
        session,
        patient_record_id=record.id,
        institution_id=home.id,
        finding=finding,
        reading_id=None,
        at=utcnow() - timedelta(hours=1),
        notify=[nurse.id],
    )
    jobs_before = len(session.scalars(select(Job)).all())
    looked_up: list[int] = []
    real = alerts._active_alerts

    def not_yet_visible(s: Session, keys: Any) -> Any:  # the first look-up misses it
        looked_up.append(1)
        return {} if len(looked_up) == 1 else real(s, keys)

    monkeypatch.setattr(alerts, "_active_alerts", not_yet_visible)
    now = utcnow()
    items = [
        {
            "device": oximeter.serial,
            "type": "spo2",
            "unit": "%",
            "value": value,
            "measured_at": (now - timedelta(minutes=minutes)).isoformat(),
        }
        for value, minutes in ((86, 10), (85, 5))
    ]
    outcomes = ingest.ingest(
        session,
        gateway=gateway,
        items=items,
        actor=ingest.gateway_actor(gateway),
        transport="http",
    )
    assert [o.status for o in outcomes] == ["stored", "stored"]
    assert [o.alerts for o in outcomes] == [[winner.id], [winner.id]]
    active = session.scalars(select(Alert).where(Alert.patient_record_id == record.id)).all()
    assert [a.id for a in active] == [winner.id]
    assert winner.occurrences == 3 and winner.message == "SpO2 85 %"
    assert len(session.scalars(select(Job)).all()) == jobs_before  # no second notification
