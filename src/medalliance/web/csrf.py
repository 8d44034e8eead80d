"""CSRF protection: a double-submitted token on every state-changing request.

A random token lives in an HttpOnly cookie; every POST/PUT/PATCH/DELETE to a page
must send the same value as the form field ``csrf_token`` (``csrf_field()`` in
templates) or the ``X-CSRF-Token`` header (base.html makes HTMX send it). A cross-site
page can make the browser send the cookie but cannot read it to fill in the field.
The token is renewed at login so that one planted before login is worthless after.
"""

from __future__ import annotations

import secrets

from fastapi import Request, Response
from markupsafe import Markup, escape

from medalliance.kernel.errors import PermissionDenied
from medalliance.web.i18n import N_

COOKIE = "ma_csrf"
FIELD = "csrf_token"
HEADER = "x-csrf-token"
EXPIRED = N_("The form has expired or did not come from this site; reload the page.")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class CsrfFailed(PermissionDenied):
    code = "csrf-failed"
    title = "Form expired"


def token_for(request: Request) -> str:
    """The request's token: the cookie's, or a new one that ``set_cookie`` will send."""
    token = getattr(request.state, "csrf_token", None)
    if token is None:
        token = request.cookies.get(COOKIE) or secrets.token_urlsafe(32)
        request.state.csrf_token = token
    return str(token)


def renew(request: Request) -> str:
    request.state.csrf_token = secrets.token_urlsafe(32)
    return str(request.state.csrf_token)


def set_cookie(request: Request, response: Response, *, secure: bool) -> None:
    token = getattr(request.state, "csrf_token", None)
    if token is not None and token != request.cookies.get(COOKIE):
        response.set_cookie(COOKIE, token, httponly=True, samesite="lax", secure=secure, path="/")


def csrf_field(request: Request) -> Markup:
    return Markup('<input type="hidden" name="{}" value="{}">').format(
        FIELD, escape(token_for(request))
    )


async def csrf_protect(request: Request) -> None:
    """Router dependency: refuse an unsafe request whose token does not match the cookie."""
    if request.method in SAFE_METHODS:
        return
    expected = request.cookies.get(COOKIE)
    sent = request.headers.get(HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(FIELD)
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not secrets.compare_digest(expected, sent):
        raise CsrfFailed(
            N_("The form has expired or did not come from this site; reload the page.")
        )
