"""Escalating an alert from the monitoring desk: the button, the state change with the
note, the on-call clinicians' notification, and what cannot be escalated."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.domains.alliance.models import Institution
from medalliance.domains.monitoring import jobs as monitoring_jobs
from medalliance.domains.monitoring.models import Alert, AlertStatus
from medalliance.jobs.models import Job
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role
from tests.factories.alliance import InstitutionFactory
from tests.factories.monitoring import assign, make_device, make_gateway
from tests.factories.patients import make_patient
from tests.web.clinical_helpers import csrf, new_user, web_client

EN = {"ma_lang": "en"}


@pytest.fixture
def home(session: Session) -> Institution:
    institution: Institution = InstitutionFactory()
    return institution


def _alert(session: Session, home: Institution) -> Alert:
    _, record = make_patient(home, given_name="静")
    device = make_device(make_gateway(home))
    assign(device, record, start=utcnow() - timedelta(days=10))
    [alert_id] = monitoring_jobs.check_silent_patients(session)
    alert = session.get(Alert, alert_id)
    assert alert is not None
    return alert


def _escalate_buttons(html: str, alert: Alert) -> int:
    return html.count(f'formaction="/desk/alerts/{alert.id}/escalate"')


def test_a_nurse_escalates_an_alert_with_a_note_and_on_call_is_notified(
    app: FastAPI, session: Session, home: Institution
) -> None:
    alert = _alert(session, home)
    nurse = new_user(Role.NURSE, home)
    doctor = new_user(Role.CLINICIAN, home)
    with web_client(app, nurse) as client:
        client.cookies.update(EN)
        page = client.get("/desk")
        assert _escalate_buttons(page.text, alert) == 1
        done = client.post(
            f"/desk/alerts/{alert.id}/escalate",
            data={"note": "血压持续升高，请医生查看", "csrf_token": csrf(client)},
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text
        after = client.get("/desk")
        assert "Alert escalated; the on-call clinicians are notified." in after.text
        assert _escalate_buttons(after.text, alert) == 0  # already escalated
        assert "Escalated" in after.text
    session.refresh(alert)
    assert alert.status is AlertStatus.ESCALATED
    assert alert.escalated_by == nurse.id and alert.escalated_at is not None
    assert alert.note == "血压持续升高，请医生查看"
    notices = [
        json.loads(j.payload)
        for j in session.scalars(select(Job)).all()
        if json.loads(j.payload).get("kind") == "monitoring.alert.escalated"
    ]
    assert len(notices) == 1 and str(doctor.id) in notices[0]["user_ids"]


def test_an_acknowledged_alert_can_still_be_escalated_in_chinese(
    app: FastAPI, session: Session, home: Institution
) -> None:
    alert = _alert(session, home)
    with web_client(app, new_user(Role.NURSE, home)) as client:
        token = csrf(client)
        ack = client.post(f"/desk/alerts/{alert.id}/acknowledge", data={"csrf_token": token})
        assert ack.status_code == 200
        assert _escalate_buttons(ack.text, alert) == 1
        assert "升级" in ack.text
        done = client.post(f"/desk/alerts/{alert.id}/escalate", data={"csrf_token": token})
        assert done.status_code == 200
        assert "告警已升级" in done.text
    session.refresh(alert)
    assert alert.status is AlertStatus.ESCALATED


def test_a_resolved_alert_cannot_be_escalated(
    app: FastAPI, session: Session, home: Institution
) -> None:
    alert = _alert(session, home)
    with web_client(app, new_user(Role.NURSE, home)) as client:
        token = csrf(client)
        client.post(f"/desk/alerts/{alert.id}/resolve", data={"csrf_token": token})
        refused = client.post(f"/desk/alerts/{alert.id}/escalate", data={"csrf_token": token})
    assert refused.status_code == 409
    # The resolved alert is off the desk: the refusal is said at the top of the page.
    assert '<div class="form-error field-error" role="alert">' in refused.text
    assert "cannot be escalated" in refused.text
    session.refresh(alert)
    assert alert.status is AlertStatus.RESOLVED and alert.escalated_at is None


def test_escalating_needs_the_write_permission_and_the_token(
    app: FastAPI, session: Session, home: Institution
) -> None:
    alert = _alert(session, home)
    with web_client(app, new_user(Role.NURSE, home)) as client:
        assert client.post(f"/desk/alerts/{alert.id}/escalate", data={}).status_code == 403
    with web_client(app, new_user(Role.RESEARCHER, home)) as client:
        refused = client.post(
            f"/desk/alerts/{alert.id}/escalate", data={"csrf_token": csrf(client)}
        )
        assert refused.status_code == 403
    session.refresh(alert)
    assert alert.status is AlertStatus.OPEN
