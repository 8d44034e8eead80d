"""A reusable access matrix for the JSON API (ARCHITECTURE.md habit 6, "deny by default").

Every route under ``/api`` declares its access with exactly one dependency: ``public``,
``authenticated`` or ``require(Permission.X)`` (``medalliance.api.deps``). This module
holds the machinery; the table of routes lives in ``tests/api/test_access_matrix.py``.

Adding a route means adding one ``RouteSpec`` to that table::

    RouteSpec(
        "POST",
        "/api/referrals",
        Permission.REFERRAL_WRITE,
        prepare=lambda ctx: Call(json={"patient_id": str(make_patient(ctx.home).id), ...}),
        foreign=(Role.CLINICIAN,),
    )

``matrix_cases(table)`` then generates, for that route:

* ``anonymous``: no token → 401 problem (for a ``public`` route: the request succeeds);
* ``wrong-role``: every role whose permissions lack the declared one → 403 problem;
* ``right-role:<role>``: every role that holds the permission (all roles for an
  ``authenticated`` route) → the expected success status, never 401/403;
* ``other-institution:<role>``: an actor of the right role who works at *another*
  member institution → 403 (or ``foreign_status``) on the home institution's data.

Every refused request is also checked to have changed nothing: a fingerprint of every
table (all rows of small tables, counts of large ones) is taken before and after.
The audit tables are left out, because writing a denial to the audit trail is
allowed (and, for patient data, required).

The world each case runs in (``MatrixContext``): two member institutions of one alliance,
``home`` (a lead hospital, where targets live and where the right-role actor works) and
``other`` (a primary member); ``user``, a real account row owning the case: the actor
itself in a right-role case, otherwise a bystander of the first permitted role at
``home``. A route's ``prepare(ctx)`` builds its targets with the factories and returns
the concrete ``Call`` (path parameters, JSON body, form, query).

Right-role and other-institution actors are real account rows (one cheap insert: the
factories' password hash is computed once), because several use cases read the acting
user's row or key data by it (break-the-glass grants, notifications, "not yourself").
Wrong-role actors are token-only: ``require()`` refuses them before anything is read.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from medalliance.access import passwords
from medalliance.access.models import User
from medalliance.access.permissions import ROLE_PERMISSIONS, Permission
from medalliance.api.deps import access_declaration
from medalliance.api.problems import MEDIA_TYPE, PROBLEM_BASE
from medalliance.app import create_app
from medalliance.audit.models import AuditEvent
from medalliance.config import Settings
from medalliance.db.base import Base
from medalliance.domains.alliance.models import Institution, Tier
from medalliance.kernel.actor import Actor
from medalliance.kernel.roles import Role
from tests.factories.access import UserFactory
from tests.factories.alliance import AllianceFactory, InstitutionFactory

PUBLIC = "public"
AUTHENTICATED = "authenticated"
SUCCESS = frozenset({200, 201, 204})
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
# Roles whose accounts need not belong to an institution (see access.accounts).
ROLES_WITHOUT_INSTITUTION = frozenset({Role.ALLIANCE_ADMIN, Role.AUDITOR})
# Denials may be written to the trail; everything else must stay as it was.
UNFINGERPRINTED_TABLES = frozenset({"audit_events", "audit_chain_head"})
FULL_ROWS_UP_TO = 2000


# --- one app per module ------------------------------------------------------------------


def build_app_once(database_url: str) -> FastAPI:
    """An app to share across a module's tests (bind it per test with ``rebind``).

    FastAPI resolves included routers lazily on an app's first request (~50 ms for
    this API); the conftest's per-test app pays that in every test. Use as::

        @pytest.fixture(scope="module")
        def module_app(database_url: str) -> FastAPI:
            return build_app_once(database_url)

        @pytest.fixture
        def app(module_app, settings, session_factory, session) -> FastAPI:
            return rebind(module_app, settings, session_factory)
    """
    placeholder = Settings(database_url=database_url, secret_key=uuid.uuid4().hex * 2)
    return create_app(placeholder, sessionmaker())


def rebind(app: FastAPI, settings: Settings, session_factory: sessionmaker[Session]) -> FastAPI:
    """Point a shared app at this test's settings and SAVEPOINT-bound sessions."""
    app.state.settings = settings
    app.state.session_factory = session_factory
    return app


def use_cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id with the lowest cost parameters, for tests that hash or log in often.

    Production parameters cost ~0.2 s per hash or check; hashes made before the swap
    (the factories' default) still verify, at their own cost.
    """
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", cheap)
    monkeypatch.setattr(passwords, "_DUMMY_HASH", cheap.hash("timing-equaliser"))


# --- problem documents ---------------------------------------------------------------


def assert_problem(
    response: httpx.Response, status: int, type_suffix: str | None = None
) -> dict[str, Any]:
    """Assert an RFC 9457 problem document with this status; return its body."""
    assert response.status_code == status, (
        f"expected {status}, got {response.status_code}: {response.text[:500]}"
    )
    assert response.headers["content-type"].startswith(MEDIA_TYPE), response.headers
    body: dict[str, Any] = response.json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, f"problem document without {key!r}: {body}"
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["type"].startswith(PROBLEM_BASE), body["type"]
    if type_suffix is not None:
        assert body["type"] == PROBLEM_BASE + type_suffix, body["type"]
    if status == 401:
        assert response.headers.get("www-authenticate") == "Bearer"
    return body


def error_fields(body: Mapping[str, Any]) -> set[str]:
    """The field names a problem document's ``errors`` list points at."""
    return {str(e.get("field")) for e in body.get("errors", [])}


# --- "nothing changed" -----------------------------------------------------------------


def fingerprint(session: Session) -> dict[str, Any]:
    """Every row of every small table (a count for large ones), audit tables excluded."""
    snapshot: dict[str, Any] = {}
    for table in Base.metadata.sorted_tables:
        if table.name in UNFINGERPRINTED_TABLES:
            continue
        rows = session.execute(select(table).limit(FULL_ROWS_UP_TO + 1)).all()
        if len(rows) > FULL_ROWS_UP_TO:
            snapshot[table.name] = session.scalar(select(func.count()).select_from(table))
        else:
            snapshot[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return snapshot


def assert_unchanged(before: Mapping[str, Any], after: Mapping[str, Any], why: str) -> None:
    changed = sorted(name for name in before.keys() | after.keys() if before[name] != after[name])
    assert not changed, f"{why}: a refused request changed table(s) {', '.join(changed)}"


def row_count(session: Session, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def audit_events(session: Session, **where: object) -> list[AuditEvent]:
    """Audit rows matching column=value filters, oldest first (ids compared as text)."""
    query = select(AuditEvent)
    for name, value in where.items():
        if name == "resource_id" and value is not None:
            value = str(value)
        query = query.where(getattr(AuditEvent, name) == value)
    return list(session.scalars(query.order_by(AuditEvent.seq)))


# --- route specs -------------------------------------------------------------------------


def unique(prefix: str) -> str:
    """A short unique code (fits the registry's CODE_PATTERN and 32-character columns)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True, slots=True)
class Call:
    """The concrete request a case sends: path parameters, JSON body, form, query."""

    path_params: Mapping[str, object] = field(default_factory=dict)
    json: Any = None
    data: Mapping[str, str] | None = None
    params: Mapping[str, str] | None = None
    content: bytes | None = None  # a raw body (e.g. an HL7 v2 message)
    headers: Mapping[str, str] | None = None


@dataclass(slots=True)
class MatrixContext:
    session: Session
    home: Institution
    other: Institution
    user: User
    monkeypatch: pytest.MonkeyPatch


def no_call(ctx: MatrixContext) -> Call:
    return Call()


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One route of the API and the access it must enforce.

    method, path: as the app declares them (path template with ``{params}``).
    access: ``PUBLIC``, ``AUTHENTICATED`` or a ``Permission`` — must match the route.
    prepare: builds targets from fixtures and returns the concrete call.
    expect: statuses a permitted actor may get (prefer a realistic 2xx).
    foreign: roles that must still be refused when they work at another institution.
    foreign_status: what they get (403; 404 for "only your own" resources such as
        a grant or a notification, where existence is not revealed).
    roles: the roles the right-role cases use (default: every role holding it).
    after: extra checks on every case's response, e.g. that a denial of patient data was
        audited, or that a list leaked nothing of ``ctx.other``.
    """

    method: str
    path: str
    access: str
    prepare: Callable[[MatrixContext], Call] = no_call
    expect: frozenset[int] = SUCCESS
    foreign: tuple[Role, ...] = ()
    foreign_status: int = 403
    roles: tuple[Role, ...] | None = None
    after: Callable[[MatrixContext, Case, httpx.Response], None] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    def allowed_roles(self) -> tuple[Role, ...]:
        if self.roles is not None:
            return self.roles
        if self.access == PUBLIC:
            return ()
        if self.access == AUTHENTICATED:
            return tuple(Role)
        return tuple(r for r in Role if Permission(self.access) in ROLE_PERMISSIONS[r])

    def denied_roles(self) -> tuple[Role, ...]:
        if self.access in (PUBLIC, AUTHENTICATED):
            return ()
        return tuple(r for r in Role if Permission(self.access) not in ROLE_PERMISSIONS[r])

    def owner_role(self) -> Role:
        allowed = [r for r in Role if r in self.allowed_roles()]
        return allowed[0] if allowed else Role.CLINICIAN


@dataclass(frozen=True, slots=True)
class Case:
    spec: RouteSpec
    kind: str  # "anonymous" | "wrong-role" | "right-role" | "other-institution"
    role: Role | None = None

    @property
    def id(self) -> str:
        suffix = self.kind if self.role is None else f"{self.kind}:{self.role}"
        return f"{self.spec.id} [{suffix}]"


def matrix_cases(table: Sequence[RouteSpec]) -> list[Any]:
    """The parametrisation of ``run_case`` over a table of routes."""
    cases: list[Case] = []
    for spec in table:
        cases.append(Case(spec, "anonymous"))
        if spec.denied_roles():
            cases.append(Case(spec, "wrong-role"))
        cases.extend(Case(spec, "right-role", role) for role in spec.allowed_roles())
        cases.extend(Case(spec, "other-institution", role) for role in spec.foreign)
    return [pytest.param(case, id=case.id) for case in cases]


# --- running a case ----------------------------------------------------------------------


@dataclass(slots=True)
class Harness:
    """The fixtures a case needs (built by a small fixture in the test module)."""

    client: TestClient
    session: Session
    make_actor: Callable[..., Actor]
    auth_headers: Callable[[Actor], dict[str, str]]
    monkeypatch: pytest.MonkeyPatch


def build_world() -> tuple[Institution, Institution]:
    alliance = AllianceFactory()
    home = InstitutionFactory(alliance=alliance, tier=Tier.LEAD, code=unique("HOME"))
    other = InstitutionFactory(
        alliance=alliance, tier=Tier.PRIMARY, lead_institution_id=home.id, code=unique("OTHR")
    )
    return home, other


def make_user(role: Role, institution: Institution, **overrides: Any) -> User:
    """A real account row; alliance admins and auditors belong to no institution."""
    institution_id = None if role in ROLES_WITHOUT_INSTITUTION else institution.id
    user: User = UserFactory(
        role=role, institution=institution, institution_id=institution_id, **overrides
    )
    return user


def actor_of(h: Harness, user: User) -> Actor:
    institution = None
    if user.institution_id is not None:
        institution = h.session.get(Institution, user.institution_id)
    return h.make_actor(user.role, institution=institution, user_id=user.id, username=user.username)


def _send(h: Harness, spec: RouteSpec, call: Call, headers: Mapping[str, str]) -> httpx.Response:
    path = spec.path
    for name, value in call.path_params.items():
        path = path.replace("{" + name + "}", str(value))
    assert "{" not in path, f"{spec.id}: prepare() left path parameters unfilled: {path}"
    kwargs: dict[str, Any] = {"headers": dict(headers)}
    if call.json is not None:
        kwargs["json"] = call.json
    if call.data is not None:
        kwargs["data"] = dict(call.data)
    if call.params is not None:
        kwargs["params"] = dict(call.params)
    if call.content is not None:
        kwargs["content"] = call.content
    if call.headers is not None:
        kwargs["headers"].update(call.headers)
    return h.client.request(spec.method, path, **kwargs)


def _refused(
    h: Harness,
    spec: RouteSpec,
    call: Call,
    headers: Mapping[str, str],
    status: int,
    why: str,
) -> httpx.Response:
    response = _send(h, spec, call, headers)
    assert response.status_code == status, (
        f"{spec.id} as {why}: expected {status}, got {response.status_code}: {response.text[:500]}"
    )
    assert_problem(response, status)
    return response


def run_case(case: Case, h: Harness) -> None:
    spec = case.spec
    home, other = build_world()
    responses: list[httpx.Response] = []

    if case.kind == "right-role":
        assert case.role is not None
        user = make_user(case.role, home)
        ctx = MatrixContext(h.session, home, other, user, h.monkeypatch)
        call = spec.prepare(ctx)
        response = _send(h, spec, call, h.auth_headers(actor_of(h, user)))
        assert response.status_code not in (401, 403), (
            f"{spec.id}: {case.role} was refused: {response.text[:500]}"
        )
        assert response.status_code in spec.expect, (
            f"{spec.id} as {case.role}: expected one of {sorted(spec.expect)}, got "
            f"{response.status_code}: {response.text[:500]}"
        )
        responses.append(response)

    else:
        owner = make_user(spec.owner_role(), home)
        ctx = MatrixContext(h.session, home, other, owner, h.monkeypatch)
        call = spec.prepare(ctx)
        before = fingerprint(h.session)

        if case.kind == "anonymous" and spec.access == PUBLIC:
            response = _send(h, spec, call, {})
            assert response.status_code in spec.expect, (
                f"public {spec.id}: expected one of {sorted(spec.expect)}, got "
                f"{response.status_code}: {response.text[:500]}"
            )
            responses.append(response)
        elif case.kind == "anonymous":
            responses.append(_refused(h, spec, call, {}, 401, "anonymous"))
            assert_unchanged(before, fingerprint(h.session), f"{spec.id} as anonymous")
        elif case.kind == "wrong-role":
            # A refusal changes nothing, so one prepared target serves every wrong role,
            # and one fingerprint after them all shows whether any of them changed something.
            roles = spec.denied_roles()
            for role in roles:
                institution = None if role in ROLES_WITHOUT_INSTITUTION else home
                headers = h.auth_headers(h.make_actor(role, institution=institution))
                responses.append(_refused(h, spec, call, headers, 403, str(role)))
            who = f"{spec.id} as one of {', '.join(map(str, roles))}"
            assert_unchanged(before, fingerprint(h.session), who)
        elif case.kind == "other-institution":
            assert case.role is not None
            foreigner = make_user(case.role, other)
            assert foreigner.institution_id == other.id, "a foreign actor must belong to `other`"
            headers = h.auth_headers(actor_of(h, foreigner))
            why = f"{case.role} of another institution"
            before = fingerprint(h.session)
            responses.append(_refused(h, spec, call, headers, spec.foreign_status, why))
            assert_unchanged(before, fingerprint(h.session), f"{spec.id} as {why}")
        else:
            raise AssertionError(f"unknown case kind {case.kind!r}")

    if spec.after is not None:
        for response in responses:
            spec.after(ctx, case, response)


# --- the route walk ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiRoute:
    method: str
    path: str
    declarations: tuple[str, ...]


def _route_contexts(app: FastAPI) -> Iterator[Any]:
    """Every route of the app, with included routers flattened.

    Recent FastAPI versions keep included routers as lazy ``_IncludedRouter`` entries in
    ``app.routes``; ``iter_route_contexts`` resolves them with their effective path and
    dependencies (router-level dependencies included). Older versions list routes flat.
    """
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - FastAPI before lazy router inclusion
        yield from app.routes
        return
    yield from iter_route_contexts(app.routes)


def _declarations(dependant: Any) -> Iterator[str]:
    for sub in dependant.dependencies:
        declared = access_declaration(sub.call)
        if declared is not None:
            yield declared
        yield from _declarations(sub)


def api_routes(app: FastAPI) -> list[ApiRoute]:
    """Every (method, path) under /api with the access declarations found on it."""
    found: list[ApiRoute] = []
    for route in _route_contexts(app):
        original = getattr(route, "original_route", route)
        if not isinstance(original, APIRoute) or not route.path.startswith("/api"):
            continue
        declared = tuple(_declarations(route.dependant))
        found.extend(
            ApiRoute(m, route.path, declared) for m in sorted(route.methods & HTTP_METHODS)
        )
    return found


def table_problems(app: FastAPI, table: Sequence[RouteSpec]) -> list[str]:
    """Routes without exactly one declaration or without a matching table entry,
    table entries for routes that do not exist, and declarations the table misstates."""
    problems: list[str] = []
    routes = {(r.method, r.path): r for r in api_routes(app)}
    specs: dict[tuple[str, str], RouteSpec] = {}
    for spec in table:
        if spec.key in specs:
            problems.append(f"{spec.id}: listed twice in the access matrix")
        specs[spec.key] = spec
        if spec.access not in (PUBLIC, AUTHENTICATED) and spec.access not in set(Permission):
            problems.append(f"{spec.id}: unknown access {spec.access!r}")
        if not re.fullmatch(r"[A-Z]+", spec.method):
            problems.append(f"{spec.id}: method must be upper case")
        if spec.access in set(Permission) and not spec.allowed_roles():
            problems.append(f"{spec.id}: no role holds {spec.access}; the route is unreachable")
    for key, route in sorted(routes.items()):
        name = f"{key[0]} {key[1]}"
        if len(route.declarations) != 1:
            problems.append(
                f"{name}: declares access {len(route.declarations)} times "
                f"({', '.join(route.declarations) or 'never'}); use exactly one of "
                "public, authenticated, require(Permission.X)"
            )
        spec = specs.get(key)
        if spec is None:
            problems.append(
                f"{name}: missing from the access matrix (tests/api/test_access_matrix.py)"
            )
        elif route.declarations and spec.access not in route.declarations:
            problems.append(
                f"{name}: the matrix says {spec.access!r}, the route declares "
                f"{', '.join(route.declarations)}"
            )
    problems.extend(
        f"{spec.id}: in the access matrix but no such route"
        for key, spec in specs.items()
        if key not in routes
    )
    return problems
