"""Administration: edit, deactivate and reactivate member institutions and departments
through the alliance service; a deactivated one is no longer offered (nor accepted)
where something new is assigned to it."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.access.models import User
from medalliance.audit.models import AuditEvent
from medalliance.domains.alliance.models import (
    Bed,
    BedStatus,
    Department,
    Discipline,
    Institution,
    InstitutionType,
    Practitioner,
    Tier,
)
from medalliance.kernel.roles import Role
from tests.factories.alliance import BedFactory, DepartmentFactory, InstitutionFactory
from tests.web.clinical_helpers import count, csrf, new_user, web_client

EN = {"ma_lang": "en"}


@pytest.fixture
def home(session: Session) -> Institution:
    institution: Institution = InstitutionFactory(tier=Tier.LEAD)
    return institution


@pytest.fixture
def member(session: Session, home: Institution) -> Institution:
    institution: Institution = InstitutionFactory(
        alliance_id=home.alliance_id, tier=Tier.PRIMARY, lead_institution_id=home.id
    )
    return institution


def _events(session: Session, action: str, resource_id: object) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == action, AuditEvent.resource_id == str(resource_id)
            )
        ).all()
    )


# --- institutions ----------------------------------------------------------------------


def test_alliance_admin_edits_an_institution_and_only_real_changes_are_audited(
    app: FastAPI, session: Session, home: Institution, member: Institution
) -> None:
    other_lead: Institution = InstitutionFactory(alliance_id=home.alliance_id, tier=Tier.LEAD)
    with web_client(app, new_user(Role.ALLIANCE_ADMIN, home)) as client:
        page = client.get(f"/admin/institutions/{member.code}/edit")
        assert page.status_code == 200, page.text
        assert 'name="tier"' in page.text and 'list="active-institutions"' in page.text
        assert f'<option value="{other_lead.code}">' in page.text
        saved = client.post(
            f"/admin/institutions/{member.code}/edit",
            data={
                "name_zh": "新名称社区卫生服务中心",
                "name_en": member.name_en,
                "tier": "secondary",
                "type": "community_health_centre",
                "district": "",
                "address": "",
                "lead_institution_code": other_lead.code,
                "csrf_token": csrf(client),
            },
            follow_redirects=False,
        )
        assert saved.status_code == 303, saved.text
        assert saved.headers["location"] == f"/admin/institutions/{member.code}"
        assert "机构信息已保存。" in client.get(saved.headers["location"]).text
    session.refresh(member)
    assert member.name_zh == "新名称社区卫生服务中心"
    assert member.tier is Tier.SECONDARY
    assert member.type is InstitutionType.COMMUNITY_HEALTH_CENTRE
    assert member.district is None  # emptied: cleared
    assert member.lead_institution_id == other_lead.id
    [event] = _events(session, "update", member.id)
    changes = json.loads(event.detail)["changes"]
    assert set(changes) == {"name_zh", "tier", "type", "district", "lead_institution_code"}


def test_an_emptied_name_is_a_field_error_and_nothing_changes(
    app: FastAPI, session: Session, home: Institution
) -> None:
    with web_client(app, new_user(Role.ALLIANCE_ADMIN, home)) as client:
        refused = client.post(
            f"/admin/institutions/{home.code}/edit",
            data={"name_zh": "", "name_en": "Renamed", "csrf_token": csrf(client)},
        )
    assert refused.status_code == 422
    assert 'id="e-name_zh"' in refused.text and "此项为必填项。" in refused.text
    session.refresh(home)
    assert home.name_en != "Renamed"
    assert _events(session, "update", home.id) == []


def test_a_deactivated_lead_is_refused_beside_its_field(
    app: FastAPI, session: Session, home: Institution, member: Institution
) -> None:
    closed: Institution = InstitutionFactory(alliance_id=home.alliance_id, active=False)
    with web_client(app, new_user(Role.ALLIANCE_ADMIN, home)) as client:
        page = client.get(f"/admin/institutions/{member.code}/edit")
        assert f'<option value="{closed.code}">' not in page.text  # not offered
        refused = client.post(
            f"/admin/institutions/{member.code}/edit",
            data={"lead_institution_code": closed.code, "csrf_token": csrf(client)},
        )
    assert refused.status_code == 422
    assert 'id="e-lead_institution_code"' in refused.text
    assert f"机构 {closed.code} 已停用" in refused.text
    session.refresh(member)
    assert member.lead_institution_id == home.id


def test_an_institution_admin_edits_names_only_and_only_their_own(
    app: FastAPI, session: Session, home: Institution, member: Institution
) -> None:
    with web_client(app, new_user(Role.INSTITUTION_ADMIN, member)) as client:
        client.cookies.update(EN)
        page = client.get(f"/admin/institutions/{member.code}/edit")
        assert page.status_code == 200
        assert 'name="tier"' not in page.text and 'id="institution-status"' not in page.text
        assert "Only an alliance administrator may change" in page.text
        saved = client.post(
            f"/admin/institutions/{member.code}/edit",
            data={
                "name_en": "Renamed Centre",
                "tier": "lead",  # not on the form: ignored, never applied
                "csrf_token": csrf(client),
            },
            follow_redirects=False,
        )
        assert saved.status_code == 303, saved.text
        assert client.get(f"/admin/institutions/{home.code}/edit").status_code == 403
        other = client.post(
            f"/admin/institutions/{home.code}/edit",
            data={"name_en": "Hijacked", "csrf_token": csrf(client)},
        )
        assert other.status_code == 403
        status = client.post(
            f"/admin/institutions/{member.code}/status",
            data={"action": "deactivate", "csrf_token": csrf(client)},
        )
        assert status.status_code == 403
    session.refresh(member)
    session.refresh(home)
    assert member.name_en == "Renamed Centre" and member.tier is Tier.PRIMARY
    assert member.active is True and home.name_en != "Hijacked"


def test_deactivated_institution_is_not_offered_and_takes_nothing_new(
    app: FastAPI, session: Session, home: Institution, member: Institution
) -> None:
    with web_client(app, new_user(Role.ALLIANCE_ADMIN, home)) as client:
        client.cookies.update(EN)
        done = client.post(
            f"/admin/institutions/{member.code}/status",
            data={"action": "deactivate", "csrf_token": csrf(client)},
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text
        page = client.get(f"/admin/institutions/{member.code}")
        assert "Institution deactivated." in page.text
        assert "This institution is deactivated" in page.text
        assert 'id="new-department"' not in page.text and 'id="new-practitioner"' not in page.text
        accounts = client.get("/admin/accounts")
        assert f'<option value="{home.code}">' in accounts.text
        assert f'<option value="{member.code}">' not in accounts.text
        new_inst = client.get("/admin/institutions")
        assert f'<option value="{member.code}">' not in new_inst.text
        token = csrf(client)
        department = client.post(
            f"/admin/institutions/{member.code}/departments",
            data={
                "dept.code": "IM",
                "dept.name_zh": "内科",
                "dept.name_en": "Internal",
                "dept.discipline": "western",
                "csrf_token": token,
            },
        )
        assert department.status_code == 422
        assert f"Institution {member.code} is deactivated" in department.text
        practitioner = client.post(
            f"/admin/institutions/{member.code}/practitioners",
            data={
                "prac.name": "王医生",
                "prac.title": "attending_physician",
                "prac.discipline": "western",
                "prac.licence_number": "110300000009999",
                "csrf_token": token,
            },
        )
        assert practitioner.status_code == 422
        account = client.post(
            "/admin/accounts",
            data={
                "username": "dr.closed",
                "password": "x" * 16,
                "role": "clinician",
                "institution_code": member.code,
                "csrf_token": token,
            },
        )
        assert account.status_code == 422
        assert f"Institution {member.code} is deactivated" in account.text
    session.refresh(member)
    assert member.active is False
    assert count(session, Department, Department.institution_id == member.id) == 0
    assert count(session, Practitioner, Practitioner.institution_id == member.id) == 0
    assert count(session, User, User.username == "dr.closed") == 0
    [event] = _events(session, "deactivate", member.id)
    assert event.outcome == "success"


def test_reactivating_brings_the_forms_back(
    app: FastAPI, session: Session, home: Institution
) -> None:
    closed: Institution = InstitutionFactory(alliance_id=home.alliance_id, active=False)
    with web_client(app, new_user(Role.ALLIANCE_ADMIN, home)) as client:
        page = client.get(f"/admin/institutions/{closed.code}/edit")
        assert "重新启用机构" in page.text
        done = client.post(
            f"/admin/institutions/{closed.code}/status",
            data={"action": "reactivate", "csrf_token": csrf(client)},
            follow_redirects=False,
        )
        assert done.status_code == 303
        assert 'id="new-department"' in client.get(f"/admin/institutions/{closed.code}").text
        again = client.post(
            f"/admin/institutions/{closed.code}/status",
            data={"action": "reactivate", "csrf_token": csrf(client)},
        )
        assert again.status_code == 409 and "已处于启用状态。" in again.text
    session.refresh(closed)
    assert closed.active is True
    assert len(_events(session, "reactivate", closed.id)) == 1


def test_a_lead_of_active_members_cannot_be_deactivated(
    app: FastAPI, session: Session, home: Institution, member: Institution
) -> None:
    with web_client(app, new_user(Role.ALLIANCE_ADMIN, home)) as client:
        refused = client.post(
            f"/admin/institutions/{home.code}/status",
            data={"action": "deactivate", "csrf_token": csrf(client)},
        )
        bogus = client.post(
            f"/admin/institutions/{home.code}/status",
            data={"action": "delete", "csrf_token": csrf(client)},
        )
    assert refused.status_code == 409
    assert f"该机构仍是在用成员机构（{member.code}）的牵头机构" in refused.text
    assert bogus.status_code == 422
    session.refresh(home)
    assert home.active is True
    assert _events(session, "deactivate", home.id) == []


# --- departments ----------------------------------------------------------------------


def test_institution_admin_edits_and_deactivates_a_department(
    app: FastAPI, session: Session, home: Institution
) -> None:
    kept: Department = DepartmentFactory(institution_id=home.id, code="KEPT")
    closing: Department = DepartmentFactory(institution_id=home.id, code="GONE")
    with web_client(app, new_user(Role.INSTITUTION_ADMIN, home)) as client:
        client.cookies.update(EN)
        saved = client.post(
            f"/admin/departments/{closing.id}/edit",
            data={
                "name_zh": "老年科",
                "name_en": "Geriatrics",
                "discipline": "integrated",
                "csrf_token": csrf(client),
            },
            follow_redirects=False,
        )
        assert saved.status_code == 303, saved.text
        done = client.post(
            f"/admin/departments/{closing.id}/status",
            data={"action": "deactivate", "csrf_token": csrf(client)},
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text
        page = client.get(f"/admin/institutions/{home.code}")
        assert "Department deactivated." in page.text
        # The practitioner form offers the active department only.
        form = page.text.split('id="new-practitioner"', 1)[1]
        assert f'value="{kept.id}"' in form and f'value="{closing.id}"' not in form
        beds = client.get(f"/admin/departments/{closing.id}/beds")
        assert 'id="new-bed"' not in beds.text and "This department is deactivated" in beds.text
        token = csrf(client)
        practitioner = client.post(
            f"/admin/institutions/{home.code}/practitioners",
            data={
                "prac.name": "李医生",
                "prac.title": "attending_physician",
                "prac.discipline": "western",
                "prac.department_id": str(closing.id),
                "prac.licence_number": "110300000008888",
                "csrf_token": token,
            },
        )
        assert practitioner.status_code == 422
        assert "Department GONE is deactivated" in practitioner.text
        bed = client.post(
            f"/admin/departments/{closing.id}/beds", data={"code": "G-1", "csrf_token": token}
        )
        assert bed.status_code == 422
    session.refresh(closing)
    assert closing.name_en == "Geriatrics" and closing.discipline is Discipline.INTEGRATED
    assert closing.active is False
    assert count(session, Practitioner, Practitioner.licence_number == "110300000008888") == 0
    assert count(session, Bed, Bed.department_id == closing.id) == 0
    assert len(_events(session, "deactivate", closing.id)) == 1


def test_a_department_with_an_occupied_bed_stays_open(
    app: FastAPI, session: Session, home: Institution
) -> None:
    ward: Department = DepartmentFactory(institution_id=home.id)
    BedFactory(department_id=ward.id, status=BedStatus.OCCUPIED)
    with web_client(app, new_user(Role.INSTITUTION_ADMIN, home)) as client:
        refused = client.post(
            f"/admin/departments/{ward.id}/status",
            data={"action": "deactivate", "csrf_token": csrf(client)},
        )
    assert refused.status_code == 409
    assert "该科室仍有占用床位（1 张）" in refused.text
    session.refresh(ward)
    assert ward.active is True


def test_a_department_of_a_deactivated_institution_cannot_be_reactivated(
    app: FastAPI, session: Session, home: Institution
) -> None:
    closed: Institution = InstitutionFactory(alliance_id=home.alliance_id, active=False)
    ward: Department = DepartmentFactory(institution_id=closed.id, active=False)
    with web_client(app, new_user(Role.ALLIANCE_ADMIN, home)) as client:
        refused = client.post(
            f"/admin/departments/{ward.id}/status",
            data={"action": "reactivate", "csrf_token": csrf(client)},
        )
    assert refused.status_code == 409
    assert f"机构 {closed.code}" in refused.text or closed.code in refused.text
    session.refresh(ward)
    assert ward.active is False


def test_another_institutions_admin_cannot_touch_a_department(
    app: FastAPI, session: Session, home: Institution, member: Institution
) -> None:
    ward: Department = DepartmentFactory(institution_id=home.id)
    with web_client(app, new_user(Role.INSTITUTION_ADMIN, member)) as client:
        assert client.get(f"/admin/departments/{ward.id}/edit").status_code == 403
        edit = client.post(
            f"/admin/departments/{ward.id}/edit",
            data={"name_en": "Hijacked", "csrf_token": csrf(client)},
        )
        status = client.post(
            f"/admin/departments/{ward.id}/status",
            data={"action": "deactivate", "csrf_token": csrf(client)},
        )
    assert edit.status_code == 403 and status.status_code == 403
    session.refresh(ward)
    assert ward.name_en != "Hijacked" and ward.active is True
