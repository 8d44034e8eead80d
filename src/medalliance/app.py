"""FastAPI application factory."""

from __future__ import annotations

import gc
import logging
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medalliance import __version__, wiring
from medalliance.access.router import router as access_router
from medalliance.api import problems
from medalliance.api.deps import new_request_id, public
from medalliance.audit.router import router as audit_router
from medalliance.config import Settings, get_settings
from medalliance.db.engine import build_engine, build_session_factory
from medalliance.domains.alliance.router import router as alliance_router
from medalliance.domains.monitoring.router import router as monitoring_router
from medalliance.domains.patients.mpi.router import router as mpi_router
from medalliance.domains.patients.router import router as patients_router
from medalliance.domains.recommender.router import router as recommender_router
from medalliance.domains.records.router import router as records_router
from medalliance.domains.results.router import router as results_router
from medalliance.domains.tcm.router import router as tcm_router
from medalliance.fhir.api import create_fhir_app
from medalliance.interop.hl7v2.router import router as hl7v2_router
from medalliance.jobs.router import router as jobs_router
from medalliance.web import app as web

log = logging.getLogger(__name__)

health_router = APIRouter(prefix="/api", tags=["health"])


@health_router.get("/health", dependencies=[Depends(public)])
def health() -> dict[str, str]:
    """Liveness; needs no authentication."""
    return {"status": "ok"}


class RequestIdMiddleware:
    """Give every request an id (or keep the caller's X-Request-Id) for audit correlation."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = new_request_id(incoming)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(
    settings: Settings | None = None, session_factory: sessionmaker[Session] | None = None
) -> FastAPI:
    settings = settings or get_settings()
    settings.check_safe_to_serve()
    wiring.load_all()
    if session_factory is None:
        session_factory = build_session_factory(
            build_engine(settings.database_url, echo=settings.log_sql)
        )
    app = FastAPI(
        title="MedAlliance",
        version=__version__,
        description="Shared information platform of an integrated medical alliance (医联体).",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.session_factory = session_factory
    problems.install(app)
    routers = (
        health_router,
        access_router,
        alliance_router,
        patients_router,
        mpi_router,
        records_router,
        tcm_router,
        results_router,
        hl7v2_router,
        recommender_router,
        audit_router,
        jobs_router,
        monitoring_router,
    )
    for router in routers:
        app.include_router(router)
    app.mount("/fhir", create_fhir_app(settings, session_factory))
    web.install(app)  # the pages, at / (after the API, whose error handlers it wraps)
    app.add_middleware(RequestIdMiddleware)
    return app


def freeze_startup_heap() -> None:
    """Move everything alive after start-up (modules, models, compiled queries …) out
    of the garbage collector's sight: they live as long as the process, and otherwise
    every full collection walks them again, a pause of tens of milliseconds in the
    middle of some request. Objects made later are collected as usual."""
    gc.collect()
    gc.freeze()


def app_factory() -> Any:
    """Entry point for ``uvicorn --factory medalliance.app:app_factory``."""
    application = create_app()
    freeze_startup_heap()
    return application
