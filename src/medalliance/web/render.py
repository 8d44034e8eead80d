"""``render(request, "page.html", **ctx)``: a page in the user's language.

Adds what every page needs: the user, the locale and language switcher, the CSRF field,
the break-the-glass banner of the patient on screen, flash messages, and the security
headers (no inline scripts, no framing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from medalliance import __version__
from medalliance.config import Settings
from medalliance.web import csrf, i18n, labels

TEMPLATES_DIR = Path(__file__).parent / "templates"
FLASH_COOKIE = "ma_flash"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'self'"
)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html", "svg"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Jinja's "newstyle" gettext fills in the %(name)s placeholders itself.
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=i18n.raw_gettext, ngettext=i18n.raw_ngettext, newstyle=True
    )
    env.filters.update(
        date=i18n.format_date, datetime=i18n.format_datetime, number=i18n.format_number
    )
    env.globals.update(
        LANGUAGE_NAMES=i18n.LANGUAGE_NAMES,
        VERSION=__version__,
        ROLE_LABELS=labels.ROLE_LABELS,
        SEX_LABELS=labels.SEX_LABELS,
        PREGNANCY=labels.PREGNANCY_LABELS,
        ACCESS_BASIS=labels.ACCESS_BASIS_LABELS,
    )
    return env


templates = _environment()


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def flash(response: Response, message: str, *, kind: str = "info") -> None:
    """Show a message (an English msgid, translated when shown) on the next page."""
    response.set_cookie(
        FLASH_COOKIE, quote(f"{kind}|{message}"), httponly=True, samesite="lax", path="/"
    )


def _read_flash(request: Request) -> list[tuple[str, str]]:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw or request.headers.get("hx-request"):  # a fragment leaves it to the page
        return []
    kind, _, message = unquote(raw).partition("|")
    if kind not in ("info", "success", "warning", "error"):
        return []
    return [(kind, i18n.gettext(message))]


def finish(request: Request, response: Response) -> Response:
    """Cookies and headers that every web response carries."""
    csrf.set_cookie(request, response, secure=settings_of(request).web_secure_cookies)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")  # patient data stays off disk
    return response


def render(request: Request, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    locale = i18n.locale_of(request)
    i18n.activate(locale)
    flashes = _read_flash(request)
    context = {
        "request": request,
        "user": getattr(request.state, "web_user", None),
        "locale": locale,
        "html_lang": locale.replace("_", "-"),
        "csrf_field": lambda: csrf.csrf_field(request),
        "csrf_token": csrf.token_for(request),
        "break_glass": getattr(request.state, "break_glass", None),
        "flashes": flashes,
        "is_htmx": bool(request.headers.get("hx-request")),
        "current_path": request.url.path,
        "has_page": lambda path: has_page(request, path),
        **ctx,
    }
    response = HTMLResponse(templates.get_template(template).render(context), status_code)
    if flashes:
        response.delete_cookie(FLASH_COOKIE, path="/")
    finish(request, response)
    return response


def redirect(request: Request, url: str) -> Response:
    """After a POST: 303 to a page; an HTMX request gets HX-Redirect instead (a full page)."""
    if request.headers.get("hx-request"):
        response: Response = Response(status_code=204, headers={"HX-Redirect": url})
    else:
        response = RedirectResponse(url, status_code=303)
    return finish(request, response)


def has_page(request: Request, path: str) -> bool:
    """Whether a page exists (nav links to pages that other parts of the UI add). Looks
    at the page routers themselves: FastAPI wraps an included router's routes in an
    object without a ``path``, so ``request.app.routes`` does not list them."""
    from medalliance.web.pages import PAGE_ROUTERS  # the pages import this module

    return any(
        getattr(route, "path", None) == path for router in PAGE_ROUTERS for route in router.routes
    )
