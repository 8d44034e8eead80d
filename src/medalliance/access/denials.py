"""Audit a refused request: every attempt the permission check turns away leaves a row.

Patient-data denials are audited by the access policy where it decides; this is for the
route-level refusals (a role without the permission) that the adapters (the JSON API's
problem handler, the web UI's error pages) translate. The request's own transaction has
been rolled back by then, so the event is written in a transaction of its own.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from medalliance.audit import service as audit
from medalliance.db.uow import unit_of_work
from medalliance.kernel.actor import Actor


def audit_route_denial(
    factory: sessionmaker[Session],
    actor: Actor | None,
    *,
    method: str,
    route: str,
    path: str,
    reason: str,
) -> None:
    """Record that ``actor`` was refused ``method route`` (the route's template, e.g.
    ``GET /admin/institutions/{code}``; ``path`` is the URL actually asked for). An
    anonymous request (no actor yet) is a login problem, not a denial: nothing is written."""
    if actor is None:
        return
    with unit_of_work(factory) as session:
        audit.record(
            session,
            actor,
            action="denied",
            resource_type="Route",
            resource_id=f"{method} {route}",
            outcome=audit.Outcome.DENIED,
            reason=reason,
            detail={"path": path},
        )
