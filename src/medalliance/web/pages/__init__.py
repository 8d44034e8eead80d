"""The page routers the web app mounts; each part of the UI appends its own."""

from __future__ import annotations

from fastapi import APIRouter

from medalliance.web.pages import account, chart, home, patients

from medalliance.web.pages import admin, desk, orders, prescribe, review  # isort: skip

PAGE_ROUTERS: list[APIRouter] = [
    account.router,
    home.router,
    patients.router,
    chart.router,
    orders.router,
    prescribe.router,
    desk.router,
    review.router,
    admin.router,
]
