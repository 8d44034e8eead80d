"""Access-matrix entries for TCM herb recommendation (no patient data: no foreign cases)."""

from __future__ import annotations

import httpx

from medalliance.access.permissions import Permission as P  # noqa: N817 - the table reads better
from tests.api.access_matrix import Call, Case, MatrixContext, RouteSpec


def _symptoms(ctx: MatrixContext) -> Call:
    return Call(params={"symptoms": "咳嗽 头痛", "k": 5})


def _lookup(ctx: MatrixContext) -> Call:
    return Call(params={"q": "咳"})


def _five_herbs_when_allowed(ctx: MatrixContext, case: Case, response: httpx.Response) -> None:
    if response.status_code == 200:
        assert len(response.json()["suggestions"]) == 5


RECOMMENDER_ROUTES = [
    RouteSpec(
        "GET",
        "/api/tcm/recommendations",
        P.TCM_RECOMMEND,
        prepare=_symptoms,
        after=_five_herbs_when_allowed,
    ),
    RouteSpec("GET", "/api/tcm/symptoms", P.TCM_RECOMMEND, prepare=_lookup),
]
