"""Log in, log out, switch language."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response

from medalliance.api.deps import DbSession
from medalliance.kernel.errors import AccountLocked
from medalliance.web import csrf, i18n
from medalliance.web.forms import FormErrors
from medalliance.web.render import flash, redirect, render, settings_of
from medalliance.web.session import COOKIE, OptionalWebUserDep, log_in, log_out

router = APIRouter()
N_ = i18n.N_


def safe_next(url: str | None) -> str:
    """Only a path on this site (no //host, no scheme): never an open redirect."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url


@router.get("/login")
def login_page(
    request: Request,
    user: OptionalWebUserDep,
    next: Annotated[str | None, Query()] = None,
    expired: Annotated[bool, Query()] = False,
) -> Response:
    if user is not None:
        return redirect(request, safe_next(next))
    return render(
        request,
        "login.html",
        next=safe_next(next),
        expired=expired,
        errors=FormErrors(),
        username="",
    )


@router.post("/login")
def login_submit(
    request: Request,
    session: DbSession,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    errors = FormErrors()
    if not username.strip():
        errors.add("username", N_("This field is required."))
    if not password:
        errors.add("password", N_("This field is required."))
    if not errors:
        settings = settings_of(request)
        outcome = log_in(
            session=session,
            request=request,
            settings=settings,
            username=username.strip(),
            password=password,
        )
        if isinstance(outcome, tuple):
            token, _user = outcome
            csrf.renew(request)  # a token planted before login is worthless after it
            response = redirect(request, safe_next(next))
            response.set_cookie(
                COOKIE,
                token,
                httponly=True,
                samesite="lax",
                secure=settings.web_secure_cookies,
                path="/",
            )
            return response
        if isinstance(outcome, AccountLocked):
            until = outcome.extra.get("locked_until")
            errors.add(
                "",
                i18n.gettext(
                    "This account is locked after repeated failed logins. Try again after "
                    "%(time)s, or ask an administrator to unlock it.",
                    time=_local_time(until),
                ),
            )
        else:
            errors.add("", outcome.detail)
    # A failed login changed state (counter, lock, audit): the unit of work commits it.
    return render(
        request,
        "login.html",
        status_code=400 if errors else 200,
        next=safe_next(next),
        expired=False,
        errors=errors,
        username=username,
    )


def _local_time(iso: object) -> str:
    if not isinstance(iso, str):
        return ""
    return i18n.format_datetime(datetime.fromisoformat(iso), "short")


@router.post("/logout")
def logout(request: Request, session: DbSession) -> Response:
    log_out(session=session, request=request)
    response = redirect(request, "/login")
    response.delete_cookie(COOKIE, path="/")
    flash(response, N_("You have logged out."), kind="success")
    return response


@router.post("/language")
def switch_language(
    request: Request,
    locale: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    chosen = i18n.normalise(locale) or i18n.DEFAULT_LOCALE
    response = redirect(request, safe_next(next))
    # A year: the choice is the user's, on this browser.
    response.set_cookie(
        i18n.COOKIE, chosen, max_age=365 * 24 * 3600, samesite="lax", path="/", httponly=True
    )
    return response
