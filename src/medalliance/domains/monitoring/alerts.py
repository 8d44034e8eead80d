"""Raising alerts from stored readings, and the alert lifecycle.

Evaluation runs in the ingesting transaction, right after the readings are inserted,
so a dangerous reading and its alert commit together (the publish-to-alert path is
one transaction). A rule that is already active for the patient (open, acknowledged
or escalated) is not raised again: the existing alert counts the new occurrence, so
a run of high readings is one alert to act on, not an alarm storm. Each new alert
enqueues one notification job (the outbox), which runs only after commit.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, case, func, select, text, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medalliance.access import policy
from medalliance.access.models import User
from medalliance.audit import service as audit
from medalliance.db.upsert import InsertIgnoringConflicts
from medalliance.domains.monitoring.catalogue import MeasurementType
from medalliance.domains.monitoring.models import (
    ACTIVE_ALERT_STATUSES,
    ACTIVE_SQL,
    Alert,
    AlertStatus,
    Reading,
    ThresholdOverride,
)
from medalliance.domains.monitoring.rules import (
    NEEDS_CONDITIONS,
    NEEDS_WEIGHTS,
    Finding,
    Override,
    PatientContext,
    ReadingFacts,
    evaluate,
)
from medalliance.domains.monitoring.thresholds import (
    COPD_ICD10_PREFIXES,
    DEFAULTS,
    HEART_FAILURE_ICD10_PREFIXES,
    RANK,
    AlertRule,
)
from medalliance.domains.patients import service as patients_service
from medalliance.domains.records import service as records_service
from medalliance.jobs import service as jobs
from medalliance.jobs.notifications import DELIVER
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import Conflict, NotFound
from medalliance.kernel.ids import new_id
from medalliance.kernel.pagination import PageRequest, PageResult
from medalliance.kernel.roles import Role

# Who hears about an escalation, and about alerts of a patient nobody is responsible for.
ON_CALL_ROLES = (Role.CLINICIAN, Role.CARE_MANAGER)


@dataclass(frozen=True, slots=True)
class StoredReading:
    id: uuid.UUID
    patient_record_id: uuid.UUID
    institution_id: uuid.UUID
    responsible_user_id: uuid.UUID | None
    facts: ReadingFacts


def overrides_for(
    session: Session, record_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, dict[AlertRule, Override]]:
    found: dict[uuid.UUID, dict[AlertRule, Override]] = defaultdict(dict)
    ids = list(set(record_ids))
    if not ids:
        return found
    for row in session.scalars(
        select(ThresholdOverride).where(ThresholdOverride.patient_record_id.in_(ids))
    ):
        found[row.patient_record_id][row.rule] = Override(
            row.threshold, row.second_threshold, row.reason
        )
    return found


def _has(codes: set[str], prefixes: tuple[str, ...]) -> bool:
    return any(code.upper().startswith(prefixes) for code in codes)


def contexts_for(
    session: Session, readings: Sequence[StoredReading]
) -> dict[uuid.UUID, PatientContext]:
    """Everything the rules need, loaded with a handful of queries per batch.

    Conditions come from active diagnoses on the patient's record at the monitoring
    institution. If COPD is not recorded there, SpO2 alerts fire at the general 90 %
    floor (more alerts, never fewer); a clinician can set the rule per patient.
    """
    records = {r.patient_record_id for r in readings}
    overrides = overrides_for(session, records)
    kinds: dict[uuid.UUID, set[MeasurementType]] = defaultdict(set)
    for r in readings:
        kinds[r.patient_record_id].add(r.facts.measurement)
    need_conditions = [rid for rid, k in kinds.items() if k & NEEDS_CONDITIONS]
    codes = records_service.active_diagnosis_codes(session, need_conditions)
    weights: dict[uuid.UUID, list[tuple[datetime, float]]] = defaultdict(list)
    weighed = [
        rid
        for rid, k in kinds.items()
        if k & NEEDS_WEIGHTS
        and (
            _has(codes.get(rid, set()), HEART_FAILURE_ICD10_PREFIXES)
            or AlertRule.HF_WEIGHT_GAIN in overrides.get(rid, {})
        )
    ]
    if weighed:
        times = [r.facts.measured_at for r in readings if r.patient_record_id in set(weighed)]
        longest = max(
            [DEFAULTS[AlertRule.HF_WEIGHT_GAIN].second_threshold or 3.0]
            + [
                o[AlertRule.HF_WEIGHT_GAIN].second_threshold or 0.0
                for rid, o in overrides.items()
                if AlertRule.HF_WEIGHT_GAIN in o
            ]
        )
        rows = session.execute(
            select(Reading.patient_record_id, Reading.measured_at, Reading.value).where(
                Reading.patient_record_id.in_(weighed),
                Reading.measurement == MeasurementType.WEIGHT,
                Reading.measured_at >= min(times) - timedelta(days=longest),
                Reading.measured_at <= max(times),
            )
        )
        for rid, at, kg in rows:
            weights[rid].append((at, kg))
    return {
        rid: PatientContext(
            overrides=overrides.get(rid, {}),
            has_copd=_has(codes.get(rid, set()), COPD_ICD10_PREFIXES),
            has_heart_failure=_has(codes.get(rid, set()), HEART_FAILURE_ICD10_PREFIXES),
            weights=weights.get(rid, ()),
        )
        for rid in records
    }


def evaluate_readings(
    session: Session, readings: Sequence[StoredReading]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Run the rules over freshly stored readings; returns reading id -> alert ids."""
    candidates = [r for r in readings if r.facts.measurement in _EVALUATED]
    if not candidates:
        return {}
    contexts = contexts_for(session, candidates)
    hits: list[tuple[StoredReading, Finding]] = []
    for reading in candidates:
        for finding in evaluate(reading.facts, contexts[reading.patient_record_id]):
            hits.append((reading, finding))
    if not hits:
        return {}
    active = _active_alerts(session, {(r.patient_record_id, f.rule) for r, f in hits})
    raised: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    new: dict[tuple[uuid.UUID, AlertRule], _NewAlert] = {}
    for reading, finding in sorted(hits, key=lambda h: h[0].facts.measured_at):
        key = (reading.patient_record_id, finding.rule)
        alert = active.get(key)
        if alert is not None:
            _join(alert, reading, finding)
            raised[reading.id].append(alert.id)
            continue
        pending = new.get(key)
        if pending is None:
            pending = new[key] = _NewAlert(new_id(), [])
        pending.hits.append((reading, finding))
        raised[reading.id].append(pending.id)
    if new:
        _raise_many(session, new, raised)
    session.flush()
    return raised


@dataclass(slots=True)
class _NewAlert:
    """An alert this batch raises: its id (known before insert, the readings' results
    name it) and the hits it counts, oldest first."""

    id: uuid.UUID
    hits: list[tuple[StoredReading, Finding]]


def _join(alert: Alert, reading: StoredReading, finding: Finding) -> None:
    """One more occurrence on an active alert; the latest reading describes it."""
    alert.occurrences += 1
    if reading.facts.measured_at >= alert.last_seen_at:
        alert.last_seen_at = reading.facts.measured_at
        alert.message, alert.value, alert.reading_id = finding.message, finding.value, reading.id


# On the partial unique index of active alerts: a row another transaction raised
# meanwhile is skipped (after waiting for it), with no savepoint per alert.
_NEW_ALERTS = InsertIgnoringConflicts(
    cast(Table, Alert.__table__),
    on=["patient_record_id", "rule"],
    where=text(ACTIVE_SQL),
    returning=[cast(Table, Alert.__table__).c.id],
)


def _raise_many(
    session: Session,
    new: dict[tuple[uuid.UUID, AlertRule], _NewAlert],
    raised: dict[uuid.UUID, list[uuid.UUID]],
) -> None:
    """Insert the batch's new alerts in one statement and their notifications in
    another. A key another transaction won joins that alert instead (as raise_alert
    does one at a time)."""
    now = utcnow()
    rows = []
    for pending in new.values():
        (first, found), (last, latest) = pending.hits[0], pending.hits[-1]
        rows.append(
            {
                "id": pending.id,
                "patient_record_id": first.patient_record_id,
                "institution_id": first.institution_id,
                "rule": found.rule,
                "severity": found.severity,
                "status": AlertStatus.OPEN,
                "title": found.title,
                "message": latest.message,
                "criterion": found.criterion,
                "source": found.source,
                "reading_id": last.id,
                "value": latest.value,
                "occurrences": len(pending.hits),
                "raised_at": now,
                "last_seen_at": last.facts.measured_at,
                "detail": {},
                "created_at": now,
                "updated_at": now,
            }
        )
    inserted = set(session.connection().execute(_NEW_ALERTS.for_session(session), rows).scalars())
    lost = {key: p for key, p in new.items() if p.id not in inserted}
    if lost:
        winners = _active_alerts(session, set(lost))
        for key, pending in lost.items():
            winner = winners.get(key)
            if winner is None:  # the winner was closed meanwhile: let the caller retry
                raise Conflict("An alert of this rule changed meanwhile; retry.", field="rule")
            for reading, finding in pending.hits:
                _join(winner, reading, finding)
                ids = raised[reading.id]
                ids[ids.index(pending.id)] = winner.id
    _notify_raised(session, [p for p in new.values() if p.id in inserted], now)


def _notify_raised(session: Session, raised: list[_NewAlert], now: datetime) -> None:
    """One notification job per new alert, all in one statement (the outbox). The
    keys are new (the alert ids are), so no look-up first; a replayed id is skipped."""
    unassigned = {
        p.hits[0][0].institution_id for p in raised if not p.hits[0][0].responsible_user_id
    }
    on_call = _on_call_many(session, unassigned)
    outbox: list[tuple[str, dict[str, Any]]] = []
    for pending in raised:
        reading, finding = pending.hits[0]
        recipients = (
            [reading.responsible_user_id]
            if reading.responsible_user_id
            else on_call.get(reading.institution_id, [])
        )
        if not recipients:
            continue
        payload = _notification(
            pending.id,
            recipients,
            f"{finding.title}: {finding.message}",
            f"{finding.criterion}. Source: {finding.source}",
        )
        outbox.append((f"monitoring-alert:{pending.id}:raised", payload))
    jobs.enqueue_many(session, DELIVER, outbox)


def _on_call_many(
    session: Session, institution_ids: set[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    found: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    if not institution_ids:
        return found
    rows = session.execute(
        select(User.institution_id, User.id).where(
            User.institution_id.in_(list(institution_ids)),
            User.role.in_(ON_CALL_ROLES),
            User.active.is_(True),
        )
    )
    for institution_id, user_id in rows:
        if institution_id is not None:
            found[institution_id].append(user_id)
    return found


_EVALUATED = frozenset(
    {
        MeasurementType.BLOOD_PRESSURE,
        MeasurementType.GLUCOSE,
        MeasurementType.SPO2,
        MeasurementType.WEIGHT,
    }
)


def _active_alerts(
    session: Session, keys: set[tuple[uuid.UUID, AlertRule]]
) -> dict[tuple[uuid.UUID, AlertRule], Alert]:
    if not keys:
        return {}
    rows = session.scalars(
        select(Alert).where(
            tuple_(Alert.patient_record_id, Alert.rule).in_(list(keys)),
            Alert.status.in_(ACTIVE_ALERT_STATUSES),
        )
    )
    return {(a.patient_record_id, a.rule): a for a in rows}


def active_alert(session: Session, record_id: uuid.UUID, rule: AlertRule) -> Alert | None:
    return _active_alerts(session, {(record_id, rule)}).get((record_id, rule))


def raise_alert(
    session: Session,
    *,
    patient_record_id: uuid.UUID,
    institution_id: uuid.UUID,
    finding: Finding,
    reading_id: uuid.UUID | None,
    at: datetime,
    notify: list[uuid.UUID],
) -> Alert:
    """A new open alert with its notification — or, when another transaction raised
    the same rule for the patient meanwhile (the partial unique index says so), that
    alert with one more occurrence."""
    now = utcnow()
    alert = Alert(
        id=new_id(),  # known before flush: the reading's result names it
        patient_record_id=patient_record_id,
        institution_id=institution_id,
        rule=finding.rule,
        severity=finding.severity,
        status=AlertStatus.OPEN,
        title=finding.title,
        message=finding.message,
        criterion=finding.criterion,
        source=finding.source,
        reading_id=reading_id,
        value=finding.value,
        occurrences=1,
        raised_at=now,
        last_seen_at=at,
        detail={},
    )
    try:
        with session.begin_nested():
            session.add(alert)
            session.flush()
    except IntegrityError:
        existing = active_alert(session, patient_record_id, finding.rule)
        if existing is None:
            raise
        existing.occurrences += 1
        existing.last_seen_at = max(existing.last_seen_at, at)
        return existing
    recipients = notify or _on_call(session, institution_id)
    _notify(session, alert, recipients, f"{finding.title}: {finding.message}", "raised")
    return alert


def _on_call(session: Session, institution_id: uuid.UUID) -> list[uuid.UUID]:
    return _on_call_many(session, {institution_id}).get(institution_id, [])


def _notify(
    session: Session, alert: Alert, user_ids: list[uuid.UUID], subject: str, event: str
) -> None:
    if not user_ids:
        return
    jobs.enqueue(
        session,
        DELIVER,
        _notification(
            alert.id, user_ids, subject, f"{alert.criterion}. Source: {alert.source}", event
        ),
        idempotency_key=f"monitoring-alert:{alert.id}:{event}",
    )


def _notification(
    alert_id: uuid.UUID,
    user_ids: list[uuid.UUID],
    subject: str,
    body: str,
    event: str = "raised",
) -> dict[str, Any]:
    return {
        "user_ids": [str(u) for u in user_ids],
        "kind": f"monitoring.alert.{event}",
        "subject": subject[:300],
        "body": body,
        "link": f"/api/monitoring/alerts/{alert_id}",
    }


# --- lifecycle ----------------------------------------------------------------------------

_TRANSITIONS: dict[str, tuple[tuple[AlertStatus, ...], AlertStatus]] = {
    "acknowledge": ((AlertStatus.OPEN,), AlertStatus.ACKNOWLEDGED),
    "escalate": ((AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED), AlertStatus.ESCALATED),
    "resolve": (ACTIVE_ALERT_STATUSES, AlertStatus.RESOLVED),
}


def _enforce(
    session: Session, actor: Actor, alert: Alert, action: policy.AccessAction, audit_action: str
) -> uuid.UUID:
    person_id = patients_service.person_of_record(session, alert.patient_record_id)
    assert person_id is not None
    policy.enforce(
        session,
        actor,
        patients_service.facts_or_404(session, person_id),
        action,
        resource_type="MonitoringAlert",
        resource_id=alert.id,
        audit_action=audit_action,
        owner_institution_id=alert.institution_id,
    )
    return person_id


def transition(
    *, session: Session, actor: Actor, alert_id: uuid.UUID, action: str, note: str | None
) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"No alert {alert_id}.")
    _enforce(session, actor, alert, policy.AccessAction.WRITE, "update")
    allowed_from, target = _TRANSITIONS[action]
    if alert.status not in allowed_from:
        raise Conflict(f"An alert that is {alert.status} cannot be {target}.", field="status")
    now = utcnow()
    alert.status = target
    if note:
        alert.note = note if not alert.note else f"{alert.note}\n{note}"
    if target is AlertStatus.ACKNOWLEDGED:
        alert.acknowledged_at, alert.acknowledged_by = now, actor.user_id
    elif target is AlertStatus.ESCALATED:
        alert.escalated_at, alert.escalated_by = now, actor.user_id
        on_call = [u for u in _on_call(session, alert.institution_id) if u != actor.user_id]
        _notify(session, alert, on_call, f"Escalated — {alert.title}: {alert.message}", "escalated")
    else:
        alert.resolved_at, alert.resolved_by = now, actor.user_id
    audit.record(
        session,
        actor,
        action=action,
        resource_type="MonitoringAlert",
        resource_id=alert.id,
        patient_id=patients_service.person_of_record(session, alert.patient_record_id),
        detail={"status": str(target)},
    )
    session.flush()
    return alert


def get(session: Session, actor: Actor, alert_id: uuid.UUID) -> tuple[Alert, uuid.UUID]:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"No alert {alert_id}.")
    person_id = _enforce(session, actor, alert, policy.AccessAction.READ, "read")
    return alert, person_id


def list_for_institution(
    session: Session,
    actor: Actor,
    *,
    statuses: Sequence[AlertStatus],
    page: PageRequest,
) -> PageResult[tuple[Alert, uuid.UUID]]:
    """The actor's institution's alerts, most urgent first; each patient shown is
    passed through the policy (and so audited)."""
    if actor.institution_id is None:
        return PageResult(items=[], total=0)
    query = select(Alert).where(
        Alert.institution_id == actor.institution_id, Alert.status.in_(list(statuses))
    )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rank = case({str(k): v for k, v in RANK.items()}, value=Alert.severity)
    rows = list(
        session.scalars(query.order_by(rank, Alert.raised_at).limit(page.limit).offset(page.offset))
    )
    persons = patients_service.persons_of_records(
        session, list({a.patient_record_id for a in rows})
    )
    seen: set[uuid.UUID] = set()
    for alert in rows:
        person_id = persons[alert.patient_record_id][0]
        if person_id in seen:
            continue
        seen.add(person_id)
        policy.enforce(
            session,
            actor,
            patients_service.facts_or_404(session, person_id),
            policy.AccessAction.READ,
            resource_type="MonitoringAlert",
            audit_action="search",
            owner_institution_id=alert.institution_id,
        )
    return PageResult(items=[(a, persons[a.patient_record_id][0]) for a in rows], total=total)


def person_ids(session: Session, rows: Sequence[Alert]) -> list[uuid.UUID]:
    persons = patients_service.persons_of_records(
        session, list({a.patient_record_id for a in rows})
    )
    return [persons[a.patient_record_id][0] for a in rows]
