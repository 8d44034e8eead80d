"""The results domain's contributions to other domains: timeline entries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.domains.records import timeline
from medalliance.domains.results.models import Result, ResultKind


def _results(session: Session, records: Sequence[uuid.UUID]) -> list[timeline.RawEntry]:
    r = Result
    rows = session.execute(
        select(
            r.id,
            r.effective_at,
            r.institution_id,
            r.kind,
            r.item_code,
            r.item_name,
            r.value_numeric,
            r.value_text,
            r.unit,
            r.abnormal_flag,
            r.status,
            r.hr_mark,
            r.modality,
            r.conclusion,
        ).where(r.patient_record_id.in_(records), r.superseded_by_id.is_(None))
    )
    entries = []
    for row in rows:
        name = row[5] or row[4]
        if row[3] is ResultKind.LAB:
            value = row[7] if row[6] is None else f"{row[6]:g}"
            summary = f"{name}: {value} {row[8] or ''}".strip()
            if row[9] and row[9] != "N":
                summary += f" ({row[9]})"
        else:
            summary = f"{row[12]} {name}: {row[13] or ''}".strip(": ")
        entries.append(
            timeline.RawEntry(
                "result",
                row[0],
                row[1],
                row[2],
                summary[:300],
                str(row[10]),
                None,
                {"kind": str(row[3]), "item_code": row[4], "hr_mark": row[11]},
            )
        )
    return entries


timeline.register_source("result", _results)
