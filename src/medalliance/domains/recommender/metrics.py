"""Precision@k and recall@k for set-valued recommendation (as in the SMGCN paper):
per case, hits = |top-k ∩ truth|; precision = hits / k, recall = hits / |truth|;
both averaged over cases."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

CUTOFFS = (5, 10, 20)


def top_k(scores: NDArray[np.floating], k: int) -> NDArray[np.int64]:
    """Column indices of the k best scores per row, best first (ties: lower index first)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, :k].astype(np.int64)


def precision_recall_at(
    scores: NDArray[np.floating], truth: NDArray[np.floating], cutoffs: Sequence[int] = CUTOFFS
) -> dict[str, float]:
    """``{"P@5": …, "R@5": …, …}`` for scores and multi-hot truth of the same shape."""
    if scores.shape != truth.shape:
        raise ValueError(f"scores {scores.shape} and truth {truth.shape} differ in shape")
    sizes = truth.sum(axis=1)
    if np.any(sizes == 0):
        raise ValueError("every case needs at least one true item")
    ranked = top_k(scores, max(cutoffs))
    result: dict[str, float] = {}
    for k in cutoffs:
        hits = np.take_along_axis(truth, ranked[:, :k], axis=1).sum(axis=1)
        result[f"P@{k}"] = float(np.mean(hits / k))
        result[f"R@{k}"] = float(np.mean(hits / sizes))
    return result


def paired_difference(
    scores_a: NDArray[np.floating],
    scores_b: NDArray[np.floating],
    truth: NDArray[np.floating],
    k: int = 5,
) -> tuple[float, float]:
    """Mean per-case difference in precision@k (a − b) and its standard error: the two
    methods are scored on the same cases, so the paired error is the honest one."""
    hits_a = np.take_along_axis(truth, top_k(scores_a, k), axis=1).sum(axis=1) / k
    hits_b = np.take_along_axis(truth, top_k(scores_b, k), axis=1).sum(axis=1) / k
    diff = hits_a - hits_b
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))


def paired_difference_by_group(
    scores_a: NDArray[np.floating],
    scores_b: NDArray[np.floating],
    truth: NDArray[np.floating],
    groups: Sequence[str],
    k: int = 5,
) -> dict[str, dict[str, float]]:
    """Precision@k of a and b, and their paired difference, within each group of cases
    (e.g. by number of query symptoms): where a model helps, not just how much on average.
    Groups come in sorted order."""
    if len(groups) != len(truth):
        raise ValueError(f"{len(groups)} group labels for {len(truth)} cases")
    labels = np.asarray(groups)
    result: dict[str, dict[str, float]] = {}
    for group in sorted(set(groups)):
        rows = labels == group
        a, b, y = scores_a[rows], scores_b[rows], truth[rows]
        summary = {
            "cases": float(rows.sum()),
            f"P@{k} a": precision_recall_at(a, y, cutoffs=(k,))[f"P@{k}"],
            f"P@{k} b": precision_recall_at(b, y, cutoffs=(k,))[f"P@{k}"],
        }
        if rows.sum() > 1:  # a standard error needs two cases
            difference, error = paired_difference(a, b, y, k)
            summary |= {"difference": difference, "standard error": error}
        result[group] = summary
    return result
