"""Metrics, the seeded split and the shipped data of the herb recommender."""

from __future__ import annotations

import numpy as np
import pytest

from medalliance.domains.recommender import dataset, training
from medalliance.domains.recommender.metrics import (
    paired_difference,
    paired_difference_by_group,
    precision_recall_at,
    top_k,
)


def test_precision_and_recall_on_a_hand_checked_case() -> None:
    # Case 1: truth {0, 1}; ranking 0, 2, 1, 3 → top-2 hits 1 (P 1/2, R 1/2),
    #         top-3 hits 2 (P 2/3, R 1).
    # Case 2: truth {3}; ranking 3, 2, 1, 0 → top-2 hits 1 (P 1/2, R 1), top-3 (P 1/3, R 1).
    scores = np.array([[0.9, 0.5, 0.7, 0.1], [0.1, 0.2, 0.3, 0.4]])
    truth = np.array([[1, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float32)
    result = precision_recall_at(scores, truth, cutoffs=(2, 3))
    assert result["P@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert result["R@2"] == pytest.approx((1 / 2 + 1) / 2)
    assert result["P@3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert result["R@3"] == pytest.approx((1 + 1) / 2)


def test_ties_rank_the_lower_index_first() -> None:
    assert top_k(np.array([[0.5, 0.5, 0.9, 0.5]]), 3).tolist() == [[2, 0, 1]]


def test_metrics_refuse_mismatched_shapes_and_empty_truth() -> None:
    with pytest.raises(ValueError, match="shape"):
        precision_recall_at(np.zeros((1, 3)), np.ones((1, 4)))
    with pytest.raises(ValueError, match="at least one"):
        precision_recall_at(np.zeros((1, 3)), np.zeros((1, 3)))


def test_paired_difference_of_precision() -> None:
    truth = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)
    good = np.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0]])
    bad = np.array([[0.0, 0.1, 0.9], [0.9, 0.1, 0.0]])
    difference, error = paired_difference(good, bad, truth, k=1)
    assert difference == pytest.approx(1.0)
    assert error == pytest.approx(0.0)


def test_the_split_is_reproducible_disjoint_and_complete() -> None:
    n = len(dataset.load_prescriptions())
    first, again = dataset.split(n), dataset.split(n)
    for part in ("train", "validation", "test"):
        assert np.array_equal(getattr(first, part), getattr(again, part))
    assert first.sizes() == {"train": 18335, "validation": 2291, "test": 2291}
    everything = np.concatenate([first.train, first.validation, first.test])
    assert np.array_equal(np.sort(everything), np.arange(n))
    other = dataset.split(n, seed=dataset.SPLIT_SEED + 1)
    assert not np.array_equal(first.validation, other.validation)


def test_the_shipped_data_is_the_provenance_file() -> None:
    data = dataset.load_prescriptions()
    assert len(data) == 22917
    assert dataset.symptom_vocabulary().size == 360
    assert dataset.herb_vocabulary().size == 753
    assert dataset.data_sha256() == (
        "0a6fcbb8dedc0d4b6736c42ba259bb9b538efc503e21693b232cce6f24b08383"
    )
    # The first line of the source file: "0 1<TAB>0 1 2 3 4 5 6 7".
    assert data.symptoms[0] == (0, 1)
    assert data.herbs[0] == tuple(range(8))
    assert dataset.symptom_vocabulary().names[1] == "咳嗽"


def test_multi_hot_marks_the_members() -> None:
    matrix = dataset.multi_hot(((0, 2), (1,)), np.array([1, 0]), 3)
    assert matrix.tolist() == [[0, 1, 0], [1, 0, 1]]


def test_paired_difference_by_group_splits_the_cases() -> None:
    # Group "1": a hits both cases at k=1, b neither; group "2": both hit their one case.
    truth = np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float32)
    a = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1]])
    b = np.array([[0.1, 0.9], [0.9, 0.1], [0.9, 0.1]])
    result = paired_difference_by_group(a, b, truth, ["1", "1", "2"], k=1)
    assert list(result) == ["1", "2"]
    assert result["1"] == {
        "cases": 2.0,
        "P@1 a": 1.0,
        "P@1 b": 0.0,
        "difference": 1.0,
        "standard error": 0.0,
    }
    assert result["2"] == {"cases": 1.0, "P@1 a": 1.0, "P@1 b": 1.0}  # no error for one case
    with pytest.raises(ValueError, match="group labels"):
        paired_difference_by_group(a, b, truth, ["1"], k=1)


def test_cases_are_grouped_by_number_of_symptoms() -> None:
    x = np.array([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=np.float32)
    assert training.symptom_count_groups(x) == ["1", "2", "4+"]
