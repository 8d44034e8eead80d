"""Background work of the access layer."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from medalliance.access.break_glass import REVIEW_JOB
from medalliance.access.models import BreakGlassGrant, RefreshToken, User
from medalliance.jobs import notifications
from medalliance.jobs.registry import JobContext, handler, schedule
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role

PURGE_TOKENS_JOB = "access.purge_expired_refresh_tokens"


@handler(REVIEW_JOB)
def notify_auditors_of_break_glass(session: Session, ctx: JobContext) -> None:
    """Every break-the-glass access is queued for retrospective review by the auditors."""
    grant = session.get(BreakGlassGrant, uuid.UUID(ctx.payload["grant_id"]))
    if grant is None:
        return
    auditors = session.scalars(
        select(User.id).where(User.role == Role.AUDITOR, User.active.is_(True))
    ).all()
    notifications.deliver(
        session,
        user_ids=list(auditors),
        job_id=ctx.job_id,
        kind="break-glass-review",
        subject="Break-the-glass access to review / 紧急授权访问待审查",
        body=f"Grant {grant.id} started {grant.started_at:%Y-%m-%d %H:%M} UTC: {grant.reason}",
        link=f"/api/access/break-glass?unreviewed=true#{grant.id}",
    )


@handler(PURGE_TOKENS_JOB)
def purge_expired_refresh_tokens(session: Session, ctx: JobContext) -> None:
    session.execute(
        delete(RefreshToken).where(RefreshToken.expires_at < utcnow() - timedelta(days=1))
    )


schedule(PURGE_TOKENS_JOB, every=timedelta(hours=6))
