"""Deny by default: every JSON API route, every kind of actor (see tests/api/access_matrix.py).

A new route fails ``test_every_api_route_declares_access_once_and_is_in_the_matrix``
until it has one entry in ``ROUTES`` below.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from medalliance.access import policy, tokens
from medalliance.access.models import BreakGlassGrant, RefreshToken
from medalliance.access.permissions import Permission
from medalliance.api.deps import authenticated, public
from medalliance.config import Settings
from medalliance.jobs.models import Job, JobStatus, Notification
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role
from tests.api.access_matrix import (
    AUTHENTICATED,
    PUBLIC,
    Call,
    Case,
    Harness,
    MatrixContext,
    RouteSpec,
    api_routes,
    assert_unchanged,
    audit_events,
    build_app_once,
    fingerprint,
    make_user,
    matrix_cases,
    rebind,
    run_case,
    table_problems,
    unique,
)
from tests.api.matrix_monitoring import MONITORING_ROUTES
from tests.api.matrix_patients import PATIENT_ROUTES
from tests.api.matrix_recommender import RECOMMENDER_ROUTES
from tests.api.matrix_results import RESULT_ROUTES
from tests.api.matrix_tcm import TCM_ROUTES
from tests.factories.access import DEFAULT_PASSWORD
from tests.factories.alliance import BedFactory, DepartmentFactory, PractitionerFactory

# --- prepare(): targets at the home institution and a concrete call ------------------------


def _login_form(ctx: MatrixContext) -> Call:
    return Call(data={"username": ctx.user.username, "password": DEFAULT_PASSWORD})


def _refresh_token(ctx: MatrixContext) -> Call:
    token, token_hash = tokens.new_refresh_token()
    now = utcnow()
    ctx.session.add(
        RefreshToken(
            user_id=ctx.user.id,
            family_id=uuid.uuid4(),
            token_hash=token_hash,
            issued_at=now,
            expires_at=now + timedelta(hours=1),
        )
    )
    ctx.session.flush()
    return Call(json={"refresh_token": token})


def _target_user(ctx: MatrixContext) -> Call:
    target = make_user(Role.CLINICIAN, ctx.home)
    return Call(path_params={"user_id": target.id}, json={"display_name": "Renamed"})


def _users_at_both(ctx: MatrixContext) -> Call:
    make_user(Role.NURSE, ctx.home)
    make_user(Role.NURSE, ctx.other)
    return Call()


def _no_other_institutions_users(ctx: MatrixContext, case: Case, response: httpx.Response) -> None:
    """The list is scope-filtered: an institution admin sees only their own accounts."""
    if case.kind != "right-role":
        return
    listed = {u["institution_id"] for u in response.json()}
    if case.role is Role.INSTITUTION_ADMIN:
        assert listed == {str(ctx.home.id)}, "another institution's accounts leaked"
    else:
        assert str(ctx.other.id) in listed


def _read_is_audited(ctx: MatrixContext, case: Case, response: httpx.Response) -> None:
    if case.kind == "right-role":
        (event,) = audit_events(
            ctx.session, action="read", resource_type="Practitioner", actor_user_id=ctx.user.id
        )
        assert event.resource_id == response.json()["id"]


def _new_user(ctx: MatrixContext) -> Call:
    return Call(
        json={
            "username": unique("u"),
            "password": "a-long-enough-password",
            "role": "clinician",
            "institution_code": ctx.home.code,
        }
    )


def _patient_facts(ctx: MatrixContext) -> uuid.UUID:
    """Break-the-glass needs a patient; until the patients domain registers its facts
    provider, describe one patient held at the home institution."""
    patient_id = uuid.uuid4()
    facts = policy.PatientFacts(patient_id, frozenset({ctx.home.id}), sharing_consent=False)
    ctx.monkeypatch.setattr(
        policy, "_facts_provider", [lambda _s, pid: facts if pid == patient_id else None]
    )
    return patient_id


def _break_glass_start(ctx: MatrixContext) -> Call:
    patient_id = _patient_facts(ctx)
    return Call(json={"patient_id": str(patient_id), "reason": "Unconscious, no consent on file"})


def _grant(ctx: MatrixContext, user_id: uuid.UUID) -> BreakGlassGrant:
    now = utcnow()
    grant = BreakGlassGrant(
        user_id=user_id,
        institution_id=ctx.home.id,
        patient_id=uuid.uuid4(),
        reason="Emergency",
        started_at=now,
        expires_at=now + timedelta(hours=1),
    )
    ctx.session.add(grant)
    ctx.session.flush()
    return grant


def _own_grant(ctx: MatrixContext) -> Call:
    return Call(path_params={"grant_id": _grant(ctx, ctx.user.id).id})


def _grant_to_review(ctx: MatrixContext) -> Call:
    clinician = make_user(Role.CLINICIAN, ctx.home)
    return Call(
        path_params={"grant_id": _grant(ctx, clinician.id).id},
        json={"note": "Justified: patient arrived unconscious."},
    )


def _own_notification(ctx: MatrixContext) -> Call:
    note = Notification(
        user_id=ctx.user.id, kind="test", subject="Hello", body="", created_at=utcnow()
    )
    ctx.session.add(note)
    ctx.session.flush()
    return Call(path_params={"notification_id": note.id})


def _dead_job(ctx: MatrixContext) -> Call:
    job = Job(
        kind="test.kind",
        payload="{}",
        status=JobStatus.DEAD,
        attempts=8,
        max_attempts=8,
        run_after=utcnow(),
        created_at=utcnow(),
        last_error="boom",
    )
    ctx.session.add(job)
    ctx.session.flush()
    return Call(path_params={"job_id": job.id})


def _alliance(ctx: MatrixContext) -> Call:
    return Call(path_params={"alliance_id": ctx.home.alliance_id}, json={"region": "Renamed"})


def _new_alliance(ctx: MatrixContext) -> Call:
    return Call(json={"code": unique("AL"), "name_zh": "新医联体", "name_en": "New alliance"})


def _new_institution(ctx: MatrixContext) -> Call:
    return Call(
        json={
            "code": unique("NEW"),
            "name_zh": "新社区卫生服务中心",
            "name_en": "New community centre",
            "tier": "primary",
            "type": "community_health_centre",
            "lead_institution_code": ctx.home.code,
        }
    )


def _home_institution(ctx: MatrixContext) -> Call:
    return Call(path_params={"code": ctx.home.code}, json={"name_en": "Renamed hospital"})


def _new_department(ctx: MatrixContext) -> Call:
    return Call(
        path_params={"code": ctx.home.code},
        json={
            "code": unique("D"),
            "name_zh": "针灸科",
            "name_en": "Acupuncture",
            "discipline": "tcm",
        },
    )


def _department(ctx: MatrixContext) -> Call:
    department = DepartmentFactory(institution=ctx.home)
    return Call(path_params={"department_id": department.id}, json={"name_en": "Renamed"})


def _new_bed(ctx: MatrixContext) -> Call:
    department = DepartmentFactory(institution=ctx.home)
    return Call(path_params={"department_id": department.id}, json={"code": unique("B")})


def _bed(ctx: MatrixContext) -> Call:
    bed = BedFactory(department=DepartmentFactory(institution=ctx.home))
    return Call(path_params={"bed_id": bed.id}, json={"status": "occupied", "expected_version": 1})


def _new_practitioner(ctx: MatrixContext) -> Call:
    return Call(
        json={
            "institution_code": ctx.home.code,
            "name": "李医生",
            "title": "attending_physician",
            "discipline": "integrated",
            "licence_number": unique("LIC"),
        }
    )


def _practitioner(ctx: MatrixContext) -> Call:
    practitioner = PractitionerFactory(institution=ctx.home)
    return Call(path_params={"practitioner_id": practitioner.id}, json={"specialty": "Oncology"})


# --- the table --------------------------------------------------------------------------

P = Permission
ADMIN_SCOPE = (Role.INSTITUTION_ADMIN,)

ROUTES: list[RouteSpec] = [
    # health and login
    RouteSpec("GET", "/api/health", PUBLIC),
    RouteSpec("POST", "/api/auth/token", PUBLIC, prepare=_login_form),
    RouteSpec("POST", "/api/auth/refresh", PUBLIC, prepare=_refresh_token),
    RouteSpec("POST", "/api/auth/logout", AUTHENTICATED, prepare=_refresh_token),
    RouteSpec("GET", "/api/auth/me", AUTHENTICATED),
    # accounts
    RouteSpec(
        "GET",
        "/api/users",
        P.USERS_MANAGE,
        prepare=_users_at_both,
        after=_no_other_institutions_users,
    ),
    RouteSpec("POST", "/api/users", P.USERS_MANAGE, prepare=_new_user, foreign=ADMIN_SCOPE),
    RouteSpec(
        "GET", "/api/users/{user_id}", P.USERS_MANAGE, prepare=_target_user, foreign=ADMIN_SCOPE
    ),
    RouteSpec(
        "PATCH", "/api/users/{user_id}", P.USERS_MANAGE, prepare=_target_user, foreign=ADMIN_SCOPE
    ),
    # break-the-glass and notifications
    RouteSpec("POST", "/api/access/break-glass", P.BREAK_GLASS, prepare=_break_glass_start),
    RouteSpec(
        "POST",
        "/api/access/break-glass/{grant_id}/end",
        P.BREAK_GLASS,
        prepare=_own_grant,
        foreign=(Role.CLINICIAN,),
        foreign_status=404,
    ),
    RouteSpec("GET", "/api/access/break-glass", AUTHENTICATED),
    RouteSpec(
        "POST",
        "/api/access/break-glass/{grant_id}/review",
        P.BREAK_GLASS_REVIEW,
        prepare=_grant_to_review,
    ),
    RouteSpec("GET", "/api/me/notifications", AUTHENTICATED),
    RouteSpec(
        "POST",
        "/api/me/notifications/{notification_id}/read",
        AUTHENTICATED,
        prepare=_own_notification,
        foreign=(Role.CLINICIAN,),
        foreign_status=404,
    ),
    # alliance registry
    RouteSpec("GET", "/api/alliances", P.REGISTRY_READ),
    RouteSpec("POST", "/api/alliances", P.ALLIANCE_MANAGE, prepare=_new_alliance),
    RouteSpec("GET", "/api/alliances/{alliance_id}", P.REGISTRY_READ, prepare=_alliance),
    RouteSpec("PATCH", "/api/alliances/{alliance_id}", P.ALLIANCE_MANAGE, prepare=_alliance),
    RouteSpec("GET", "/api/institutions", P.REGISTRY_READ),
    RouteSpec("POST", "/api/institutions", P.ALLIANCE_MANAGE, prepare=_new_institution),
    RouteSpec("GET", "/api/institutions/{code}", P.REGISTRY_READ, prepare=_home_institution),
    RouteSpec(
        "PATCH",
        "/api/institutions/{code}",
        P.REGISTRY_MANAGE,
        prepare=_home_institution,
        foreign=ADMIN_SCOPE,
    ),
    RouteSpec(
        "GET", "/api/institutions/{code}/departments", P.REGISTRY_READ, prepare=_new_department
    ),
    RouteSpec(
        "POST",
        "/api/institutions/{code}/departments",
        P.REGISTRY_MANAGE,
        prepare=_new_department,
        foreign=ADMIN_SCOPE,
    ),
    RouteSpec("GET", "/api/departments/{department_id}", P.REGISTRY_READ, prepare=_department),
    RouteSpec(
        "PATCH",
        "/api/departments/{department_id}",
        P.REGISTRY_MANAGE,
        prepare=_department,
        foreign=ADMIN_SCOPE,
    ),
    RouteSpec("GET", "/api/practitioners", P.REGISTRY_READ),
    RouteSpec(
        "POST",
        "/api/practitioners",
        P.REGISTRY_MANAGE,
        prepare=_new_practitioner,
        foreign=ADMIN_SCOPE,
    ),
    RouteSpec(
        "GET",
        "/api/practitioners/{practitioner_id}",
        P.REGISTRY_READ,
        prepare=_practitioner,
        after=_read_is_audited,
    ),
    RouteSpec(
        "PATCH",
        "/api/practitioners/{practitioner_id}",
        P.REGISTRY_MANAGE,
        prepare=_practitioner,
        foreign=ADMIN_SCOPE,
    ),
    RouteSpec("GET", "/api/departments/{department_id}/beds", P.REGISTRY_READ, prepare=_new_bed),
    RouteSpec(
        "POST",
        "/api/departments/{department_id}/beds",
        P.REGISTRY_MANAGE,
        prepare=_new_bed,
        foreign=ADMIN_SCOPE,
    ),
    RouteSpec(
        "PATCH",
        "/api/beds/{bed_id}",
        P.BEDS_UPDATE,
        prepare=_bed,
        foreign=(Role.INSTITUTION_ADMIN, Role.NURSE),
    ),
    RouteSpec("GET", "/api/beds/availability", P.REGISTRY_READ, prepare=_bed),
    # audit trail and jobs
    RouteSpec("GET", "/api/audit/events", P.AUDIT_READ),
    RouteSpec("GET", "/api/audit/verify", P.AUDIT_READ),
    RouteSpec("GET", "/api/jobs", P.JOBS_MANAGE),
    RouteSpec("GET", "/api/jobs/stats", P.JOBS_MANAGE),
    RouteSpec("POST", "/api/jobs/{job_id}/retry", P.JOBS_MANAGE, prepare=_dead_job),
    # patients, the MPI and the longitudinal record
    *PATIENT_ROUTES,
    *TCM_ROUTES,
    *MONITORING_ROUTES,
    *RESULT_ROUTES,
    *RECOMMENDER_ROUTES,
]


# --- the tests --------------------------------------------------------------------------


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


@pytest.fixture
def harness(
    client: TestClient,
    session: Session,
    make_actor: Callable[..., Actor],
    auth_headers: Callable[[Actor], dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> Harness:
    return Harness(client, session, make_actor, auth_headers, monkeypatch)


def test_every_api_route_declares_access_once_and_is_in_the_matrix(app: FastAPI) -> None:
    routes = {(r.method, r.path) for r in api_routes(app)}
    # The walk must see through included routers, or this test could never fail.
    assert ("GET", "/api/health") in routes
    assert ("PATCH", "/api/beds/{bed_id}") in routes
    assert len(routes) >= len(ROUTES)
    problems = table_problems(app, ROUTES)
    assert not problems, "\n".join(problems)


def test_the_meta_check_catches_an_undeclared_or_unlisted_route(database_url: str) -> None:
    """Guard the guard: a route without a declaration, or missing from the table, is named."""
    app = build_app_once(database_url)  # a private app: the probe route must not leak

    @app.get("/api/undeclared-probe")
    def undeclared_probe() -> dict[str, str]:
        return {}

    @app.get("/api/twice-declared-probe", dependencies=[Depends(public)])
    def twice_declared_probe(actor: Annotated[Actor, Depends(authenticated)]) -> dict[str, str]:
        return {}

    problems = table_problems(app, ROUTES)
    assert any("GET /api/twice-declared-probe: declares access 2 times" in p for p in problems)
    assert any("GET /api/undeclared-probe: declares access 0 times" in p for p in problems), (
        problems
    )
    assert any(
        "GET /api/undeclared-probe: missing from the access matrix" in p for p in problems
    ), problems
    stale = [*ROUTES, RouteSpec("GET", "/api/no-such-route", PUBLIC)]
    assert "GET /api/no-such-route: in the access matrix but no such route" in table_problems(
        app, stale
    )
    wrong = [
        RouteSpec("GET", "/api/health", AUTHENTICATED)
        if spec.key == ("GET", "/api/health")
        else spec
        for spec in ROUTES
    ]
    assert any("the matrix says 'authenticated'" in p for p in table_problems(app, wrong))


@pytest.mark.parametrize("case", matrix_cases(ROUTES))
def test_access(case: Case, harness: Harness) -> None:
    run_case(case, harness)


# --- the harness itself can fail ---------------------------------------------------------


_READ_DEPARTMENT_ANYWHERE = RouteSpec(
    "GET",
    "/api/departments/{department_id}",
    P.REGISTRY_READ,
    prepare=_department,
    foreign=(Role.INSTITUTION_ADMIN,),
)


@pytest.mark.parametrize(
    "case",
    [
        # A route that lets the wrong role in.
        pytest.param(
            Case(RouteSpec("GET", "/api/auth/me", P.AUDIT_READ), "wrong-role"),
            id="wrong-role-let-in",
        ),
        # A route that lets anonymous callers in.
        pytest.param(
            Case(RouteSpec("GET", "/api/health", AUTHENTICATED), "anonymous"),
            id="anonymous-let-in",
        ),
        # A route that refuses a role the table says may use it.
        pytest.param(
            Case(RouteSpec("GET", "/api/jobs", AUTHENTICATED), "right-role", Role.CLINICIAN),
            id="right-role-refused",
        ),
        # A scope rule that does not exist (departments are readable alliance-wide).
        pytest.param(
            Case(_READ_DEPARTMENT_ANYWHERE, "other-institution", Role.INSTITUTION_ADMIN),
            id="scope-missing",
        ),
    ],
)
def test_the_runner_fails_when_a_route_breaks_its_declaration(case: Case, harness: Harness) -> None:
    with pytest.raises(AssertionError):
        run_case(case, harness)


def test_the_fingerprint_sees_inserts_and_updates(session: Session) -> None:
    department = DepartmentFactory()
    before = fingerprint(session)
    assert fingerprint(session) == before

    BedFactory(department=department)
    assert_not_unchanged(before, fingerprint(session))

    before = fingerprint(session)
    department.name_en = "Changed"
    session.flush()
    assert_not_unchanged(before, fingerprint(session))


def assert_not_unchanged(before: dict[str, object], after: dict[str, object]) -> None:
    with pytest.raises(AssertionError, match="changed table"):
        assert_unchanged(before, after, "probe")
