"""Constitution assessments: scored with ``constitution.assess``, stored on the
patient's record at the actor's institution, read back as a history through the
access policy."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.access import policy
from medalliance.audit import service as audit
from medalliance.domains.patients import service as patients_service
from medalliance.domains.tcm import constitution, schemas
from medalliance.domains.tcm.models import ConstitutionAssessment
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import InvalidInput


def record_assessment(
    *, session: Session, actor: Actor, person_id: uuid.UUID, data: schemas.AssessmentCreate
) -> ConstitutionAssessment:
    record = patients_service.local_record_for_write(
        session, actor, person_id, "ConstitutionAssessment"
    )
    q = constitution.questionnaire()
    unknown = sorted(set(data.answers) - set(q.items))
    if unknown:
        raise InvalidInput(
            f"Unknown questionnaire item(s): {', '.join(unknown)}.",
            field=f"answers.{unknown[0]}",
            unknown_items=unknown,
        )
    sex = str(record.sex)
    missing = constitution.missing_items(data.answers, sex)
    if missing:
        raise InvalidInput(
            f"The questionnaire is incomplete: {len(missing)} item(s) unanswered "
            f"({', '.join(missing)}).",
            field=f"answers.{missing[0]}",
            missing_items=missing,
        )
    sex_items = {i for i, item in q.items.items() if item.sex is not None}
    if sex in ("male", "female"):
        wrong = sorted(i for i in sex_items & set(data.answers) if q.items[i].sex != sex)
        if wrong:
            raise InvalidInput(
                f"Item {wrong[0]} is for {q.items[wrong[0]].sex} respondents only.",
                field=f"answers.{wrong[0]}",
            )
    elif len(sex_items & set(data.answers)) > 1:
        raise InvalidInput(
            "Answer one of the sex-specific 湿热质 items (F6 or F7), not both.", field="answers"
        )
    result = constitution.assess(data.answers, sex)
    assessment = ConstitutionAssessment(
        patient_record_id=record.id,
        institution_id=actor.institution_id,
        recorded_by=actor.user_id,
        assessed_at=data.assessed_at or utcnow(),
        sex=sex,
        answers=dict(data.answers),
        scores=result.scores,
        results=result.results,
        summary=f"{result.summary_zh} | {result.summary_en}"[:200],
    )
    session.add(assessment)
    session.flush()
    return assessment


def history(session: Session, actor: Actor, person_id: uuid.UUID) -> list[ConstitutionAssessment]:
    """Newest first; assessments of members the policy does not open are left out."""
    facts = patients_service.facts_or_404(session, person_id)
    decision = policy.enforce(
        session,
        actor,
        facts,
        policy.AccessAction.READ,
        resource_type="ConstitutionAssessment",
        resource_id=person_id,
    )
    records = patients_service.record_ids_of(session, person_id)
    rows = list(
        session.scalars(
            select(ConstitutionAssessment)
            .where(ConstitutionAssessment.patient_record_id.in_(records))
            .order_by(ConstitutionAssessment.assessed_at.desc())
        )
    )
    allowed: dict[bool, bool] = {}
    visible = []
    for row in rows:
        local = row.institution_id == actor.institution_id
        if local not in allowed:
            allowed[local] = policy.decide(
                session,
                actor,
                facts,
                policy.AccessAction.READ,
                owner_institution_id=row.institution_id,
            ).allowed
        if allowed[local]:
            visible.append(row)
    audit.record(
        session,
        actor,
        action="read",
        resource_type="ConstitutionAssessment",
        resource_id=person_id,
        patient_id=person_id,
        purpose_of_use=decision.purpose_of_use,
        detail={"entries": len(visible), "hidden": len(rows) - len(visible)},
    )
    return visible
