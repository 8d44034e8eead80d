"""The recognition rules of WORKFLOWS.md §1.2, table-driven, and the unit families."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from medalliance.domains.results import rules, units
from medalliance.domains.results.models import ResultStatus
from medalliance.domains.results.reference import REPEAT_REASONS, SEED_ITEMS
from medalliance.domains.results.rules import EqaPeriod, ListVersion, NotRecognised

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LIST_30 = [ListVersion(1, date(2023, 1, 1), None, 30)]
EQA = [EqaPeriod(True, date(2026, 1, 1), date(2026, 12, 31))]


def _at(days: float) -> datetime:
    return NOW - timedelta(days=days)


@pytest.mark.parametrize(
    ("effective", "status", "versions", "periods", "expected"),
    [
        (_at(5), ResultStatus.FINAL, LIST_30, EQA, None),
        (_at(29.9), ResultStatus.CORRECTED, LIST_30, EQA, None),
        (_at(30.1), ResultStatus.FINAL, LIST_30, EQA, NotRecognised.EXPIRED),
        (_at(5), ResultStatus.PRELIMINARY, LIST_30, EQA, NotRecognised.NOT_FINAL),
        (_at(5), ResultStatus.FINAL, [], EQA, NotRecognised.ITEM_NOT_ON_LIST),
        (_at(5), ResultStatus.FINAL, LIST_30, [], NotRecognised.LAB_NOT_ACCREDITED),
        # EQA failed, or passed only after the specimen was taken.
        (_at(5), ResultStatus.FINAL, LIST_30, [EqaPeriod(False, date(2026, 1, 1),
                                                         date(2026, 12, 31))],
         NotRecognised.LAB_NOT_ACCREDITED),
        (_at(5), ResultStatus.FINAL, LIST_30, [EqaPeriod(True, date(2026, 11, 20),
                                                         date(2026, 12, 31))],
         NotRecognised.LAB_NOT_ACCREDITED),
        # The item joined the list after the result was issued.
        (_at(5), ResultStatus.FINAL, [ListVersion(1, date(2026, 11, 21), None, 30)], EQA,
         NotRecognised.ITEM_NOT_ON_LIST),
        # The item left the list before the order.
        (_at(5), ResultStatus.FINAL, [ListVersion(1, date(2023, 1, 1), date(2026, 11, 22), 30)],
         EQA, NotRecognised.ITEM_NOT_ON_LIST),
        # A configurable window that nobody configured (imaging in the reference).
        (_at(5), ResultStatus.FINAL, [ListVersion(1, date(2023, 1, 1), None, None)], EQA,
         NotRecognised.NO_VALIDITY_WINDOW),
    ],
)  # fmt: skip
def test_evaluate(
    effective: datetime,
    status: ResultStatus,
    versions: list[ListVersion],
    periods: list[EqaPeriod],
    expected: NotRecognised | None,
) -> None:
    verdict = rules.evaluate(
        effective_at=effective, status=status, versions=versions, periods=periods, now=NOW
    )
    assert verdict.reason == expected
    assert verdict.recognisable is (expected is None)
    if expected is None:
        assert verdict.valid_until == effective + timedelta(days=30)


def test_the_window_of_the_version_in_force_now_applies() -> None:
    versions = [
        ListVersion(1, date(2023, 1, 1), date(2026, 11, 1), 30),
        ListVersion(2, date(2026, 11, 1), None, 7),
    ]
    verdict = rules.evaluate(
        effective_at=_at(10), status=ResultStatus.FINAL, versions=versions, periods=EQA, now=NOW
    )
    assert verdict.reason is NotRecognised.EXPIRED and verdict.list_version == 2


def test_hr_mark_needs_list_and_eqa_on_the_day() -> None:
    assert rules.hr_mark(LIST_30, EQA, date(2026, 6, 1))
    assert not rules.hr_mark(LIST_30, EQA, date(2025, 6, 1))
    assert not rules.hr_mark([], EQA, date(2026, 6, 1))


def test_the_most_actionable_reason_is_the_summary() -> None:
    assert rules.summary_reason([]) is NotRecognised.NONE
    assert (
        rules.summary_reason([NotRecognised.LAB_NOT_ACCREDITED, NotRecognised.EXPIRED])
        is NotRecognised.EXPIRED
    )


def test_reference_data_carries_sources_and_windows_from_workflows() -> None:
    windows = {s.code: s.validity_days for s in SEED_ITEMS}
    assert windows["4548-4"] == 60 and windows["2823-3"] == 7 and windows["2093-3"] == 30
    assert windows["30745-4"] is None  # "no source found → configurable"
    assert all(s.validity_source for s in SEED_ITEMS)
    assert sorted(REPEAT_REASONS, key=lambda c: int(c[1:])) == [f"R{i}" for i in range(1, 11)]
    assert [c for c, r in REPEAT_REASONS.items() if r.needs_free_text] == ["R6"]


@pytest.mark.parametrize(
    ("unit", "prop", "fits"),
    [
        ("mmol/L", "SCnc", True),
        ("umol/L", "SCnc", True),
        ("mg/dL", "SCnc", False),
        ("mg/dL", "MCnc", True),
        ("g/L", "MCnc", True),
        ("mmol/L", "MCnc", False),
        ("%", "MFr", True),
        ("mmol/L", "MFr", False),
        ("kg", None, True),  # an item without a known family takes any UCUM unit
        ("{score}", None, True),  # a lone annotation is the unity 1 in UCUM
        ("{count}", "MFr", True),  # … so it is dimensionless
        ("{score}", "SCnc", False),
    ],
)
def test_units_fit_their_loinc_family(unit: str, prop: str | None, fits: bool) -> None:
    if fits:
        units.check_unit(unit, prop)
    else:
        with pytest.raises(units.UnitError, match="does not fit"):
            units.check_unit(unit, prop)


@pytest.mark.parametrize("unit", ["furlongs per fortnight", "{a}{b}", "{unclosed"])
def test_a_unit_that_is_not_ucum_is_refused(unit: str) -> None:
    with pytest.raises(units.UnitError, match="not a valid UCUM unit"):
        units.check_unit(unit, None)
