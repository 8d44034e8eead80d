"""Friendly error pages for the web UI; never a stack trace.

The JSON API keeps its problem details (``medalliance.api.problems``): these handlers
answer only for page paths and hand everything under ``/api`` to the handlers that were
installed before them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from medalliance.api import problems
from medalliance.kernel.errors import DomainError, NotFound, PermissionDenied
from medalliance.web import i18n
from medalliance.web.csrf import CsrfFailed
from medalliance.web.render import redirect, render
from medalliance.web.session import LoginRequired, end_session, login_url

log = logging.getLogger(__name__)

Handler = Callable[[Request, Exception], Awaitable[Response]]
API_PREFIXES = ("/api", "/fhir")
N_ = i18n.N_

FALLBACK_500 = (
    "<!doctype html><meta charset=utf-8><title>500</title>"
    "<p>出错了，未做任何更改。Something went wrong; nothing was changed.</p>"
)
# (title, message) per status; msgids, translated when shown.
PAGES: dict[int, tuple[str, str]] = {
    400: (N_("Request not understood"), N_("The page could not use what was sent.")),
    403: (N_("Not allowed"), N_("Your role does not allow this page or action.")),
    404: (N_("Page not found"), N_("There is no such page, or the record does not exist.")),
    405: (N_("Not allowed"), N_("This page cannot be used that way.")),
    409: (N_("Conflict"), N_("Someone changed this in the meantime; reload and try again.")),
    422: (N_("Check the input"), N_("Some values were not valid.")),
    500: (
        N_("Something went wrong"),
        N_("The request failed and nothing was changed. Quote the request id to support."),
    ),
}


def is_page(request: Request) -> bool:
    return not request.url.path.startswith(API_PREFIXES)


def error_page(request: Request, status: int, *, detail: str | None = None) -> Response:
    title, message = PAGES.get(status, PAGES[400] if status < 500 else PAGES[500])
    if request.headers.get("hx-request"):
        return render(
            request, "_error_fragment.html", status, title=title, message=message, detail=detail
        )
    return render(request, "error.html", status, title=title, message=message, detail=detail)


def install(app: FastAPI) -> None:
    """Put page-aware handlers in front of the JSON API's."""
    previous: dict[Any, Handler] = dict(app.exception_handlers)

    def delegate(kind: Any) -> Handler:
        return previous.get(kind) or previous[Exception]

    async def on_login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        if exc.ended is not None:  # the request rolled back: end the row on its own
            factory = request.app.state.session_factory
            await run_in_threadpool(end_session, factory, request, exc.ended)
        return redirect(request, login_url(exc.next_url, exc.reason))

    async def on_domain_error(request: Request, exc: Exception) -> Response:
        if not is_page(request):
            return await delegate(DomainError)(request, exc)
        assert isinstance(exc, DomainError)
        if isinstance(exc, PermissionDenied) and not exc.audited:
            await run_in_threadpool(problems.audit_denial, request, exc)
        if isinstance(exc, CsrfFailed):
            return error_page(request, 403, detail=i18n.gettext(exc.detail))
        status = problems.status_for(exc)
        if status == 401:
            return redirect(request, login_url(request.url.path))
        # Domain details are English sentences; show the translation when there is one.
        detail = None if isinstance(exc, NotFound) else i18n.gettext(exc.detail)
        return error_page(request, status, detail=detail)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        if not is_page(request):
            return await delegate(RequestValidationError)(request, exc)
        return error_page(request, 422)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        if not is_page(request):
            return await delegate(StarletteHTTPException)(request, exc)
        assert isinstance(exc, StarletteHTTPException)
        return error_page(request, exc.status_code)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        if not is_page(request):
            return await delegate(Exception)(request, exc)
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        request_id = getattr(request.state, "request_id", None)
        try:
            return error_page(request, 500, detail=request_id)
        except Exception:  # the error page itself failed: a fixed text, still no trace
            log.exception("the error page failed")
            return HTMLResponse(FALLBACK_500, status_code=500)

    app.add_exception_handler(LoginRequired, on_login_required)
    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
