"""Account management over the JSON API: scope, separation of duties, lockout, self-service.

Who may call the routes at all is covered by the access matrix; these tests check the
scope rules inside them (own institution, alliance-only roles, oneself).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from medalliance.access import passwords
from medalliance.access.models import User
from medalliance.config import Settings
from medalliance.domains.alliance.models import Institution, Tier
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role
from tests.api.access_matrix import (
    assert_problem,
    audit_events,
    build_app_once,
    error_fields,
    fingerprint,
    rebind,
    row_count,
    unique,
    use_cheap_argon2,
)
from tests.factories.access import UserFactory
from tests.factories.alliance import AllianceFactory, InstitutionFactory, PractitionerFactory

PASSWORD = "a-long-enough-password"


@pytest.fixture(scope="module")
def module_app(database_url: str) -> FastAPI:
    return build_app_once(database_url)


@pytest.fixture
def app(
    module_app: FastAPI,
    settings: Settings,
    session_factory: sessionmaker[Session],
    session: Session,
) -> FastAPI:
    return rebind(module_app, settings, session_factory)


@pytest.fixture(autouse=True)
def _cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    use_cheap_argon2(monkeypatch)


@dataclass
class World:
    home: Institution
    other: Institution
    alliance_admin: User
    home_admin: User
    other_admin: User
    as_actor: Callable[[User], Actor]
    headers: Callable[[Actor], dict[str, str]]

    def h(self, user: User) -> dict[str, str]:
        return self.headers(self.as_actor(user))


@pytest.fixture
def world(
    session: Session,
    make_actor: Callable[..., Actor],
    auth_headers: Callable[[Actor], dict[str, str]],
) -> World:
    """Real account rows for the actors: the service reads the acting user's own row
    (you cannot deactivate yourself) and the target rows."""
    alliance = AllianceFactory()
    home = InstitutionFactory(alliance=alliance, tier=Tier.LEAD)
    other = InstitutionFactory(alliance=alliance, tier=Tier.PRIMARY)
    institutions = {home.id: home, other.id: other}

    def as_actor(user: User) -> Actor:
        institution = institutions.get(user.institution_id) if user.institution_id else None
        return make_actor(
            user.role, institution=institution, user_id=user.id, username=user.username
        )

    return World(
        home=home,
        other=other,
        alliance_admin=UserFactory(role=Role.ALLIANCE_ADMIN, institution=home, institution_id=None),
        home_admin=UserFactory(role=Role.INSTITUTION_ADMIN, institution=home),
        other_admin=UserFactory(role=Role.INSTITUTION_ADMIN, institution=other),
        as_actor=as_actor,
        headers=auth_headers,
    )


def _new_user(
    institution: Institution | None, role: str = "clinician", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "username": unique("user."),
        "password": PASSWORD,
        "role": role,
        "display_name": "张护士",
    }
    if institution is not None:
        body["institution_code"] = institution.code
    body.update(extra)
    return body


def _stored(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


# --- create ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["home", "other"])
def test_the_alliance_admin_creates_accounts_in_any_institution(
    client: TestClient, session: Session, world: World, where: str
) -> None:
    institution = world.home if where == "home" else world.other
    body = _new_user(institution, role="institution_admin")

    response = client.post("/api/users", json=body, headers=world.h(world.alliance_admin))

    assert response.status_code == 201, response.text
    created = response.json()
    assert created["username"] == body["username"]
    assert created["institution_id"] == str(institution.id)
    assert created["role"] == "institution_admin"
    assert created["active"] is True and created["locked_until"] is None
    assert not {"password", "password_hash"} & created.keys()
    row = _stored(session, body["username"])
    assert row is not None
    assert row.password_hash != PASSWORD
    assert passwords.verify_password(row.password_hash, PASSWORD)
    events = audit_events(session, action="create", resource_type="User", resource_id=row.id)
    assert len(events) == 1
    assert events[0].actor_user_id == world.alliance_admin.id
    assert json.loads(events[0].detail) == {
        "username": body["username"],
        "role": "institution_admin",
    }
    assert PASSWORD not in events[0].detail


@pytest.mark.parametrize("role", ["alliance_admin", "auditor"])
def test_the_alliance_admin_creates_alliance_wide_accounts(
    client: TestClient, session: Session, world: World, role: str
) -> None:
    body = _new_user(None, role=role)
    response = client.post("/api/users", json=body, headers=world.h(world.alliance_admin))
    assert response.status_code == 201, response.text
    assert response.json()["institution_id"] is None


def test_an_institution_admin_creates_accounts_only_in_their_own_institution(
    client: TestClient, session: Session, world: World
) -> None:
    own = _new_user(world.home, role="nurse")
    created = client.post("/api/users", json=own, headers=world.h(world.home_admin))
    assert created.status_code == 201, created.text
    assert created.json()["institution_id"] == str(world.home.id)

    before = fingerprint(session)
    foreign = _new_user(world.other)
    refused = client.post("/api/users", json=foreign, headers=world.h(world.home_admin))
    assert "own institution" in assert_problem(refused, 403, "permission-denied")["detail"]
    assert _stored(session, foreign["username"]) is None
    assert fingerprint(session) == before


@pytest.mark.parametrize("role", ["alliance_admin", "auditor"])
@pytest.mark.parametrize("with_institution", [True, False])
def test_an_institution_admin_cannot_grant_alliance_only_roles(
    client: TestClient, session: Session, world: World, role: str, with_institution: bool
) -> None:
    before = fingerprint(session)
    body = _new_user(world.home if with_institution else None, role=role)

    response = client.post("/api/users", json=body, headers=world.h(world.home_admin))

    assert_problem(response, 403, "permission-denied")
    assert _stored(session, body["username"]) is None
    assert fingerprint(session) == before


@pytest.mark.parametrize("password", ["Tiny-pw1", "123456789", " " * 12])
def test_a_weak_password_is_a_422(
    client: TestClient, session: Session, world: World, password: str
) -> None:
    count = row_count(session, User)
    body = _new_user(world.home, password=password)

    response = client.post("/api/users", json=body, headers=world.h(world.alliance_admin))

    problem = assert_problem(response, 422, "validation-error")
    assert "password" in error_fields(problem)
    if password.strip():
        assert password not in response.text, "a problem document must not echo a password"
    assert row_count(session, User) == count


def test_a_duplicate_username_is_a_409(client: TestClient, session: Session, world: World) -> None:
    existing = UserFactory(institution=world.home)
    count = row_count(session, User)

    response = client.post(
        "/api/users",
        json=_new_user(world.home, username=existing.username),
        headers=world.h(world.alliance_admin),
    )

    problem = assert_problem(response, 409, "conflict")
    assert error_fields(problem) == {"username"}
    assert row_count(session, User) == count


def test_an_institution_account_needs_an_existing_institution(
    client: TestClient, session: Session, world: World
) -> None:
    count = row_count(session, User)
    headers = world.h(world.alliance_admin)

    missing = client.post("/api/users", json=_new_user(None, role="clinician"), headers=headers)
    unknown = client.post(
        "/api/users", json=_new_user(None, institution_code="NO-SUCH"), headers=headers
    )

    assert error_fields(assert_problem(missing, 422, "invalid-input")) == {"institution_code"}
    assert error_fields(assert_problem(unknown, 422, "invalid-input")) == {"institution_code"}
    assert row_count(session, User) == count


def test_a_linked_practitioner_must_work_at_the_accounts_institution(
    client: TestClient, session: Session, world: World
) -> None:
    elsewhere = PractitionerFactory(institution=world.other)
    here = PractitionerFactory(institution=world.home)
    headers = world.h(world.home_admin)

    refused = client.post(
        "/api/users",
        json=_new_user(world.home, practitioner_id=str(elsewhere.id)),
        headers=headers,
    )
    linked = client.post(
        "/api/users", json=_new_user(world.home, practitioner_id=str(here.id)), headers=headers
    )

    assert error_fields(assert_problem(refused, 422)) == {"practitioner_id"}
    assert linked.status_code == 201, linked.text
    assert linked.json()["practitioner_id"] == str(here.id)


# --- read and list -------------------------------------------------------------------------


def test_an_institution_admin_lists_only_their_own_institutions_accounts(
    client: TestClient, session: Session, world: World
) -> None:
    home_nurse = UserFactory(role=Role.NURSE, institution=world.home)
    other_nurse = UserFactory(role=Role.NURSE, institution=world.other)

    own = client.get("/api/users", headers=world.h(world.home_admin))
    probing = client.get(
        "/api/users", params={"institution": world.other.code}, headers=world.h(world.home_admin)
    )
    everyone = client.get(
        "/api/users", params={"role": "nurse"}, headers=world.h(world.alliance_admin)
    )

    assert own.status_code == 200
    own_ids = {u["id"] for u in own.json()}
    assert {str(home_nurse.id), str(world.home_admin.id)} <= own_ids
    assert str(other_nurse.id) not in own_ids
    assert {u["institution_id"] for u in own.json()} == {str(world.home.id)}
    assert own.headers["X-Total-Count"] == str(len(own.json()))
    assert probing.status_code == 200 and probing.json() == []
    assert probing.headers["X-Total-Count"] == "0"
    assert {str(home_nurse.id), str(other_nurse.id)} <= {u["id"] for u in everyone.json()}
    assert {u["role"] for u in everyone.json()} == {"nurse"}
    assert all("password_hash" not in u for u in everyone.json())


def test_reading_an_account_is_audited(client: TestClient, session: Session, world: World) -> None:
    nurse = UserFactory(role=Role.NURSE, institution=world.home)

    response = client.get(f"/api/users/{nurse.id}", headers=world.h(world.home_admin))

    assert response.status_code == 200
    assert response.json()["username"] == nurse.username
    events = audit_events(session, action="read", resource_type="User", resource_id=nurse.id)
    assert [e.actor_user_id for e in events] == [world.home_admin.id]


# --- update ------------------------------------------------------------------------------


def test_unlock_clears_a_lockout(client: TestClient, session: Session, world: World) -> None:
    locked = UserFactory(
        institution=world.home, failed_logins=3, locked_until=utcnow() + timedelta(minutes=10)
    )

    response = client.patch(
        f"/api/users/{locked.id}", json={"unlock": True}, headers=world.h(world.home_admin)
    )

    assert response.status_code == 200, response.text
    assert response.json()["locked_until"] is None
    session.refresh(locked)
    assert (locked.locked_until, locked.failed_logins) == (None, 0)
    events = audit_events(session, action="update", resource_type="User", resource_id=locked.id)
    assert len(events) == 1
    assert json.loads(events[0].detail) == {"unlock": "True"}


def test_a_password_reset_is_stored_hashed_and_audited_without_the_password(
    client: TestClient, session: Session, world: World
) -> None:
    user = UserFactory(institution=world.home)
    old_hash = user.password_hash
    new_password = "another-long-password"

    response = client.patch(
        f"/api/users/{user.id}", json={"password": new_password}, headers=world.h(world.home_admin)
    )

    assert response.status_code == 200, response.text
    session.refresh(user)
    assert user.password_hash != old_hash
    assert passwords.verify_password(user.password_hash, new_password)
    (event,) = audit_events(session, action="update", resource_type="User", resource_id=user.id)
    assert json.loads(event.detail) == {"password": "changed"}
    assert new_password not in event.detail


@pytest.mark.parametrize("change", [{"active": False}, {"role": "clinician"}])
def test_an_admin_cannot_deactivate_themself_or_change_their_own_role(
    client: TestClient, session: Session, world: World, change: dict[str, Any]
) -> None:
    admin = world.home_admin
    before = fingerprint(session)

    response = client.patch(f"/api/users/{admin.id}", json=change, headers=world.h(admin))

    assert "yourself" in assert_problem(response, 403, "permission-denied")["detail"]
    assert fingerprint(session) == before
    session.refresh(admin)
    assert admin.active is True and admin.role is Role.INSTITUTION_ADMIN


def test_an_admin_may_still_rename_themself(client: TestClient, world: World) -> None:
    admin = world.home_admin
    response = client.patch(
        f"/api/users/{admin.id}", json={"display_name": "王主任"}, headers=world.h(admin)
    )
    assert response.status_code == 200, response.text
    assert response.json()["display_name"] == "王主任"


def test_an_admin_deactivates_another_account(
    client: TestClient, session: Session, world: World
) -> None:
    nurse = UserFactory(role=Role.NURSE, institution=world.home)
    response = client.patch(
        f"/api/users/{nurse.id}", json={"active": False}, headers=world.h(world.home_admin)
    )
    assert response.status_code == 200, response.text
    session.refresh(nurse)
    assert nurse.active is False


@pytest.mark.parametrize("role", ["alliance_admin", "auditor"])
def test_an_institution_admin_cannot_promote_to_alliance_only_roles(
    client: TestClient, session: Session, world: World, role: str
) -> None:
    nurse = UserFactory(role=Role.NURSE, institution=world.home)
    before = fingerprint(session)

    response = client.patch(
        f"/api/users/{nurse.id}", json={"role": role}, headers=world.h(world.home_admin)
    )

    assert_problem(response, 403, "permission-denied")
    assert fingerprint(session) == before


def test_an_institution_admin_cannot_touch_an_alliance_admin_of_their_institution(
    client: TestClient, session: Session, world: World
) -> None:
    """Alliance-wide accounts may carry an institution; they stay out of local admins' reach."""
    alliance_admin_here = UserFactory(role=Role.ALLIANCE_ADMIN, institution=world.home)
    before = fingerprint(session)

    for change in ({"active": False}, {"unlock": True}, {"password": "a-takeover-password"}):
        response = client.patch(
            f"/api/users/{alliance_admin_here.id}", json=change, headers=world.h(world.home_admin)
        )
        assert_problem(response, 403, "permission-denied")
    assert fingerprint(session) == before


def test_another_institutions_admin_cannot_unlock_or_reset(
    client: TestClient, session: Session, world: World
) -> None:
    locked = UserFactory(institution=world.home, locked_until=utcnow() + timedelta(minutes=10))
    before = fingerprint(session)

    for change in ({"unlock": True}, {"password": "a-takeover-password"}):
        response = client.patch(
            f"/api/users/{locked.id}", json=change, headers=world.h(world.other_admin)
        )
        assert_problem(response, 403, "permission-denied")
    assert fingerprint(session) == before


@pytest.mark.parametrize("field", ["display_name", "role", "active", "password"])
def test_nulling_a_required_account_field_is_a_422_not_a_500(
    client: TestClient, session: Session, world: World, field: str
) -> None:
    nurse = UserFactory(role=Role.NURSE, institution=world.home)
    before = fingerprint(session)

    response = client.patch(
        f"/api/users/{nurse.id}", json={field: None}, headers=world.h(world.alliance_admin)
    )

    assert field in error_fields(assert_problem(response, 422, "validation-error"))
    assert fingerprint(session) == before


def test_an_unknown_account_is_a_404(client: TestClient, world: World) -> None:
    missing = "01a20000-0000-7000-8000-000000000000"
    for method in ("GET", "PATCH"):
        response = client.request(
            method,
            f"/api/users/{missing}",
            json={"display_name": "x"} if method == "PATCH" else None,
            headers=world.h(world.alliance_admin),
        )
        assert_problem(response, 404, "not-found")
