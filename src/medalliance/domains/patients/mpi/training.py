"""Estimate a match model from data, the way splink does: u from random pairs (exact
levels from value frequencies), name frequencies for term-frequency adjustment, then
m by expectation–maximisation in one session per blocking rule, each session leaving
out the comparisons its rule blocked on, and the sessions' estimates averaged."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medalliance.domains.patients.mpi.blocking import BLOCKING_RULES, _blocks
from medalliance.domains.patients.mpi.comparisons import COMPARISONS
from medalliance.domains.patients.mpi.features import Features
from medalliance.domains.patients.mpi.model import (
    MatchModel,
    estimate_u,
    expectation_maximisation,
    level_matrix,
    term_frequencies,
)

# blocking rule → the comparisons it fixes
TRAINING_SESSIONS: dict[str, frozenset[str]] = {
    "birth_date": frozenset({"birth_date"}),
    "full_pinyin": frozenset({"family_name", "given_name"}),
    "id_number": frozenset({"id_number"}),
    "postcode_initials": frozenset({"locality"}),
}
PAIRS_PER_SESSION = 150_000
MAX_BLOCK = 200


def _session_pairs(records: Sequence[Features], rule: str) -> list[tuple[Features, Features]]:
    pairs: list[tuple[Features, Features]] = []
    for members in _blocks(records, BLOCKING_RULES[rule]).values():
        if len(members) < 2 or len(members) > MAX_BLOCK:
            continue
        for x, i in enumerate(members):
            for j in members[x + 1 :]:
                pairs.append((records[i], records[j]))
                if len(pairs) >= PAIRS_PER_SESSION:
                    return pairs
    return pairs


def train(
    records: Sequence[Features],
    *,
    description: str,
    seed: int = 1,
    link_threshold: float = 0.99,
    review_threshold: float = 0.5,
    start: MatchModel | None = None,
) -> MatchModel:
    u = estimate_u(records, seed=seed)
    estimates: dict[str, list[list[float]]] = {c.name: [] for c in COMPARISONS}
    for rule, fixed in TRAINING_SESSIONS.items():
        pairs = _session_pairs(records, rule)
        if len(pairs) < 50:
            continue
        m, _ = expectation_maximisation(
            level_matrix(pairs), u, fixed=fixed, start_m=None if start is None else start.m
        )
        for name, values in m.items():
            if name not in fixed:
                estimates[name].append(values)
    m_final: dict[str, list[float]] = {}
    for comp in COMPARISONS:
        found = estimates[comp.name]
        if found:
            m_final[comp.name] = [float(x) for x in np.mean(np.array(found), axis=0)]
        elif start is not None:
            m_final[comp.name] = start.m[comp.name]
        else:
            m_final[comp.name] = [0.9] + [0.1 / (len(comp.levels) - 1)] * (len(comp.levels) - 1)
    # λ: the share of matches among all pairs ≈ duplicates per record / records.
    prior = _estimate_prior(records, MatchModel(prior=0.5, m=m_final, u=u))
    return MatchModel(
        prior=prior,
        m=m_final,
        u=u,
        tf=term_frequencies(records),
        link_threshold=link_threshold,
        review_threshold=review_threshold,
        trained_on=description,
        matches_per_record=prior * (len(records) - 1),
    )


def _estimate_prior(records: Sequence[Features], model: MatchModel) -> float:
    """Expected matches / all pairs, counting matches among blocked pairs (the blocks
    catch nearly all true matches)."""
    from medalliance.domains.patients.mpi.blocking import candidate_pairs
    from medalliance.domains.patients.mpi.model import pair_probabilities

    pairs = []
    for i, j in candidate_pairs(records, max_block=MAX_BLOCK):
        pairs.append((records[i], records[j]))
        if len(pairs) >= 4 * PAIRS_PER_SESSION:
            break
    n = len(records)
    total_pairs = n * (n - 1) / 2
    # Bayes with a neutral prior gives likelihood ratios; solve for λ by fixed point.
    matrix = level_matrix(pairs)
    lam = 1e-4
    for _ in range(50):
        model.prior = lam
        expected = float(pair_probabilities(model, matrix).sum())
        new = min(max(expected / total_pairs, 1e-9), 0.5)
        if abs(new - lam) < 1e-12:
            break
        lam = new
    return lam
