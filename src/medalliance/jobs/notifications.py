"""In-app notifications delivered through the job queue."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.jobs.models import Notification
from medalliance.jobs.registry import JobContext, handler
from medalliance.kernel.clock import utcnow
from medalliance.kernel.pagination import PageRequest, PageResult

DELIVER = "notifications.deliver"


def deliver(
    session: Session,
    *,
    user_ids: list[uuid.UUID],
    job_id: uuid.UUID,
    kind: str,
    subject: str,
    body: str = "",
    link: str | None = None,
) -> int:
    """Insert one notification per user, at most once per (user, job)."""
    already = set(
        session.scalars(
            select(Notification.user_id).where(Notification.source_job_id == job_id)
        ).all()
    )
    now = utcnow()
    fresh = [uid for uid in dict.fromkeys(user_ids) if uid not in already]
    session.add_all(
        Notification(
            user_id=uid,
            source_job_id=job_id,
            kind=kind,
            subject=subject,
            body=body,
            link=link,
            created_at=now,
        )
        for uid in fresh
    )
    return len(fresh)


@handler(DELIVER)
def _deliver_job(session: Session, ctx: JobContext) -> None:
    p = ctx.payload
    deliver(
        session,
        user_ids=[uuid.UUID(u) for u in p["user_ids"]],
        job_id=ctx.job_id,
        kind=p["kind"],
        subject=p["subject"],
        body=p.get("body", ""),
        link=p.get("link"),
    )


def for_user(
    session: Session, user_id: uuid.UUID, *, unread_only: bool, page: PageRequest
) -> PageResult[Notification]:
    query = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Notification.created_at.desc()).limit(page.limit).offset(page.offset)
    ).all()
    return PageResult(items=list(rows), total=total)


def mark_read(session: Session, user_id: uuid.UUID, notification_id: uuid.UUID) -> bool:
    note = session.get(Notification, notification_id)
    if note is None or note.user_id != user_id:
        return False
    if note.read_at is None:
        note.read_at = utcnow()
    return True
