"""The page routers the web app mounts; each part of the UI appends its own."""

from __future__ import annotations

from fastapi import APIRouter

from medalliance.web.pages import account, admin, desk, home, orders, patients, prescribe, review

PAGE_ROUTERS: list[APIRouter] = [
    account.router,
    home.router,
    patients.router,
    orders.router,
    prescribe.router,
    desk.router,
    review.router,
    admin.router,
]
