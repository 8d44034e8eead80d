"""A daily checkpoint: the chain head is written into the trail itself, so an
auditor who copies checkpoints elsewhere can later prove the chain's extent."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from medalliance.audit import service as audit
from medalliance.audit.models import AuditChainHead
from medalliance.jobs.registry import JobContext, handler, schedule
from medalliance.kernel.actor import SYSTEM_ACTOR

CHECKPOINT_JOB = "audit.checkpoint"


@handler(CHECKPOINT_JOB)
def checkpoint(session: Session, ctx: JobContext) -> None:
    head = session.get(AuditChainHead, audit.HEAD_ID)
    audit.record(
        session,
        SYSTEM_ACTOR,
        action="checkpoint",
        resource_type="AuditEvent",
        detail={
            "last_seq": 0 if head is None else head.last_seq,
            "last_hash": "" if head is None else head.last_hash,
            "job_id": str(ctx.job_id),
        },
    )


schedule(CHECKPOINT_JOB, every=timedelta(days=1))
