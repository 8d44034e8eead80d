"""The TCM domain's entries on the patient timeline: prescriptions and constitution
assessments (the timeline filters them entry by entry through the access policy)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.domains.records.timeline import RawEntry, register_source
from medalliance.domains.tcm.models import ConstitutionAssessment, Prescription


def _prescriptions(session: Session, records: Sequence[uuid.UUID]) -> list[RawEntry]:
    rows = session.scalars(select(Prescription).where(Prescription.patient_record_id.in_(records)))
    entries = []
    for p in rows:
        herbal = (
            f"{p.formula_name or '自拟方'} {len(p.herbs)}味×{p.dose_count}剂" if p.herbs else ""
        )
        western = ", ".join(f"{d.drug} {d.dose} {d.frequency}" for d in p.drugs)
        blocking = sorted({f["rule"] for f in p.findings if f["severity"] == "block"})
        entries.append(
            RawEntry(
                "prescription",
                p.id,
                p.signed_at or p.created_at,
                p.institution_id,
                " | ".join(x for x in (herbal, western) if x),
                str(p.status),
                p.encounter_id,
                {
                    "herbs": [{"name": h.name, "dose_g": h.dose_g} for h in p.herbs],
                    "western": [{"drug": d.drug, "dose": d.dose} for d in p.drugs],
                    "findings": len(p.findings),
                    "blocking_rules": blocking,
                    "overridden": p.override_reason is not None,
                },
            )
        )
    return entries


def _assessments(session: Session, records: Sequence[uuid.UUID]) -> list[RawEntry]:
    rows = session.execute(
        select(
            ConstitutionAssessment.id,
            ConstitutionAssessment.assessed_at,
            ConstitutionAssessment.institution_id,
            ConstitutionAssessment.summary,
            ConstitutionAssessment.scores,
        ).where(ConstitutionAssessment.patient_record_id.in_(records))
    )
    return [
        RawEntry("constitution", r[0], r[1], r[2], r[3], None, None, {"scores": r[4]}) for r in rows
    ]


register_source("prescription", _prescriptions)
register_source("constitution", _assessments)
