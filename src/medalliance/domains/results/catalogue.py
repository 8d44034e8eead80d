"""The recognised-item list (versioned) and each member's accreditation per item."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session

from medalliance.access.permissions import Permission
from medalliance.audit import service as audit
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.results import reference, rules, schemas
from medalliance.domains.results.models import LabAccreditation, RecognitionItem
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import InvalidInput, NotFound, PermissionDenied


def seed_reference(session: Session) -> int:
    """Add version 1 of every reference item not in the catalogue yet; idempotent."""
    known = set(session.scalars(select(RecognitionItem.code).distinct()))
    added = 0
    for seed in reference.SEED_ITEMS:
        if seed.code in known:
            continue
        session.add(
            RecognitionItem(
                code=seed.code,
                version=1,
                code_system="LN",
                kind=seed.kind,
                name_zh=seed.name_zh,
                name_en=seed.name_en,
                unit_property=seed.unit_property,
                validity_days=seed.validity_days,
                validity_source=seed.validity_source,
                price=None,
                price_source=None,
                source=f"{reference.CATALOGUE_SOURCE}; {seed.validity_source}",
                valid_from=reference.SEED_VALID_FROM,
                valid_to=None,
            )
        )
        added += 1
    session.flush()
    return added


def current_items(session: Session, *, on: date | None = None) -> list[RecognitionItem]:
    day = on or utcnow().date()
    rows = session.scalars(
        select(RecognitionItem)
        .where(RecognitionItem.valid_from <= day)
        .order_by(RecognitionItem.code, RecognitionItem.version)
    )
    return [r for r in rows if r.valid_to is None or day < r.valid_to]


def item_history(session: Session, code: str) -> list[RecognitionItem]:
    return list(
        session.scalars(
            select(RecognitionItem)
            .where(RecognitionItem.code == code)
            .order_by(RecognitionItem.version)
        )
    )


def histories(session: Session, codes: Collection[str]) -> dict[str, list[RecognitionItem]]:
    """Every version of each item, oldest first, in one query."""
    found: dict[str, list[RecognitionItem]] = defaultdict(list)
    if not codes:
        return found
    rows = session.scalars(
        select(RecognitionItem)
        .where(RecognitionItem.code.in_(list(codes)))
        .order_by(RecognitionItem.code, RecognitionItem.version)
    )
    for item in rows:
        found[item.code].append(item)
    return found


def as_list_version(item: RecognitionItem) -> rules.ListVersion:
    return rules.ListVersion(item.version, item.valid_from, item.valid_to, item.validity_days)


def item_on(session: Session, code: str, day: date) -> RecognitionItem | None:
    """The version of an item in force on a day (None when it is not on the list then)."""
    versions = [v for v in item_history(session, code) if _covers(v, day)]
    return versions[-1] if versions else None


def latest_item(session: Session, code: str) -> RecognitionItem | None:
    """The newest version of an item, whatever its period (for unit families)."""
    history = item_history(session, code)
    return history[-1] if history else None


def _covers(item: RecognitionItem, day: date) -> bool:
    return item.valid_from <= day and (item.valid_to is None or day < item.valid_to)


def add_version(
    *, session: Session, actor: Actor, data: schemas.CatalogueItemIn
) -> RecognitionItem:
    """A new version of an item; the open version before it ends where this one starts."""
    if not actor.can(Permission.RESULTS_CATALOGUE_MANAGE):
        raise PermissionDenied(f"Role {actor.role} may not change the recognition catalogue.")
    history = item_history(session, data.code)
    if history:
        last = history[-1]
        if data.valid_from <= last.valid_from:
            raise InvalidInput(
                f"valid_from must be after version {last.version}'s start ({last.valid_from}).",
                field="valid_from",
            )
        if last.valid_to is None or last.valid_to > data.valid_from:
            last.valid_to = data.valid_from
    item = RecognitionItem(**data.model_dump(), version=len(history) + 1, valid_to=None)
    session.add(item)
    session.flush()
    audit.record(
        session,
        actor,
        action="create",
        resource_type="RecognitionItem",
        resource_id=item.id,
        detail={"code": item.code, "version": item.version},
    )
    return item


def list_versions(session: Session, codes: Collection[str]) -> dict[str, list[rules.ListVersion]]:
    if not codes:
        return {}
    found: dict[str, list[rules.ListVersion]] = defaultdict(list)
    rows = session.execute(
        select(
            RecognitionItem.code,
            RecognitionItem.version,
            RecognitionItem.valid_from,
            RecognitionItem.valid_to,
            RecognitionItem.validity_days,
        ).where(RecognitionItem.code.in_(list(codes)))
    )
    for code, version, valid_from, valid_to, days in rows:
        found[code].append(rules.ListVersion(version, valid_from, valid_to, days))
    return found


ITEM_ANSWER_COLUMNS = (
    RecognitionItem.code,
    RecognitionItem.version,
    RecognitionItem.valid_from,
    RecognitionItem.valid_to,
    RecognitionItem.validity_days,
    RecognitionItem.validity_source,
    RecognitionItem.name_zh,
    RecognitionItem.name_en,
)

# Built once (the order check runs it at every order): every list version of the items,
# each with the EQA periods of the given members for the item (an accreditation is
# only ever recorded for an item on the list, so the outer join loses none).
_VERSIONS_AND_EQA = (
    select(
        *ITEM_ANSWER_COLUMNS,
        LabAccreditation.id.label("eqa_id"),
        LabAccreditation.institution_id.label("eqa_institution_id"),
        LabAccreditation.passed.label("eqa_passed"),
        LabAccreditation.valid_from.label("eqa_from"),
        LabAccreditation.valid_to.label("eqa_to"),
    )
    .outerjoin(
        LabAccreditation,
        and_(
            LabAccreditation.item_code == RecognitionItem.code,
            LabAccreditation.institution_id.in_(bindparam("institution_ids", expanding=True)),
        ),
    )
    .where(RecognitionItem.code.in_(bindparam("codes", expanding=True)))
    .order_by(RecognitionItem.code, RecognitionItem.version)
)


@dataclass(slots=True)
class RecognitionFacts:
    """What the rules need about the items of an order, read in one statement."""

    versions: dict[str, list[rules.ListVersion]] = field(default_factory=dict)
    # the version in force on the day: a row of ITEM_ANSWER_COLUMNS (plain columns)
    current: dict[str, Any] = field(default_factory=dict)
    periods: dict[tuple[uuid.UUID, str], list[rules.EqaPeriod]] = field(default_factory=dict)


def recognition_facts(
    session: Session, codes: Collection[str], institution_ids: Collection[uuid.UUID], day: date
) -> RecognitionFacts:
    """List versions of the items, the version in force on ``day``, and the EQA periods
    of ``institution_ids`` for them: one round trip for the order check."""
    found = RecognitionFacts()
    if not codes:
        return found
    rows = session.connection().execute(
        _VERSIONS_AND_EQA, {"codes": list(codes), "institution_ids": list(institution_ids)}
    )
    versions_seen: set[tuple[str, int]] = set()
    periods_seen: set[uuid.UUID] = set()
    for row in rows:  # one row per (version, period) pair of an item
        code = row.code
        if (code, row.version) not in versions_seen:
            versions_seen.add((code, row.version))
            found.versions.setdefault(code, []).append(
                rules.ListVersion(row.version, row.valid_from, row.valid_to, row.validity_days)
            )
            if row.valid_from <= day and (row.valid_to is None or day < row.valid_to):
                found.current[code] = row
        if row.eqa_id is not None and row.eqa_id not in periods_seen:
            periods_seen.add(row.eqa_id)
            found.periods.setdefault((row.eqa_institution_id, code), []).append(
                rules.EqaPeriod(row.eqa_passed, row.eqa_from, row.eqa_to)
            )
    return found


# --- accreditation ------------------------------------------------------------------------


def add_accreditation(
    *, session: Session, actor: Actor, data: schemas.AccreditationIn
) -> LabAccreditation:
    if not actor.can(Permission.RESULTS_CATALOGUE_MANAGE):
        raise PermissionDenied(f"Role {actor.role} may not record lab accreditation.")
    institution = alliance_service.find_institution(session, data.institution_code)
    if institution is None:
        raise InvalidInput(
            f"No institution with code {data.institution_code!r}.", field="institution_code"
        )
    if not item_history(session, data.item_code):
        raise InvalidInput(
            f"Item {data.item_code!r} is not in the recognition catalogue.", field="item_code"
        )
    fields = data.model_dump(exclude={"institution_code"})
    row = LabAccreditation(**fields, institution_id=institution.id, recorded_by=actor.user_id)
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        action="create",
        resource_type="LabAccreditation",
        resource_id=row.id,
        detail={"institution": institution.code, "item": row.item_code, "passed": row.passed},
    )
    return row


def list_accreditations(
    session: Session, *, institution_code: str | None = None, item_code: str | None = None
) -> list[LabAccreditation]:
    query = select(LabAccreditation)
    if institution_code is not None:
        institution = alliance_service.find_institution(session, institution_code)
        if institution is None:
            raise NotFound(f"No institution with code {institution_code!r}.")
        query = query.where(LabAccreditation.institution_id == institution.id)
    if item_code is not None:
        query = query.where(LabAccreditation.item_code == item_code)
    return list(
        session.scalars(
            query.order_by(LabAccreditation.item_code, LabAccreditation.valid_from).limit(5000)
        )
    )


# Built once: the order check runs this at every order.
_EQA_PERIODS = select(
    LabAccreditation.institution_id,
    LabAccreditation.item_code,
    LabAccreditation.passed,
    LabAccreditation.valid_from,
    LabAccreditation.valid_to,
).where(
    LabAccreditation.institution_id.in_(bindparam("institution_ids", expanding=True)),
    LabAccreditation.item_code.in_(bindparam("codes", expanding=True)),
)


def eqa_periods(
    session: Session, institution_ids: Collection[uuid.UUID], codes: Collection[str]
) -> dict[tuple[uuid.UUID, str], list[rules.EqaPeriod]]:
    if not institution_ids or not codes:
        return {}
    found: dict[tuple[uuid.UUID, str], list[rules.EqaPeriod]] = defaultdict(list)
    rows = session.execute(
        _EQA_PERIODS, {"institution_ids": list(institution_ids), "codes": list(codes)}
    )
    for institution_id, code, passed, valid_from, valid_to in rows:
        found[(institution_id, code)].append(rules.EqaPeriod(passed, valid_from, valid_to))
    return found


def hr_mark(session: Session, institution_id: uuid.UUID, code: str, day: date) -> bool:
    versions = list_versions(session, [code]).get(code, [])
    periods = eqa_periods(session, [institution_id], [code]).get((institution_id, code), [])
    return rules.hr_mark(versions, periods, day)


def repeat_reasons() -> Sequence[reference.RepeatReason]:
    return list(reference.REPEAT_REASONS.values())
