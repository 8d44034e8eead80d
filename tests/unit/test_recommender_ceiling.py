"""The exact-set ceiling: the hindsight best P@k of any ranking that sees only the set."""

from __future__ import annotations

import numpy as np
import pytest

from medalliance.domains.recommender.ceiling import ceiling_rows, exact_set_counts

# Three cases share the set {0}, one has {1}; four herbs.
SETS = [(0,), (0,), (0,), (1,)]
TRUTH = np.array(
    [[1, 1, 0, 0], [0, 1, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]],
    dtype=np.float32,
)


def test_counts_pool_the_cases_with_exactly_the_same_set() -> None:
    counts, sizes = exact_set_counts([(0,), (0,), (0,), (1,)], TRUTH)
    assert counts[0].tolist() == [1, 3, 1, 0]
    assert counts[2].tolist() == [1, 3, 1, 0]
    assert counts[3].tolist() == [0, 0, 0, 1]
    assert sizes.tolist() == [3, 3, 3, 1]
    # the order of the symptoms in a set does not matter
    _, sizes = exact_set_counts([(0, 1), (1, 0)], TRUTH[:2])
    assert sizes.tolist() == [2, 2]


def test_ceiling_rows_by_hand() -> None:
    always_herb_0 = np.tile(np.array([0.9, 0.5, 0.1, 0.0]), (4, 1))
    rows = ceiling_rows(SETS, TRUTH, {"first": always_herb_0}, k=1, min_cases=(1, 3, 4))
    assert [r["min_cases"] for r in rows] == [1, 3]  # no set occurs 4 times: no row
    everyone, repeated = rows
    assert everyone["cases"] == 4 and everyone["distinct_sets"] == 2
    # herb 0 is right only for case 0; the best per set is herb 1 for {0}, herb 3 for {1}
    assert everyone["first"] == pytest.approx(1 / 4)
    assert everyone["ceiling"] == pytest.approx(1.0)
    assert repeated["cases"] == 3 and repeated["share"] == pytest.approx(3 / 4)
    assert repeated["first"] == pytest.approx(1 / 3)
    assert repeated["ceiling"] == pytest.approx(1.0)


def test_no_ranking_beats_the_ceiling() -> None:
    rng = np.random.default_rng(3)
    sets = [(int(s),) for s in rng.integers(0, 6, size=200)]
    truth = (rng.random((200, 30)) < 0.2).astype(np.float32)
    truth[truth.sum(axis=1) == 0, 0] = 1.0
    methods = {f"random {i}": rng.random((200, 30)) for i in range(5)}
    for row in ceiling_rows(sets, truth, methods, k=5, min_cases=(1, 20)):
        assert all(row["ceiling"] >= row[name] for name in methods)


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="symptom sets"):
        exact_set_counts(SETS[:3], TRUTH)
