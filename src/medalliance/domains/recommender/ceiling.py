"""How far any recommender can get on this data: the exact-set ceiling.

A recommender sees only the symptom set, so it gives every case with the same set the
same top k. Among the held-out cases whose set occurs at least N times in that part,
the best any such ranking can do is, with hindsight, the k herbs most frequent in those
very cases: its P@k is an upper bound for every model on them (an optimistic one, as it
is fitted to the cases it is scored on). Comparing it with the frequency baseline on the
same cases shows how much room there is where the data can tell.

    python -m medalliance.domains.recommender.ceiling     # prints the table
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from medalliance.domains.recommender.metrics import precision_recall_at
from medalliance.domains.recommender.model import TIE_BREAK

MIN_CASES = (1, 5, 10, 20, 50)


def exact_set_counts(
    symptom_sets: Sequence[tuple[int, ...]], truth: NDArray[np.floating]
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Per case: the herb counts over the cases with exactly its symptom set (itself
    included), and how many such cases there are."""
    keys = [tuple(sorted(s)) for s in symptom_sets]
    if len(keys) != len(truth):
        raise ValueError(f"{len(keys)} symptom sets for {len(truth)} cases")
    members: dict[tuple[int, ...], list[int]] = {}
    for row, key in enumerate(keys):
        members.setdefault(key, []).append(row)
    totals = {key: truth[rows].sum(axis=0) for key, rows in members.items()}
    counts = np.stack([totals[key] for key in keys]).astype(np.float32)
    sizes = np.array([len(members[key]) for key in keys], dtype=np.int64)
    return counts, sizes


def ceiling_rows(
    symptom_sets: Sequence[tuple[int, ...]],
    truth: NDArray[np.floating],
    methods: Mapping[str, NDArray[np.floating]],
    *,
    k: int = 5,
    min_cases: Sequence[int] = MIN_CASES,
) -> list[dict[str, float]]:
    """One row per threshold N: the cases whose set occurs ≥ N times, how many distinct
    sets they are, each method's P@k on them and the hindsight best ("ceiling").
    Ties in the ceiling are broken by the first method's scores."""
    counts, sizes = exact_set_counts(symptom_sets, truth)
    tie_break = next(iter(methods.values()))
    best = counts + TIE_BREAK * tie_break / max(float(np.abs(tie_break).max()), 1e-12)
    keys = [tuple(sorted(s)) for s in symptom_sets]
    rows = []
    for n in min_cases:
        selected = sizes >= n
        if not selected.any():
            continue
        row = {
            "min_cases": float(n),
            "cases": float(selected.sum()),
            "share": float(selected.mean()),
            "distinct_sets": float(len({keys[i] for i in np.flatnonzero(selected)})),
        }
        for name, scores in methods.items():
            row[name] = _precision(scores[selected], truth[selected], k)
        row["ceiling"] = _precision(best[selected], truth[selected], k)
        rows.append(row)
    return rows


def _precision(scores: NDArray[np.floating], truth: NDArray[np.floating], k: int) -> float:
    return precision_recall_at(scores, truth, cutoffs=(k,))[f"P@{k}"]


def main() -> None:
    """Print the ceiling for validation and test with the shipped model and the baseline."""
    from medalliance.domains.recommender import dataset, training
    from medalliance.domains.recommender.model import load_shipped

    data = dataset.load_prescriptions()
    parts = dataset.split(len(data))
    n_symptoms, n_herbs = dataset.symptom_vocabulary().size, dataset.herb_vocabulary().size
    x_train = dataset.multi_hot(data.symptoms, parts.train, n_symptoms)
    y_train = dataset.multi_hot(data.herbs, parts.train, n_herbs)
    conditional, popularity = training.fit_frequencies(x_train, y_train)
    model = load_shipped()
    print(
        "| part | cases whose set occurs ≥ N times in the part | distinct sets |"
        " frequency P@5 | model P@5 | best possible P@5 |"
    )
    print("|---|---|---|---|---|---|")
    for part, rows in (("validation", parts.validation), ("test", parts.test)):
        x = dataset.multi_hot(data.symptoms, rows, n_symptoms)
        y = dataset.multi_hot(data.herbs, rows, n_herbs)
        methods = {
            "frequency": training.conditional_frequency_scores(x, conditional, popularity),
            "model": model.scores(x),
        }
        for row in ceiling_rows([data.symptoms[i] for i in rows], y, methods):
            print(
                f"| {part} | N = {row['min_cases']:.0f}: {row['cases']:,.0f} "
                f"({row['share']:.0%}) | {row['distinct_sets']:.0f} | {row['frequency']:.4f} |"
                f" {row['model']:.4f} | {row['ceiling']:.4f} |"
            )


if __name__ == "__main__":
    main()
