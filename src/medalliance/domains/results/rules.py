"""The recognition rules of WORKFLOWS.md §1.2 as pure functions (no database).

A result R is recognisable for an order placed at ``now`` when:

1. R's item is on the recognised-item list, in a version valid on R's date (§1.2.1);
2. the performing member passed external quality assessment for the item, covering
   R's date (§1.2.2; a failed or missing EQA excludes R);
3. level hierarchy: inside one alliance all members recognise each other (§1.1, S8),
   so no tier rule applies between members of this deployment;
4. R is still within the item's validity window (§1.2.4), counted from specimen
   collection or study time; an item without a configured window is not recognised
   automatically (the reference gives none for imaging: "configurable");
5./6. clinical state and physician judgement: the clinician decides at order time and
   records a reason code when repeating (§1.3) — that is the decision, not this check.

Only final or corrected results qualify: a preliminary result may still change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from medalliance.domains.results.models import ResultStatus


class NotRecognised(StrEnum):
    NONE = "none"  # no result of the item for this patient
    ITEM_NOT_ON_LIST = "item_not_on_list"
    LAB_NOT_ACCREDITED = "lab_not_accredited"
    EXPIRED = "expired"
    NO_VALIDITY_WINDOW = "no_validity_window"
    NOT_FINAL = "not_final"


@dataclass(frozen=True, slots=True)
class ListVersion:
    version: int
    valid_from: date
    valid_to: date | None  # exclusive
    validity_days: int | None

    def covers(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day < self.valid_to)


@dataclass(frozen=True, slots=True)
class EqaPeriod:
    passed: bool
    valid_from: date
    valid_to: date  # inclusive

    def covers(self, day: date) -> bool:
        return self.passed and self.valid_from <= day <= self.valid_to


@dataclass(frozen=True, slots=True)
class Verdict:
    recognisable: bool
    reason: NotRecognised | None = None
    valid_until: datetime | None = None
    list_version: int | None = None


def version_on(versions: Sequence[ListVersion], day: date) -> ListVersion | None:
    """The list version in force on ``day`` (the newest if periods overlap)."""
    found = [v for v in versions if v.covers(day)]
    return max(found, key=lambda v: v.version) if found else None


def on_list(versions: Sequence[ListVersion], day: date) -> bool:
    return version_on(versions, day) is not None


def accredited(periods: Sequence[EqaPeriod], day: date) -> bool:
    return any(p.covers(day) for p in periods)


def hr_mark(versions: Sequence[ListVersion], periods: Sequence[EqaPeriod], day: date) -> bool:
    """The HR mark (S1): the item is on the list and the lab passed EQA for it then."""
    return on_list(versions, day) and accredited(periods, day)


def evaluate(
    *,
    effective_at: datetime,
    status: ResultStatus,
    versions: Sequence[ListVersion],
    periods: Sequence[EqaPeriod],
    now: datetime,
) -> Verdict:
    """Is one result recognisable for an order placed at ``now``? The first failing
    condition is the reason given."""
    day = effective_at.date()
    at_result = version_on(versions, day)
    if at_result is None:
        return Verdict(False, NotRecognised.ITEM_NOT_ON_LIST)
    current = version_on(versions, now.date())
    if current is None:
        return Verdict(False, NotRecognised.ITEM_NOT_ON_LIST)
    if status is ResultStatus.PRELIMINARY:
        return Verdict(False, NotRecognised.NOT_FINAL, list_version=current.version)
    if not accredited(periods, day):
        return Verdict(False, NotRecognised.LAB_NOT_ACCREDITED, list_version=current.version)
    if current.validity_days is None:
        return Verdict(False, NotRecognised.NO_VALIDITY_WINDOW, list_version=current.version)
    valid_until = effective_at + timedelta(days=current.validity_days)
    if now > valid_until:
        return Verdict(False, NotRecognised.EXPIRED, valid_until, current.version)
    return Verdict(True, None, valid_until, current.version)


# When several results fail, the one to tell the clinician (the most actionable first).
REASON_ORDER = (
    NotRecognised.EXPIRED,
    NotRecognised.LAB_NOT_ACCREDITED,
    NotRecognised.NOT_FINAL,
    NotRecognised.NO_VALIDITY_WINDOW,
    NotRecognised.ITEM_NOT_ON_LIST,
    NotRecognised.NONE,
)


def summary_reason(reasons: Sequence[NotRecognised]) -> NotRecognised:
    if not reasons:
        return NotRecognised.NONE
    return min(reasons, key=REASON_ORDER.index)
