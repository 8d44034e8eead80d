"""The results domain's contributions to other domains: timeline entries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, String, type_coerce

from medalliance.domains.records import timeline
from medalliance.domains.results.models import Result, ResultKind

# Paged in SQL by the timeline (a long history costs what one page costs); superseded
# reports are not entries: the correction that replaced them is.
_TABLE = timeline.EntryTable(
    Result.id,
    Result.effective_at,
    Result.institution_id,
    Result.patient_record_id,
    shown=Result.superseded_by_id.is_(None),
)
_COLUMNS: list[ColumnElement[Any]] = [
    # enumerations as the strings stored: the entry only prints them
    type_coerce(Result.kind, String()),
    Result.item_code.expression,
    Result.item_name.expression,
    Result.value_numeric.expression,
    Result.value_text.expression,
    Result.unit.expression,
    Result.abnormal_flag.expression,
    type_coerce(Result.status, String()),
    Result.hr_mark.expression,
    Result.modality.expression,
    Result.conclusion.expression,
]


def _result(row: Sequence[Any]) -> timeline.RawEntry:
    """(id, at, institution_id, *_COLUMNS) -> the entry."""
    (rid, at, institution_id, kind, code, name, number, text, unit, flag, status, hr, modality,
     conclusion) = row  # fmt: skip
    name = name or code
    if kind == ResultKind.LAB:
        value = text if number is None else f"{number:g}"
        summary = f"{name}: {value} {unit or ''}".strip()
        if flag and flag != "N":
            summary += f" ({flag})"
    else:
        summary = f"{modality} {name}: {conclusion or ''}".strip(": ")
    return timeline.RawEntry(
        "result",
        rid,
        at,
        institution_id,
        summary[:300],
        status,
        None,
        {"kind": kind, "item_code": code, "hr_mark": hr},
    )


timeline.register_paged_source("result", table=_TABLE, columns=_COLUMNS, build=_result)
