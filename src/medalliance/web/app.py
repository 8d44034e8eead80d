"""Mount the web UI on the main app: static files, page routers, error pages, catalogues."""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.staticfiles import StaticFiles

from medalliance.web import errors, i18n
from medalliance.web.csrf import csrf_protect
from medalliance.web.pages import PAGE_ROUTERS

STATIC_DIR = Path(__file__).parent / "static"


async def use_locale(request: Request) -> None:
    """Activate the user's language for everything the request translates."""
    i18n.activate(i18n.locale_of(request))


def install(app: FastAPI) -> None:
    i18n.load_all()
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # Every page router gets the locale and CSRF check: no page can forget them.
    for router in PAGE_ROUTERS:
        app.include_router(
            router,
            include_in_schema=False,
            dependencies=[Depends(use_locale), Depends(csrf_protect)],
        )
    errors.install(app)
