"""The HTTP adapter: a FastAPI sub-application mounted at /fhir. Every error is an
OperationOutcome; authentication and the unit of work are the JSON API's."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from functools import partial
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from medalliance.api.deps import DbSession, authenticated, public
from medalliance.audit import service as audit
from medalliance.config import Settings
from medalliance.db.uow import unit_of_work
from medalliance.fhir import bundle, everything, handler, history, parsing
from medalliance.fhir import search as search_mod
from medalliance.fhir.capability import capability_statement
from medalliance.fhir.context import FhirContext
from medalliance.fhir.outcome import (
    FhirError,
    from_domain,
    ignored_parameters,
    outcome,
    search_outcome,
)
from medalliance.fhir.resources import REGISTRY
from medalliance.kernel.actor import Actor
from medalliance.kernel.errors import DomainError, PermissionDenied

MEDIA = "application/fhir+json"
Authenticated = Annotated[Actor, Depends(authenticated)]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + str(request.scope.get("root_path", ""))


def _ctx(request: Request, session: Session, actor: Actor) -> FhirContext:
    return FhirContext(session=session, actor=actor, registry=REGISTRY, base_url=_base(request))


def _minimal(request: Request) -> bool:
    return "return=minimal" in request.headers.get("prefer", "")


def _version_headers(resource: dict[str, Any]) -> dict[str, str]:
    tag = history.etag(resource)
    headers = {"ETag": tag} if tag else {}
    last = resource.get("meta", {}).get("lastUpdated")
    if last:
        headers["Last-Modified"] = format_datetime(
            datetime.fromisoformat(last).astimezone(UTC), usegmt=True
        )
    return headers


def _lenient(request: Request) -> bool:
    """Prefer: handling=lenient ignores unknown parameters (with a warning); the default
    is strict: an unknown parameter is a 400."""
    return "handling=lenient" in request.headers.get("prefer", "")


class FhirJSON(JSONResponse):
    """application/fhir+json serialised by orjson: several times faster than the standard
    library on the megabytes a Patient/$everything answers."""

    media_type = MEDIA

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def fhir_json(
    body: dict[str, Any],
    status: int = 200,
    location: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    extra = {**(headers or {}), **({"Location": location} if location else {})}
    return FhirJSON(body, status_code=status, headers=extra or None)


def create_fhir_app(settings: Settings, session_factory: sessionmaker[Session]) -> FastAPI:
    app = FastAPI(title="MedAlliance FHIR R4", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.session_factory = session_factory
    _install_errors(app)

    @app.get("/metadata", dependencies=[Depends(public)])
    def metadata(request: Request) -> JSONResponse:
        return fhir_json(capability_statement(REGISTRY, _base(request)))

    @app.post("/")
    @app.post("")
    async def batch(request: Request, session: DbSession, actor: Authenticated) -> JSONResponse:
        data = parsing.load_json(await request.body())
        ctx = _ctx(request, session, actor)
        result = await run_in_threadpool(
            partial(bundle.process, ctx, data, minimal=_minimal(request))
        )
        return fhir_json(result)

    @app.get("/Patient/{rid}/$everything")
    def patient_everything(
        rid: str, request: Request, session: DbSession, actor: Authenticated
    ) -> JSONResponse:
        items = list(request.query_params.multi_items())
        ctx = _ctx(request, session, actor)
        return fhir_json(everything.everything(ctx, rid, items, lenient=_lenient(request)))

    @app.get("/{rtype}")
    def search(
        rtype: str, request: Request, session: DbSession, actor: Authenticated
    ) -> JSONResponse:
        items = list(request.query_params.multi_items())
        return fhir_json(_search(_ctx(request, session, actor), rtype, items, _lenient(request)))

    @app.post("/{rtype}/_search")
    async def search_post(
        rtype: str, request: Request, session: DbSession, actor: Authenticated
    ) -> JSONResponse:
        form = await request.form()
        items = [*request.query_params.multi_items(), *((k, str(v)) for k, v in form.multi_items())]
        ctx = _ctx(request, session, actor)
        return fhir_json(await run_in_threadpool(_search, ctx, rtype, items, _lenient(request)))

    @app.get("/{rtype}/{rid}/_history")
    def instance_history(
        rtype: str, rid: str, request: Request, session: DbSession, actor: Authenticated
    ) -> JSONResponse:
        return fhir_json(history.history(_ctx(request, session, actor), rtype, rid))

    @app.get("/{rtype}/{rid}/_history/{vid}")
    def vread(
        rtype: str, rid: str, vid: str, request: Request, session: DbSession, actor: Authenticated
    ) -> JSONResponse:
        resource = history.vread(_ctx(request, session, actor), rtype, rid, vid)
        return fhir_json(resource, headers=_version_headers(resource))

    @app.get("/{rtype}/{rid}")
    def read(
        rtype: str, rid: str, request: Request, session: DbSession, actor: Authenticated
    ) -> JSONResponse:
        resource = handler.read(_ctx(request, session, actor), rtype, rid)
        return fhir_json(resource, headers=_version_headers(resource))

    @app.post("/{rtype}")
    async def create(
        rtype: str, request: Request, session: DbSession, actor: Authenticated
    ) -> JSONResponse:
        REGISTRY.get(rtype)
        resource = parsing.resource(parsing.load_json(await request.body()), rtype)
        ctx = _ctx(request, session, actor)
        result = await run_in_threadpool(
            partial(
                handler.create,
                ctx,
                resource,
                if_none_exist=request.headers.get("if-none-exist"),
                minimal=_minimal(request),
            )
        )
        if result.resource is None:
            return JSONResponse(None, result.status, headers={"Location": result.location or ""})
        return fhir_json(result.resource, result.status, result.location)

    @app.put("/{rtype}/{rid}")
    async def update(
        rtype: str, rid: str, request: Request, session: DbSession, actor: Authenticated
    ) -> JSONResponse:
        REGISTRY.get(rtype)
        resource = parsing.resource(parsing.load_json(await request.body()), rtype)
        ctx = _ctx(request, session, actor)
        result = await run_in_threadpool(handler.update, ctx, rid, resource)
        return fhir_json(result.resource or {}, result.status, result.location)

    return app


def _search(
    ctx: FhirContext, rtype: str, items: list[tuple[str, str]], lenient: bool
) -> dict[str, Any]:
    """A search; on Prefer: handling=lenient the parameters this server does not support
    are left out (the links show what was used) and named in an OperationOutcome entry."""
    ignored: list[str] = []
    if lenient:
        mapper = REGISTRY.get(rtype)
        ignored = search_mod.parse(rtype, items, mapper.params, mapper.sorts, lenient=True).ignored
        items = [(k, v) for k, v in items if k not in ignored]
    bundle = handler.search(ctx, rtype, items)
    if ignored:
        bundle.setdefault("entry", []).append(search_outcome(ignored_parameters(ignored)))
    return bundle


def _oo(error: FhirError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return FhirJSON(outcome(error.issues), status_code=error.status, headers=headers)


def _audit_denial(request: Request, exc: DomainError) -> None:
    actor = getattr(request.state, "actor", None)
    if actor is None:
        return
    with unit_of_work(request.app.state.session_factory) as session:
        audit.record(
            session,
            actor,
            action="denied",
            resource_type="Route",
            resource_id=f"{request.method} /fhir{request.url.path}",
            outcome=audit.Outcome.DENIED,
            reason=exc.detail,
            detail={"path": request.url.path},
        )


def _install_errors(app: FastAPI) -> None:
    async def fhir_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, FhirError)
        return _oo(exc)

    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        if isinstance(exc, PermissionDenied) and not exc.audited:
            await run_in_threadpool(_audit_denial, request, exc)
        return _oo(from_domain(exc))

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _oo(FhirError(400, str(exc.errors()[:3])))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = "not-found" if exc.status_code == 404 else "not-supported"
        return _oo(FhirError(exc.status_code, str(exc.detail), code=code))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        import logging

        logging.getLogger(__name__).exception(
            "FHIR %s %s failed", request.method, request.url.path, exc_info=exc
        )
        return _oo(FhirError(500, "The request failed and nothing was changed.", code="exception"))

    app.add_exception_handler(FhirError, fhir_error)
    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
