"""The TCM domain's entries on the patient timeline: prescriptions and constitution
assessments (the timeline filters them entry by entry through the access policy).

Both are paged sources: the timeline counts and pages them in SQL and reads only the
page's rows. A prescription's herbs and drugs are child rows; the page reads them as
one JSON array per prescription (a correlated aggregate), not a query per entry.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import JSON, ColumnElement, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from medalliance.domains.records.timeline import EntryTable, RawEntry, register_paged_source
from medalliance.domains.tcm.models import (
    ConstitutionAssessment,
    Prescription,
    PrescriptionDrug,
    PrescriptionHerb,
)


class _RowsAsJson(FunctionElement[Any]):
    """JSON array of one array per aggregated row: ``[[a, b, …], …]``. PostgreSQL
    and SQLite spell it differently and SQLAlchemy has no portable name for it."""

    type = JSON()
    inherit_cache = True
    name = "rows_as_json"


@compiles(_RowsAsJson, "postgresql")
def _rows_as_json_pg(element: _RowsAsJson, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_agg(json_build_array({compiler.process(element.clauses, **kw)}))"


@compiles(_RowsAsJson, "sqlite")
def _rows_as_json_sqlite(element: _RowsAsJson, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_group_array(json_array({compiler.process(element.clauses, **kw)}))"


def _children(*columns: Any, parent: Any) -> ColumnElement[Any]:
    """The prescription's child rows (seq first), as JSON, for the row being read."""
    return (
        select(_RowsAsJson(*columns))
        .where(parent == Prescription.id)
        .correlate(Prescription)
        .scalar_subquery()
    )


def _ordered(value: Any) -> list[list[Any]]:
    """Rows back in ``seq`` order (an aggregate's order is not guaranteed); SQLite
    gives the JSON as text, an empty aggregate is NULL on PostgreSQL."""
    rows = json.loads(value) if isinstance(value, str) else value or []
    return sorted(rows, key=lambda r: r[0])


def _prescription(r: Sequence[Any]) -> RawEntry:
    (pid, at, institution_id, status, encounter_id, formula_name, dose_count) = r[:7]
    findings, override_reason, order_status, herb_rows, drug_rows = r[7:]
    herbs = _ordered(herb_rows)
    drugs = _ordered(drug_rows)
    herbal = f"{formula_name or '自拟方'} {len(herbs)}味×{dose_count}剂" if herbs else ""
    # a recorded order's line may hold only a dosage text
    western = ", ".join(" ".join(str(x) for x in d[1:] if x) for d in drugs)
    if str(status) == "recorded":  # an order placed elsewhere: its own status
        status = f"recorded: {order_status}"
    blocking = sorted({f["rule"] for f in findings if f["severity"] == "block"})
    return RawEntry(
        "prescription",
        pid,
        at,
        institution_id,
        " | ".join(x for x in (herbal, western) if x),
        str(status),
        encounter_id,
        {
            "herbs": [{"name": h[1], "dose_g": float(h[2])} for h in herbs],
            "western": [{"drug": d[1], "dose": d[2]} for d in drugs],
            "findings": len(findings),
            "blocking_rules": blocking,
            "overridden": override_reason is not None,
        },
    )


def _assessment(r: Sequence[Any]) -> RawEntry:
    return RawEntry("constitution", r[0], r[1], r[2], r[3], None, None, {"scores": r[4]})


def _register() -> None:
    p, h, d, c = Prescription, PrescriptionHerb, PrescriptionDrug, ConstitutionAssessment
    # A prescription stands on the timeline when it was signed, a draft when written,
    # an order recorded from elsewhere when it was placed there. The timeline only
    # labels, compares and orders this column, so an expression serves where a mapped
    # column is expected.
    signed_or_written = cast(Any, func.coalesce(p.signed_at, p.authored_at, p.created_at))
    register_paged_source(
        "prescription",
        table=EntryTable(p.id, signed_or_written, p.institution_id, p.patient_record_id),
        columns=[
            *(
                a.expression
                for a in (
                    p.status,
                    p.encounter_id,
                    p.formula_name,
                    p.dose_count,
                    p.findings,
                    p.override_reason,
                    p.order_status,
                )
            ),
            _children(h.seq, h.name, h.dose_g, parent=h.prescription_id),
            _children(d.seq, d.drug, d.dose, d.frequency, d.dosage_text, parent=d.prescription_id),
        ],
        build=_prescription,
    )
    register_paged_source(
        "constitution",
        table=EntryTable(c.id, c.assessed_at, c.institution_id, c.patient_record_id),
        columns=[c.summary.expression, c.scores.expression],
        build=_assessment,
    )


_register()
