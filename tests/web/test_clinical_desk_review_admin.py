"""The monitoring desk, the MPI review queue and administration without a browser:
permissions (403 page), CSRF, field errors and that a refused form changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.access.models import User
from medalliance.domains.alliance.models import Bed, BedStatus, Department, Institution
from medalliance.domains.monitoring import jobs as monitoring_jobs
from medalliance.domains.monitoring.models import Alert, AlertStatus
from medalliance.domains.patients.mpi.models import ReviewItem, ReviewStatus
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role
from tests.factories.alliance import AllianceFactory, InstitutionFactory
from tests.factories.monitoring import assign, make_device, make_gateway
from tests.factories.patients import make_patient
from tests.web.clinical_helpers import count, csrf, new_user, web_client

EN = {"ma_lang": "en"}


@pytest.fixture
def home(session: Session) -> Institution:
    institution: Institution = InstitutionFactory()
    return institution


def _silent_patient_alert(session: Session, home: Institution) -> Alert:
    _, record = make_patient(home, given_name="静")
    device = make_device(make_gateway(home))
    assign(device, record, start=utcnow() - timedelta(days=10))
    [alert_id] = monitoring_jobs.check_silent_patients(session)
    alert = session.get(Alert, alert_id)
    assert alert is not None
    return alert


def test_the_desk_lists_the_alert_and_a_nurse_acknowledges_it_with_a_note(
    app: FastAPI, session: Session, home: Institution
) -> None:
    alert = _silent_patient_alert(session, home)
    nurse = new_user(Role.NURSE, home)
    with web_client(app, nurse) as client:
        client.cookies.update(EN)
        page = client.get("/desk")
        assert page.status_code == 200, page.text
        assert f'data-alert="{alert.id}"' in page.text
        assert "No readings" in page.text
        assert "/static/vendor/echarts/echarts.min.js" in page.text
        panel = client.get("/desk", headers={"HX-Request": "true"})
        assert panel.status_code == 200 and "<html" not in panel.text
        done = client.post(
            f"/desk/alerts/{alert.id}/acknowledge",
            data={"note": "已电话联系患者", "csrf_token": csrf(client)},
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text
    session.refresh(alert)
    assert alert.status is AlertStatus.ACKNOWLEDGED and alert.note == "已电话联系患者"


def test_acknowledging_twice_is_a_conflict_shown_on_the_desk(
    app: FastAPI, session: Session, home: Institution
) -> None:
    alert = _silent_patient_alert(session, home)
    nurse = new_user(Role.NURSE, home)
    with web_client(app, nurse) as client:
        data = {"csrf_token": csrf(client)}
        assert client.post(f"/desk/alerts/{alert.id}/acknowledge", data=data).status_code == 200
        again = client.post(f"/desk/alerts/{alert.id}/acknowledge", data=data)
    assert again.status_code == 409
    assert 'class="field-error"' in again.text


def test_the_desk_refuses_without_csrf_and_for_a_researcher(
    app: FastAPI, session: Session, home: Institution
) -> None:
    alert = _silent_patient_alert(session, home)
    with web_client(app, new_user(Role.NURSE, home)) as client:
        assert client.post(f"/desk/alerts/{alert.id}/resolve", data={}).status_code == 403
    with web_client(app, new_user(Role.RESEARCHER, home)) as client:
        assert client.get("/desk").status_code == 403
        refused = client.post(f"/desk/alerts/{alert.id}/resolve", data={"csrf_token": csrf(client)})
        assert refused.status_code == 403
    session.refresh(alert)
    assert alert.status is AlertStatus.OPEN


# --- MPI review ------------------------------------------------------------------------


def _review_pair(session: Session) -> tuple[Institution, ReviewItem]:
    from medalliance.domains.patients import service as patients_service
    from medalliance.domains.patients.schemas import PatientCreate
    from tests.web.clinical_helpers import actor_of

    alliance = AllianceFactory()
    a, b = InstitutionFactory(alliance=alliance), InstitutionFactory(alliance=alliance)
    base = {
        "family_name": "欧阳",
        "given_name": "娜娜",
        "sex": "female",
        "birth_date": "1975-03-08",
        "phones": ["13812345678"],
        "city": "清河市",
        "district": "东城区",
        "street": "和平街12号",
        "postcode": "330102",
    }
    patients_service.register(
        session=session,
        actor=actor_of(new_user(Role.NURSE, a), a),
        data=PatientCreate.model_validate(base),
    )
    moved = {
        **base,
        "birth_date": "1975-08-03",
        "phones": ["13700000001"],
        "street": "人民路5号",
        "district": "南湖区",
        "postcode": "330109",
    }
    patients_service.register(
        session=session,
        actor=actor_of(new_user(Role.NURSE, b), b),
        data=PatientCreate.model_validate(moved),
    )
    [item] = session.scalars(select(ReviewItem)).all()
    return b, item


def test_the_review_queue_shows_the_pair_side_by_side_and_links_it(
    app: FastAPI, session: Session
) -> None:
    home, item = _review_pair(session)
    with web_client(app, new_user(Role.CLINICIAN, home)) as client:
        client.cookies.update(EN)
        page = client.get("/review")
        assert page.status_code == 200, page.text
        assert f'data-item="{item.id}"' in page.text
        assert '<tr class="differs" data-field="birth_date">' in page.text
        assert '<tr class="same" data-field="name">' in page.text
        assert "typo or day/month swap" in page.text
        bad = client.post(
            f"/review/{item.id}/decision", data={"decision": "?", "csrf_token": csrf(client)}
        )
        assert bad.status_code == 422 and "link the records or keep them apart" in bad.text
        linked = client.post(
            f"/review/{item.id}/decision",
            data={"decision": "link", "note": "同一人", "csrf_token": csrf(client)},
            follow_redirects=False,
        )
        assert linked.status_code == 303, linked.text
    session.refresh(item)
    assert item.status is ReviewStatus.LINKED and item.note == "同一人"


def test_the_review_queue_needs_the_permission(app: FastAPI, session: Session) -> None:
    home, item = _review_pair(session)
    with web_client(app, new_user(Role.PHARMACIST, home)) as client:
        assert client.get("/review").status_code == 403
        refused = client.post(
            f"/review/{item.id}/decision", data={"decision": "link", "csrf_token": csrf(client)}
        )
        assert refused.status_code == 403
    session.refresh(item)
    assert item.status is ReviewStatus.OPEN


# --- administration ------------------------------------------------------------------


def test_an_institution_admin_creates_an_account_with_field_errors_first(
    app: FastAPI, session: Session, home: Institution
) -> None:
    admin = new_user(Role.INSTITUTION_ADMIN, home)
    with web_client(app, admin) as client:
        client.cookies.update(EN)
        page = client.get("/admin/accounts")
        assert page.status_code == 200, page.text
        short = client.post(
            "/admin/accounts",
            data={
                "username": "dr.zhao",
                "password": "short",
                "role": "clinician",
                "csrf_token": csrf(client),
            },
        )
        assert short.status_code == 422
        assert 'id="e-password"' in short.text
        assert count(session, User, User.username == "dr.zhao") == 0
        auditor = client.post(
            "/admin/accounts",
            data={
                "username": "aud.zhao",
                "password": "x" * 16,
                "role": "auditor",
                "csrf_token": csrf(client),
            },
        )
        assert auditor.status_code == 403  # only the alliance administrator grants it
        made = client.post(
            "/admin/accounts",
            data={
                "username": "dr.zhao",
                "password": "x" * 16,
                "role": "clinician",
                "display_name": "赵医生",
                "csrf_token": csrf(client),
            },
            follow_redirects=False,
        )
        assert made.status_code == 303, made.text
    [created] = session.scalars(select(User).where(User.username == "dr.zhao")).all()
    assert created.institution_id == home.id and created.role is Role.CLINICIAN


def test_an_admin_disables_and_unlocks_an_account(
    app: FastAPI, session: Session, home: Institution
) -> None:
    admin = new_user(Role.INSTITUTION_ADMIN, home)
    target = new_user(Role.NURSE, home)
    target.locked_until = utcnow() + timedelta(minutes=10)
    session.flush()
    with web_client(app, admin) as client:
        unlocked = client.post(
            f"/admin/accounts/{target.id}",
            data={"action": "unlock", "csrf_token": csrf(client)},
            follow_redirects=False,
        )
        assert unlocked.status_code == 303
        disabled = client.post(
            f"/admin/accounts/{target.id}",
            data={"action": "disable", "csrf_token": csrf(client)},
            follow_redirects=False,
        )
        assert disabled.status_code == 303
    session.refresh(target)
    assert target.locked_until is None and target.active is False


def test_a_clinician_cannot_manage_accounts_or_institutions(
    app: FastAPI, session: Session, home: Institution
) -> None:
    target = new_user(Role.NURSE, home)
    with web_client(app, new_user(Role.CLINICIAN, home)) as client:
        assert client.get("/admin/accounts").status_code == 403
        refused = client.post(
            f"/admin/accounts/{target.id}", data={"action": "disable", "csrf_token": csrf(client)}
        )
        assert refused.status_code == 403
        made = client.post(
            "/admin/institutions",
            data={
                "code": "NEW-1",
                "name_zh": "新",
                "name_en": "New",
                "tier": "primary",
                "type": "tcm",
                "csrf_token": csrf(client),
            },
        )
        assert made.status_code == 403
    session.refresh(target)
    assert target.active is True
    assert count(session, Institution, Institution.code == "NEW-1") == 0


def test_beds_change_status_and_a_duplicate_department_code_is_a_field_error(
    app: FastAPI, session: Session, home: Institution
) -> None:
    department = Department(
        institution_id=home.id,
        code="IM",
        name_zh="内科",
        name_en="Internal",
        discipline="western",
        active=True,
    )
    session.add(department)
    session.flush()
    bed = Bed(department_id=department.id, code="IM-01", status=BedStatus.FREE, version=1)
    session.add(bed)
    session.flush()
    with web_client(app, new_user(Role.NURSE, home)) as client:
        page = client.get(f"/admin/departments/{department.id}/beds")
        assert page.status_code == 200 and 'data-bed="IM-01"' in page.text
        changed = client.post(
            f"/admin/beds/{bed.id}/status",
            data={
                "status": "occupied",
                "expected_version": "1",
                "department_id": str(department.id),
                "csrf_token": csrf(client),
            },
            follow_redirects=False,
        )
        assert changed.status_code == 303, changed.text
        stale = client.post(
            f"/admin/beds/{bed.id}/status",
            data={
                "status": "free",
                "expected_version": "1",
                "department_id": str(department.id),
                "csrf_token": csrf(client),
            },
        )
        assert stale.status_code == 409
    session.refresh(bed)
    assert bed.status is BedStatus.OCCUPIED and bed.version == 2
    with web_client(app, new_user(Role.INSTITUTION_ADMIN, home)) as client:
        client.cookies.update(EN)
        again = client.post(
            f"/admin/institutions/{home.code}/departments",
            data={
                "dept.code": "IM",
                "dept.name_zh": "内科二",
                "dept.name_en": "Internal 2",
                "dept.discipline": "western",
                "csrf_token": csrf(client),
            },
        )
        assert again.status_code == 409
        assert 'class="field-error"' in again.text or 'class="form-error"' in again.text
    assert count(session, Department, Department.institution_id == home.id) == 1
