"""The page routers the web app mounts; each part of the UI appends its own."""

from __future__ import annotations

from fastapi import APIRouter

from medalliance.web.pages import account, home, patients

PAGE_ROUTERS: list[APIRouter] = [
    account.router,
    home.router,
    patients.router,
]
