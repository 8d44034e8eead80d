"""The Fellegi–Sunter model: m and u probabilities per comparison level.

A pair's match weight is log2(λ/(1-λ)) + Σ log2(m/u) over its comparison levels,
and its match probability 2^w / (1 + 2^w). ``u`` (how often non-matches agree by
chance) is estimated from random pairs; ``m`` (how often true matches agree) and
λ are estimated by expectation–maximisation over blocked candidate pairs, with u
held fixed, as splink does. Exact name agreement is weighed by the name's own
frequency (term-frequency adjustment): two records called 王伟 prove less than
two called 欧阳娜娜.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from medalliance.domains.patients.mpi.comparisons import COMPARISONS, LevelMatrix, levels
from medalliance.domains.patients.mpi.features import Features, FeatureTable

PROBABILITY_FLOOR = 1e-6
# Matching parameters, not clinical rules. At or above LINK_THRESHOLD a record links by
# itself. From REVIEW_THRESHOLD up a person decides: measured on the synthetic registry,
# a duplicate who moved to another district, changed phone and came without an ID card
# (same name, sex and birth date, nothing else shared) scores 0.11-0.52 in an index of
# 2,000 people, and against 1,000,000 people none of 200 new registrations had a
# candidate at 0.1 or above (benchmarks/bench_patient_reads.py). At 0.5 three in four
# of those duplicates became new people unseen.
LINK_THRESHOLD = 0.99
REVIEW_THRESHOLD = 0.1
TF_FIELDS = {"family_name": "family", "given_name": "given"}


@dataclass
class MatchModel:
    prior: float
    m: dict[str, list[float]]
    u: dict[str, list[float]]
    tf: dict[str, dict[str, float]] = field(default_factory=dict)
    link_threshold: float = LINK_THRESHOLD
    review_threshold: float = REVIEW_THRESHOLD
    trained_on: str = ""
    matches_per_record: float | None = None  # λ·(n−1) of the training data
    _table: npt.NDArray[np.float64] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def for_population(self, records: int) -> MatchModel:
        """The same model with λ for one record compared against ``records`` others.

        λ is a property of the data's size: the chance that two random records are the
        same person falls as the index grows, so a fixed λ would over-link at scale.
        """
        if self.matches_per_record is None or records < 2:
            return self
        prior = min(max(self.matches_per_record / records, 1e-12), 0.5)
        return replace(self, prior=prior)

    # -- scoring -------------------------------------------------------------------

    def weight_table(self) -> npt.NDArray[np.float64]:
        """comparisons × (max levels + 1): log2(m/u); the last column (missing) is 0."""
        width = max(len(c.levels) for c in COMPARISONS) + 1
        table = np.zeros((len(COMPARISONS), width))
        for i, comp in enumerate(COMPARISONS):
            for level in range(len(comp.levels)):
                m = max(self.m[comp.name][level], PROBABILITY_FLOOR)
                u = max(self.u[comp.name][level], PROBABILITY_FLOOR)
                table[i, level] = math.log2(m / u)
        return table

    def prior_weight(self) -> float:
        return math.log2(self.prior / (1 - self.prior))

    def _scoring_table(self) -> npt.NDArray[np.float64]:
        """``weight_table`` once per model instance: ``score`` runs per candidate pair.
        (m and u are never changed in place; training builds new models.)"""
        if self._table is None:
            self._table = self.weight_table()
        return self._table

    def tf_weight(self, comparison: str, value: str | None) -> float | None:
        """The exact-agreement weight for this particular value, if its frequency is known."""
        if value is None or comparison not in self.tf:
            return None
        freq = self.tf[comparison].get(value)
        if freq is None:
            return None
        m = max(self.m[comparison][0], PROBABILITY_FLOOR)
        return math.log2(m / max(freq, PROBABILITY_FLOOR))

    def score(self, a: Features, b: Features) -> Score:
        found = levels(a, b)
        contributions: dict[str, float] = {}
        total = self.prior_weight()
        table = self._scoring_table()
        for i, (comp, level) in enumerate(zip(COMPARISONS, found, strict=True)):
            if level is None:
                continue
            weight = float(table[i, level])
            if level == 0 and comp.name in TF_FIELDS:
                adjusted = self.tf_weight(comp.name, getattr(a, TF_FIELDS[comp.name]))
                if adjusted is not None:
                    weight = adjusted
            contributions[comp.name] = weight
            total += weight
        return Score(
            weight=total, probability=probability(total), levels=found, contributions=contributions
        )

    def pair_weights(
        self,
        matrix: LevelMatrix,
        *,
        table: FeatureTable | None = None,
        left: npt.NDArray[np.intp] | None = None,
    ) -> npt.NDArray[np.float64]:
        """``score(a, b).weight`` for many pairs at once, from their level matrix; with
        the table and the left rows the exact name agreements get their term-frequency
        weight, as in ``score``. Summed in the same order, so the floats are equal."""
        table_w = self._scoring_table()
        missing = table_w.shape[1] - 1
        total = np.full(len(matrix), self.prior_weight())
        for i, comp in enumerate(COMPARISONS):
            column = matrix[:, i]
            weight = table_w[i, np.where(column < 0, missing, column)]
            attribute = TF_FIELDS.get(comp.name)
            if attribute is not None and table is not None and left is not None:
                adjusted = self._tf_by_code(comp.name, table)[getattr(table, attribute)[left]]
                weight = np.where((column == 0) & ~np.isnan(adjusted), adjusted, weight)
            total += weight
        return total

    def _tf_by_code(self, comparison: str, table: FeatureTable) -> npt.NDArray[np.float64]:
        """The term-frequency weight of each name in the table's vocabulary (NaN where
        its frequency is unknown, and for the missing code -1, the last entry)."""
        by_code = np.full(len(table.names) + 1, np.nan)
        known = self.tf.get(comparison, {})
        if len(table.names) < len(known):  # an online block: few names, look each up
            for position, value in enumerate(table.names.values):
                if value in known:
                    by_code[position] = self.tf_weight(comparison, value)
            return by_code
        for value in known:
            code = table.names.index.get(value)
            if code is not None:
                by_code[code] = self.tf_weight(comparison, value)
        return by_code

    def decide(self, probability_: float) -> str:
        if probability_ >= self.link_threshold:
            return "link"
        if probability_ >= self.review_threshold:
            return "review"
        return "distinct"

    # -- persistence ---------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(
            {
                "prior": self.prior,
                "m": self.m,
                "u": self.u,
                "tf": self.tf,
                "link_threshold": self.link_threshold,
                "review_threshold": self.review_threshold,
                "trained_on": self.trained_on,
                "matches_per_record": self.matches_per_record,
                "levels": {c.name: list(c.levels) for c in COMPARISONS},
            },
            ensure_ascii=False,
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> MatchModel:
        data: dict[str, Any] = json.loads(text)
        return cls(
            prior=float(data["prior"]),
            m={k: [float(x) for x in v] for k, v in data["m"].items()},
            u={k: [float(x) for x in v] for k, v in data["u"].items()},
            tf={k: {n: float(f) for n, f in v.items()} for k, v in data.get("tf", {}).items()},
            link_threshold=float(data.get("link_threshold", LINK_THRESHOLD)),
            review_threshold=float(data.get("review_threshold", REVIEW_THRESHOLD)),
            trained_on=str(data.get("trained_on", "")),
            matches_per_record=data.get("matches_per_record"),
        )


@dataclass(frozen=True, slots=True)
class Score:
    weight: float
    probability: float
    levels: tuple[int | None, ...]
    contributions: dict[str, float]


def probability(weight: float) -> float:
    if weight > 60:
        return 1.0
    if weight < -60:
        return 0.0
    odds: float = 2.0**weight
    return odds / (1 + odds)


def probabilities(weights: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``probability`` of each weight."""
    odds = np.power(2.0, np.clip(weights, -60, 60))
    result: npt.NDArray[np.float64] = np.where(
        weights > 60, 1.0, np.where(weights < -60, 0.0, odds / (1 + odds))
    )
    return result


def default_model() -> MatchModel:
    """The parameters shipped in the package (see ``default_model.json`` for provenance)."""
    text = resources.files(__package__).joinpath("default_model.json").read_text("utf-8")
    return MatchModel.from_json(text)


# -- training -----------------------------------------------------------------------


def _distribution(
    matrix: LevelMatrix, weights: npt.NDArray[np.float64] | None = None
) -> dict[str, list[float]]:
    result: dict[str, list[float]] = {}
    for i, comp in enumerate(COMPARISONS):
        column = matrix[:, i]
        w = np.ones(len(column)) if weights is None else weights
        present = column >= 0
        denominator = float(w[present].sum())
        counts = [float(w[present & (column == lvl)].sum()) for lvl in range(len(comp.levels))]
        # Laplace smoothing keeps every level possible.
        result[comp.name] = [(c + 0.5) / (denominator + 0.5 * len(counts)) for c in counts]
    return result


def expectation_maximisation(
    matrix: LevelMatrix,
    u: dict[str, list[float]],
    *,
    fixed: frozenset[str] = frozenset(),
    start_m: dict[str, list[float]] | None = None,
    prior: float = 0.1,
    iterations: int = 30,
    tolerance: float = 1e-5,
) -> tuple[dict[str, list[float]], float]:
    """Estimate m and λ over candidate pairs with u held fixed.

    ``fixed`` names the comparisons the pairs were blocked on: inside a block they
    agree by construction, so they say nothing here and are left out (splink's
    per-blocking-rule training sessions).
    """
    m = {
        c.name: list((start_m or {}).get(c.name) or _initial_m(len(c.levels))) for c in COMPARISONS
    }
    active = np.array([c.name not in fixed for c in COMPARISONS])
    for _ in range(iterations):
        model = MatchModel(prior=prior, m=m, u=u)
        weights = _pair_weights(model, matrix, active=active)
        posterior = 1 / (1 + np.power(2.0, -np.clip(weights, -60, 60)))
        new_prior = float(np.clip(posterior.mean(), 1e-6, 1 - 1e-6))
        estimated = _distribution(matrix, posterior)
        new_m = {name: (m[name] if name in fixed else estimated[name]) for name in m}
        change = max(abs(a - b) for name in m for a, b in zip(m[name], new_m[name], strict=True))
        m, prior = new_m, new_prior
        if change < tolerance:
            break
    return m, prior


def _initial_m(n_levels: int) -> list[float]:
    """Start EM believing true matches mostly agree exactly."""
    rest = 0.1 / (n_levels - 1)
    return [0.9] + [rest] * (n_levels - 1)


def _pair_weights(
    model: MatchModel, matrix: LevelMatrix, *, active: npt.NDArray[np.bool_] | None = None
) -> npt.NDArray[np.float64]:
    table = model.weight_table()
    if active is not None:
        table = table * active[:, None]
    missing = table.shape[1] - 1
    index = np.where(matrix < 0, missing, matrix)
    per_comparison = table[np.arange(len(COMPARISONS))[None, :], index]
    total: npt.NDArray[np.float64] = per_comparison.sum(axis=1) + model.prior_weight()
    return total
