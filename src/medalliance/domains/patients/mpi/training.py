"""Estimate a match model from data, the way splink does: u from random pairs (exact
levels from value frequencies), name frequencies for term-frequency adjustment (the
most common names; a rare name's frequency does not carry over to another registry),
then m by expectation–maximisation in one session per blocking rule, each session
leaving out the comparisons its rule blocked on, and the sessions' estimates
averaged; last λ, the share of matches among all pairs, from the candidate pairs.
With m and λ known, the exact-agreement u is recounted without the matches expected
among the pairs that share a value (a near-unique ID number is shared almost only by
the same person), and λ once more with it.

Everything runs on the columnar ``FeatureTable`` with the vectorised comparisons, so
a registry of a million records trains in seconds. ``left_size`` turns deduplication
into linkage: the first ``left_size`` records are one file, the rest the other, and
only pairs across the two count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medalliance.domains.patients.mpi.blocking import (
    BlockingRule,
    candidate_pair_arrays,
    sample_block_pairs,
)
from medalliance.domains.patients.mpi.comparisons import (
    COMPARISONS,
    Index,
    LevelMatrix,
    level_matrix,
)
from medalliance.domains.patients.mpi.features import Codes, Features, FeatureTable
from medalliance.domains.patients.mpi.model import (
    LINK_THRESHOLD,
    PROBABILITY_FLOOR,
    REVIEW_THRESHOLD,
    TF_FIELDS,
    MatchModel,
    _distribution,
    _pair_weights,
    expectation_maximisation,
    probabilities,
)


@dataclass(frozen=True, slots=True)
class Session:
    """One EM session: pairs sharing a key of ``rule``; ``fixed`` comparisons agree
    (or are entangled with the key) inside the blocks and are left out; for the
    ``entangled`` ones u is also measured among the session's non-matches."""

    rule: BlockingRule
    fixed: frozenset[str]
    entangled: frozenset[str] = frozenset()


# A resident ID number contains the birth date (and the area and sex), so two people
# born on the same day in the same district have ID numbers two or even one edit apart
# far more often than random pairs do: the birth-date session leaves the ID out of EM
# (otherwise EM takes "same day, same district, IDs two edits apart" for a cluster of
# matches), and u of the fuzzy ID levels becomes the larger of its rate among random
# pairs and among the non-matches born on the same day. Independent identifiers (a
# social security number) keep their random-pair u.
TRAINING_SESSIONS: dict[str, Session] = {
    "birth_date": Session(
        BlockingRule("birth_date", ("birth_date",)),
        frozenset({"birth_date", "id_number"}),
        entangled=frozenset({"id_number"}),
    ),
    "full_pinyin": Session(
        BlockingRule("full_pinyin", ("full_pinyin",)), frozenset({"family_name", "given_name"})
    ),
    "id_number": Session(BlockingRule("id_number", ("id_number",)), frozenset({"id_number"})),
    "phone": Session(BlockingRule("phone", ("phone",)), frozenset({"phone"})),
}
PAIRS_PER_SESSION = 300_000
U_SAMPLES = 500_000
PRIOR_SAMPLES = 1_000_000
MAX_BLOCK = 200
TF_TOP = 500
STEPS = 3 + len(TRAINING_SESSIONS)  # for progress: u, frequencies, sessions, λ


class _Sides:
    """Which rows are compared with which: within ``left``, or ``left`` with ``right``."""

    def __init__(self, size: int, left_size: int | None) -> None:
        self.size = size
        if left_size is None:
            self.left: Index = np.arange(size)
            self.right: Index | None = None
        else:
            self.left, self.right = np.arange(left_size), np.arange(left_size, size)

    @property
    def total_pairs(self) -> float:
        if self.right is None:
            return self.size * (self.size - 1) / 2
        return float(len(self.left)) * float(len(self.right))

    @property
    def others(self) -> int:
        """How many records one (left) record is compared against."""
        return self.size - 1 if self.right is None else len(self.right)

    def random_pairs(self, samples: int, rng: np.random.Generator) -> tuple[Index, Index]:
        if self.right is None:
            i, j = rng.integers(0, self.size, samples), rng.integers(0, self.size, samples)
            keep = i != j
            return i[keep], j[keep]
        return rng.choice(self.left, samples), rng.choice(self.right, samples)


def _exact_codes(table: FeatureTable) -> dict[str, npt.NDArray[np.int32]]:
    """Records × values whose exact agreement is too rare to sample, by comparison."""
    return {
        "family_name": table.family[:, None],
        "given_name": table.given[:, None],
        "birth_date": table.birth[:, None],
        "id_number": table.id_number[:, None],
        "phone": table.phones,
        "street": table.street[:, None],
    }


def _exact_agreements(table: FeatureTable, sides: _Sides) -> dict[str, tuple[float, float]]:
    """For each of ``_exact_codes``: (pairs that share a value, pairs that both have
    one), counting pairs of two different records (across the sides for linkage)."""
    result: dict[str, tuple[float, float]] = {}
    for name, codes in _exact_codes(table).items():
        left = codes[sides.left].reshape(-1)
        left = left[left >= 0]
        if sides.right is None:
            counts = np.bincount(left).astype(np.float64)
            shared = float((counts * (counts - 1)).sum() / 2)
            both = len(left) * (len(left) - 1) / 2
        else:
            right = codes[sides.right].reshape(-1)
            right = right[right >= 0]
            size = int(max(left.max(initial=-1), right.max(initial=-1))) + 1
            shared = float(
                (
                    np.bincount(left, minlength=size).astype(np.float64)
                    * np.bincount(right, minlength=size)
                ).sum()
            )
            both = float(len(left)) * float(len(right))
        if both >= 1:
            result[name] = (shared, both)
    return result


def _with_exact(levels: list[float], exact: float, floor: float) -> list[float]:
    """``levels`` with a new exact-agreement rate, the other levels rescaled."""
    rest = levels[1:]
    scale = (1 - exact) / max(sum(rest), PROBABILITY_FLOOR)
    return [exact] + [max(x * scale, floor) for x in rest]


def estimate_u(
    table: FeatureTable,
    sides: _Sides,
    agreements: dict[str, tuple[float, float]],
    *,
    samples: int,
    rng: np.random.Generator,
    workers: int,
) -> dict[str, list[float]]:
    """Agreement rates among non-matches.

    Random pairs are almost all non-matches. Exact agreement on a field with many
    values (birth date, ID number) is too rare to sample, so it is computed from the
    value frequencies instead: the share of pairs of records that have the same value
    (refined once λ and m are known, see ``_without_matches``).
    """
    if sides.total_pairs < 1:
        raise ValueError("need at least two records to estimate u")
    i, j = sides.random_pairs(samples, rng)
    u = _distribution(level_matrix(table, i, j, workers=workers))
    for name, (shared, both) in agreements.items():
        u[name] = _with_exact(u[name], max(shared, 1) / both, 1 / samples)
    return u


def term_frequencies(table: FeatureTable, *, top: int = TF_TOP) -> dict[str, dict[str, float]]:
    result: dict[str, dict[str, float]] = {}
    for comparison, attribute in TF_FIELDS.items():
        codes: Codes = getattr(table, attribute)
        present = codes[codes >= 0]
        if len(present) == 0:
            continue
        counts = np.bincount(present)
        order = np.argsort(-counts, kind="stable")[:top]
        order = order[counts[order] > 0]
        total = float(len(present))
        result[comparison] = {
            table.names.values[code]: float(counts[code]) / total for code in order.tolist()
        }
    return result


def train(
    records: Sequence[Features] | FeatureTable,
    *,
    description: str,
    seed: int = 1,
    link_threshold: float = LINK_THRESHOLD,
    review_threshold: float = REVIEW_THRESHOLD,
    start: MatchModel | None = None,
    left_size: int | None = None,
    candidates: tuple[Index, Index] | None = None,
    workers: int = 1,
    on_step: Callable[[str], None] | None = None,
) -> MatchModel:
    """A model estimated from ``records`` without labels.

    ``candidates`` are the blocked pairs if the caller already has them (batch
    linkage), else they are found here; ``on_step`` hears each finished step.
    """
    table = records if isinstance(records, FeatureTable) else FeatureTable.of(records)
    sides = _Sides(len(table), left_size)
    rng = np.random.default_rng(seed)
    step = on_step or (lambda _name: None)
    agreements = _exact_agreements(table, sides)
    u = estimate_u(table, sides, agreements, samples=U_SAMPLES, rng=rng, workers=workers)
    step("u from random pairs")
    tf = term_frequencies(table)
    step("name frequencies")
    estimates: dict[str, list[list[float]]] = {c.name: [] for c in COMPARISONS}
    for name, session in TRAINING_SESSIONS.items():
        fixed = session.fixed
        i, j = sample_block_pairs(
            table,
            sides.left,
            sides.right,
            session.rule,
            samples=PAIRS_PER_SESSION,
            max_block=MAX_BLOCK,
            rng=rng,
        )
        if len(i) >= 50:
            matrix = level_matrix(table, i, j, workers=workers)
            m, prior = expectation_maximisation(
                matrix, u, fixed=fixed, start_m=None if start is None else start.m
            )
            for comparison, values in m.items():
                if comparison not in fixed:
                    estimates[comparison].append(values)
            if session.entangled:
                u = _raise_fuzzy_u(u, matrix, m, prior, session)
        step(f"m by EM, pairs sharing {name}")
    m_final: dict[str, list[float]] = {}
    for comp in COMPARISONS:
        found = estimates[comp.name]
        if found:
            m_final[comp.name] = [float(x) for x in np.mean(np.array(found), axis=0)]
        elif start is not None:
            m_final[comp.name] = start.m[comp.name]
        else:
            m_final[comp.name] = [0.9] + [0.1 / (len(comp.levels) - 1)] * (len(comp.levels) - 1)
    model = MatchModel(
        prior=0.5,
        m=m_final,
        u=u,
        tf=tf,
        link_threshold=link_threshold,
        review_threshold=review_threshold,
        trained_on=description,
    )
    if candidates is None:
        candidates = candidate_pair_arrays(table, sides.left, sides.right)
    sample = _CandidateSample(table, candidates, rng=rng, workers=workers)
    posterior = _fit_prior(model, table, sides, sample)
    model.u = _without_matches(model.u, agreements, sample, posterior)
    _fit_prior(model, table, sides, sample)
    model.matches_per_record = model.prior * sides.others
    step("λ from the candidate pairs")
    return model


def _raise_fuzzy_u(
    u: dict[str, list[float]],
    matrix: LevelMatrix,
    m: dict[str, list[float]],
    prior: float,
    session: Session,
) -> dict[str, list[float]]:
    """u of the entangled comparisons' fuzzy levels (all but exact and the last) raised
    to their rate among this session's non-matches (pairs weighted by 1 − posterior)."""
    active = np.array([c.name not in session.fixed for c in COMPARISONS])
    weights = _pair_weights(MatchModel(prior=prior, m=m, u=u), matrix, active=active)
    chance = _distribution(matrix, 1 - probabilities(weights))
    raised = dict(u)
    for name in session.entangled:
        levels = list(u[name])
        for level in range(1, len(levels) - 1):
            levels[level] = max(levels[level], chance[name][level])
        levels[-1] = max(1 - sum(levels[:-1]), PROBABILITY_FLOOR)
        raised[name] = levels
    return raised


class _CandidateSample:
    """A uniform sample of the candidate pairs with their levels; ``scale`` counts how
    many candidate pairs each stands for."""

    def __init__(
        self,
        table: FeatureTable,
        candidates: tuple[Index, Index],
        *,
        rng: np.random.Generator,
        workers: int,
    ) -> None:
        i, j = candidates
        self.scale = 1.0
        if len(i) > PRIOR_SAMPLES:
            chosen = np.sort(rng.choice(len(i), PRIOR_SAMPLES, replace=False))
            self.scale = len(i) / PRIOR_SAMPLES
            i, j = i[chosen], j[chosen]
        self.left = i
        self.matrix = level_matrix(table, i, j, workers=workers)


def _fit_prior(
    model: MatchModel, table: FeatureTable, sides: _Sides, sample: _CandidateSample
) -> npt.NDArray[np.float64]:
    """Set λ = expected matches / all pairs, counting the matches among the candidate
    pairs (the blocks catch nearly all true matches); returns the sample's posteriors."""
    neutral = MatchModel(prior=0.5, m=model.m, u=model.u, tf=model.tf)
    ratios = neutral.pair_weights(sample.matrix, table=table, left=sample.left)
    total_pairs = max(sides.total_pairs, 1.0)
    lam = 1e-4
    posterior: npt.NDArray[np.float64] = np.zeros(len(ratios))
    for _ in range(100):
        posterior = probabilities(ratios + np.log2(lam / (1 - lam)))
        new = min(max(float(posterior.sum()) * sample.scale / total_pairs, 1e-12), 0.5)
        done = abs(new - lam) <= 1e-6 * lam
        lam = new
        if done:
            break
    model.prior = lam if len(ratios) else 1e-9
    return posterior


def _without_matches(
    u: dict[str, list[float]],
    agreements: dict[str, tuple[float, float]],
    sample: _CandidateSample,
    posterior: npt.NDArray[np.float64],
) -> dict[str, list[float]]:
    """Exact-agreement u counted among non-matches only: the pairs sharing a value less
    the matches expected among them. Near-unique identifiers (ID, phone) are shared
    almost only by the same person, and counting those pairs as chance agreement
    would undervalue an exact ID match, the strongest evidence there is."""
    refined = dict(u)
    columns = {c.name: k for k, c in enumerate(COMPARISONS)}
    for name, (shared, both) in agreements.items():
        matched = float(posterior[sample.matrix[:, columns[name]] == 0].sum()) * sample.scale
        refined[name] = _with_exact(u[name], max(shared - matched, 1) / both, PROBABILITY_FLOOR)
    return refined
