"""RFC 9457 problem details for every error the JSON API returns."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from medalliance.access import denials
from medalliance.kernel.errors import (
    AccountLocked,
    Conflict,
    DomainError,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
)

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://medalliance.example/problems/"
MEDIA_TYPE = "application/problem+json"

STATUS_BY_ERROR: list[tuple[type[DomainError], int]] = [
    (NotAuthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
]


def problem(
    status: int, *, type_: str, title: str, detail: str, request: Request, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + type_,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def status_for(exc: DomainError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 400


def audit_denial(request: Request, exc: DomainError) -> None:
    """Every refused attempt is audited; patient-data denials already were (policy).
    The web UI's error pages call this too."""
    route = request.scope.get("route")
    denials.audit_route_denial(
        request.app.state.session_factory,
        getattr(request.state, "actor", None),
        method=request.method,
        route=getattr(route, "path", request.url.path),
        path=request.url.path,
        reason=exc.detail,
    )


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    if isinstance(exc, PermissionDenied) and not exc.audited:
        await run_in_threadpool(audit_denial, request, exc)
    extra: dict[str, Any] = dict(exc.extra)
    if exc.field is not None:
        extra["errors"] = [{"field": exc.field, "message": exc.detail}]
    if isinstance(exc, AccountLocked):
        extra.setdefault("locked_until", None)
    return problem(
        status_for(exc),
        type_=exc.code,
        title=exc.title,
        detail=exc.detail,
        request=request,
        **extra,
    )


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": _field_name(tuple(e.get("loc", ()))),
            "message": e.get("msg", ""),
            "type": e.get("type"),
        }
        for e in exc.errors()
    ]
    fields = ", ".join(sorted({e["field"] for e in errors}))
    return problem(
        422,
        type_="validation-error",
        title="Invalid request",
        detail=f"Invalid value for: {fields}.",
        request=request,
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    titles = {404: "Not found", 405: "Method not allowed", 401: "Authentication required"}
    return problem(
        exc.status_code,
        type_=f"http-{exc.status_code}",
        title=titles.get(exc.status_code, "Request failed"),
        detail=str(exc.detail),
        request=request,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(
        500,
        type_="internal-error",
        title="Internal error",
        detail="The request failed and nothing was changed. Quote the request id to support.",
        request=request,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
