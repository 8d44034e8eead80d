"""Order-time mutual recognition: which prior results the ordering clinician may reuse,
what they decided, and what that saved (WORKFLOWS.md §1.2–§1.5)."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.orm import Session

from medalliance.access import policy
from medalliance.audit import service as audit
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.alliance.models import Institution
from medalliance.domains.patients import service as patients_service
from medalliance.domains.results import catalogue, reference, rules, schemas
from medalliance.domains.results.models import (
    RecognitionChoice,
    RecognitionDecision,
    Result,
)
from medalliance.domains.results.service import visible_owners
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import Conflict, InvalidInput, NotFound, PermissionDenied

_INSTITUTION_ID_BY_CODE = select(Institution.id).where(Institution.code == bindparam("code"))
# An institution's code never changes (``InstitutionUpdate`` has no code) and ids are
# never reused, so the code of an institution that placed an order is remembered for
# the life of the process: the check then costs no query. Only confirmed pairs are kept.
_CODE_OF_INSTITUTION: dict[uuid.UUID, str] = {}


def _check_ordering_institution(session: Session, actor: Actor, code: str) -> None:
    if actor.institution_id is not None and _CODE_OF_INSTITUTION.get(actor.institution_id) == code:
        return
    institution_id = session.scalar(_INSTITUTION_ID_BY_CODE, {"code": code})
    if institution_id is None:
        raise InvalidInput(f"No institution with code {code!r}.", field="institution_code")
    if institution_id != actor.institution_id:
        raise PermissionDenied("You can only check orders placed at your own institution.")
    _CODE_OF_INSTITUTION[institution_id] = code


CANDIDATE_COLUMNS = (
    Result.id,
    Result.kind,
    Result.item_code,
    Result.status,
    Result.effective_at,
    Result.institution_id,
    Result.performing_lab,
    Result.value_numeric,
    Result.value_text,
    Result.unit,
    Result.conclusion,
    Result.pacs_url,
    Result.hr_mark,
    # The performing member's code and name come with each result (no second lookup).
    Institution.code.label("institution_code"),
    Institution.name_zh.label("institution_name_zh"),
)


# Built once (this runs at every order): the patient's current results of the items,
# newest first, with the performing member's code and name.
_CANDIDATES = (
    select(*CANDIDATE_COLUMNS)
    .join(Institution, Institution.id == Result.institution_id)
    .where(
        Result.patient_record_id.in_(
            patients_service.record_ids_query(bindparam("person_id", type_=Result.id.type))
        ),
        Result.item_code.in_(bindparam("codes", expanding=True)),
        Result.superseded_by_id.is_(None),
    )
    .order_by(Result.effective_at.desc())
)


@dataclass(frozen=True, slots=True)
class _Candidate:
    result: Any  # a Row of CANDIDATE_COLUMNS
    verdict: rules.Verdict


def order_check(
    session: Session, actor: Actor, data: schemas.OrderCheckIn
) -> schemas.OrderCheckOut:
    _check_ordering_institution(session, actor, data.institution_code)
    facts = patients_service.facts_or_404(session, data.patient_id)
    decision = policy.enforce(
        session,
        actor,
        facts,
        policy.AccessAction.READ,
        resource_type="ResultOrderCheck",
        resource_id=data.patient_id,
    )
    codes = list(dict.fromkeys(data.items))
    now = utcnow()
    # Plain columns through the session's connection, not ORM objects: this runs at
    # every order and must stay cheap (a read-only use case: nothing pending to flush).
    rows = (
        session.connection()
        .execute(_CANDIDATES, {"person_id": data.patient_id, "codes": codes})
        .all()
    )
    owner_codes = {r.institution_id: r.institution_code for r in rows}
    allowed = visible_owners(session, actor, facts, owner_codes)
    rows = [r for r in rows if allowed[r.institution_id]]
    known = catalogue.recognition_facts(
        session, codes, {r.institution_id for r in rows}, now.date()
    )
    by_code: dict[str, list[_Candidate]] = defaultdict(list)
    for row in rows:
        verdict = rules.evaluate(
            effective_at=row.effective_at,
            status=row.status,
            versions=known.versions.get(row.item_code, []),
            periods=known.periods.get((row.institution_id, row.item_code), []),
            now=now,
        )
        by_code[row.item_code].append(_Candidate(row, verdict))
    out_items = [
        _item_answer(code, known.current.get(code), by_code.get(code, []), now) for code in codes
    ]
    hidden = sorted(owner_codes[o] for o, ok in allowed.items() if not ok)
    audit.record(
        session,
        actor,
        action="read",
        resource_type="ResultOrderCheck",
        resource_id=data.patient_id,
        patient_id=data.patient_id,
        purpose_of_use=decision.purpose_of_use,
        detail={
            "items": codes,
            "recognisable": {i.item_code: len(i.recognisable) for i in out_items},
            "hidden_institutions": hidden,
        },
    )
    return schemas.OrderCheckOut(
        patient_id=data.patient_id,
        institution_code=data.institution_code,
        checked_at=now,
        items=out_items,
        hidden_institutions=hidden,
        level_rule=reference.LEVEL_RULE,
    )


def _item_answer(
    code: str,
    item: Row[Any] | None,  # of catalogue.ITEM_ANSWER_COLUMNS
    candidates: list[_Candidate],
    now: datetime,
) -> schemas.OrderCheckItem:
    recognisable: list[schemas.RecognisableResult] = []
    refused: list[schemas.UnrecognisedResult] = []
    for c in candidates:
        r = c.result
        if c.verdict.recognisable:
            assert c.verdict.valid_until is not None
            recognisable.append(
                schemas.RecognisableResult(
                    result_id=r.id,
                    kind=r.kind,
                    value=r.value_numeric,
                    value_text=r.value_text,
                    unit=r.unit,
                    conclusion=r.conclusion,
                    pacs_url=r.pacs_url,
                    collected_at=r.effective_at,
                    performing_institution_code=r.institution_code,
                    performing_institution_name_zh=r.institution_name_zh,
                    performing_lab=r.performing_lab,
                    valid_until=c.verdict.valid_until,
                    days_left=(c.verdict.valid_until - now).days,
                    hr_mark=r.hr_mark,
                )
            )
        else:
            assert c.verdict.reason is not None
            refused.append(
                schemas.UnrecognisedResult(
                    result_id=r.id,
                    collected_at=r.effective_at,
                    performing_institution_code=r.institution_code,
                    reason=str(c.verdict.reason),
                )
            )
    reason: str | None = None
    if not recognisable:
        if item is None:
            reason = str(rules.NotRecognised.ITEM_NOT_ON_LIST)
        else:
            reason = str(
                rules.summary_reason([c.verdict.reason for c in candidates if c.verdict.reason])
            )
    return schemas.OrderCheckItem(
        item_code=code,
        on_list=item is not None,
        name_zh=None if item is None else item.name_zh,
        name_en=None if item is None else item.name_en,
        validity_days=None if item is None else item.validity_days,
        validity_source=None if item is None else item.validity_source,
        recognisable=recognisable,
        reason=reason,
        not_recognised=refused,
    )


# --- decisions ----------------------------------------------------------------------------


def decide(session: Session, actor: Actor, data: schemas.DecisionIn) -> RecognitionDecision:
    """Store the clinician's reuse or repeat (with reason codes) of one result."""
    result = session.get(Result, data.result_id)
    if result is None:
        raise NotFound(f"No result {data.result_id}.")
    if patients_service.person_of_record(session, result.patient_record_id) != data.patient_id:
        raise InvalidInput("The result is not this patient's.", field="result_id")
    facts = patients_service.facts_or_404(session, data.patient_id)
    policy.enforce(
        session,
        actor,
        facts,
        policy.AccessAction.READ,
        resource_type="Result",
        resource_id=result.id,
        owner_institution_id=result.institution_id,
    )
    policy.enforce(
        session,
        actor,
        facts,
        policy.AccessAction.WRITE,
        resource_type="RecognitionDecision",
        resource_id=data.patient_id,
        audit_action="create",
    )
    if actor.institution_id is None:
        raise PermissionDenied("Only a clinician of a member institution orders tests.")
    if result.superseded_by_id is not None:
        raise Conflict(
            f"The result was superseded by {result.superseded_by_id}; decide on that one.",
            field="result_id",
        )
    now = utcnow()
    verdict = rules.evaluate(
        effective_at=result.effective_at,
        status=result.status,
        versions=catalogue.list_versions(session, [result.item_code]).get(result.item_code, []),
        periods=catalogue.eqa_periods(session, [result.institution_id], [result.item_code]).get(
            (result.institution_id, result.item_code), []
        ),
        now=now,
    )
    if data.decision is RecognitionChoice.REUSE and not verdict.recognisable:
        raise Conflict(
            f"The result is not recognisable ({verdict.reason}); order the test instead.",
            field="result_id",
            reason=str(verdict.reason),
        )
    item = catalogue.item_on(session, result.item_code, now.date())
    row = RecognitionDecision(
        person_id=data.patient_id,
        result_id=result.id,
        item_code=result.item_code,
        item_version=None if item is None else item.version,
        ordering_institution_id=actor.institution_id,
        order_ref=data.order_ref,
        clinician_user_id=actor.user_id,
        practitioner_id=actor.practitioner_id,
        decision=data.decision,
        reason_codes=list(data.reason_codes),
        free_text=data.free_text,
        price=None if item is None else item.price,
        decided_at=now,
    )
    session.add(row)
    session.flush()
    return row


# --- statistics ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Bucket:
    reused: int = 0
    repeated: int = 0
    unpriced: int = 0
    saved: Decimal = Decimal("0")


def statistics(
    session: Session,
    actor: Actor,
    *,
    since: date | None = None,
    until: date | None = None,
    institution_code: str | None = None,
) -> schemas.Statistics:
    """Tests avoided and money saved per ordering member and month; repeat reasons used.
    Aggregates only: no patient is named."""
    query = select(
        RecognitionDecision.ordering_institution_id,
        RecognitionDecision.decided_at,
        RecognitionDecision.decision,
        RecognitionDecision.price,
        RecognitionDecision.reason_codes,
    )
    if since is not None:
        query = query.where(RecognitionDecision.decided_at >= datetime.combine(since, time(), UTC))
    if until is not None:
        query = query.where(RecognitionDecision.decided_at < datetime.combine(until, time(), UTC))
    if institution_code is not None:
        institution = alliance_service.find_institution(session, institution_code)
        if institution is None:
            raise NotFound(f"No institution with code {institution_code!r}.")
        query = query.where(RecognitionDecision.ordering_institution_id == institution.id)
    buckets: dict[tuple[uuid.UUID, str], _Bucket] = defaultdict(_Bucket)
    reasons: Counter[str] = Counter()
    for institution_id, at, choice, price, codes in session.execute(query):
        bucket = buckets[(institution_id, at.strftime("%Y-%m"))]
        if choice == RecognitionChoice.REUSE:
            bucket.reused += 1
            if price is None:
                bucket.unpriced += 1
            else:
                bucket.saved += Decimal(price)
        else:
            bucket.repeated += 1
            reasons.update(codes or [])
    codes_by_id = alliance_service.institution_codes(session, list({k[0] for k in buckets}))
    rows = [
        schemas.InstitutionMonth(
            institution_code=codes_by_id[institution_id],
            month=month,
            reused=b.reused,
            repeated=b.repeated,
            tests_avoided=b.reused,
            money_saved=b.saved,
            unpriced_reuses=b.unpriced,
        )
        for (institution_id, month), b in buckets.items()
    ]
    rows.sort(key=lambda r: (r.month, r.institution_code))
    audit.record(
        session,
        actor,
        action="read",
        resource_type="RecognitionStatistics",
        detail={"since": str(since), "until": str(until), "institution": institution_code},
    )
    return schemas.Statistics(
        since=since,
        until=until,
        by_institution_month=rows,
        repeat_reasons=[
            schemas.ReasonCount(
                code=code, text_en=reference.REPEAT_REASONS[code].text_en, count=count
            )
            for code, count in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
            if code in reference.REPEAT_REASONS
        ],
    )
