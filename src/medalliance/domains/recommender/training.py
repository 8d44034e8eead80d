"""Fit the recommender and its two baselines on the seeded split, and evaluate them.

Protocol (honest by construction):

* the prescriptions are split once, seeded (``dataset.split``): 80 % train, 10 %
  validation, 10 % test;
* everything is fitted on train only;
* the one tuned choice made here, the blend weight ``a``, is picked on validation
  (best P@5 over a small grid); the network's size and schedule were chosen on
  validation during development (see the README section);
* test is scored once, after the choice, and reported beside validation.

The networks are one-hidden-layer multi-label perceptrons (ReLU, sigmoid outputs,
binary cross-entropy) trained with Adam in NumPy: a few dozen lines, no framework to
install, deterministic for a seed, and the same arrays serve inference.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medalliance.domains.recommender import dataset
from medalliance.domains.recommender.metrics import (
    CUTOFFS,
    paired_difference,
    paired_difference_by_group,
    precision_recall_at,
)
from medalliance.domains.recommender.model import TIE_BREAK, Array, HerbModel

NETWORK_SEED = 7  # member m is trained with seed NETWORK_SEED + m
MEMBERS = 3
HIDDEN = 256
EPOCHS = 6
BATCH = 128
LEARNING_RATE = 1e-3
BLEND_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
SELECTION_METRIC = "P@5"
BY_COUNT_CAP = 4  # cases with 4 or more symptoms are grouped together (few of them)

Metrics = dict[str, float]


@dataclass(frozen=True, slots=True)
class Network:
    w1: Array
    b1: Array
    w2: Array
    b2: Array


@dataclass(slots=True)
class TrainingResult:
    model: HerbModel
    metrics: dict[str, dict[str, Metrics]]  # method -> part -> metric -> value
    blend_scores: dict[str, float]  # blend weight -> validation P@5
    gains: dict[str, dict[str, float]]  # part -> paired P@5 difference over the baseline
    # part -> number of query symptoms -> P@5 of model and baseline, paired difference
    by_symptom_count: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def fit_frequencies(x: Array, y: Array) -> tuple[Array, Array]:
    """P(h | s) (rows of symptoms never seen in training stay 0) and P(h)."""
    counts = x.sum(axis=0)
    conditional = (x.T @ y) / np.maximum(counts, 1.0)[:, None]
    popularity = y.mean(axis=0)
    return conditional.astype(np.float32), popularity.astype(np.float32)


def symptom_count_groups(x: Array, cap: int = BY_COUNT_CAP) -> list[str]:
    """Label each case by its number of symptoms: "1", "2", …, f"{cap}+"."""
    counts = x.sum(axis=1).astype(int)
    return [f"{cap}+" if c >= cap else str(c) for c in counts]


def popularity_scores(popularity: Array, cases: int) -> Array:
    """Baseline 1: the same ranking (global herb popularity) for every case."""
    return np.tile(popularity, (cases, 1))


def conditional_frequency_scores(x: Array, conditional: Array, popularity: Array) -> Array:
    """Baseline 2: the sum over query symptoms of P(h | s); popularity breaks ties."""
    scores: Array = x @ conditional + TIE_BREAK * popularity
    return scores


def train_network(
    x: Array,
    y: Array,
    *,
    seed: int,
    hidden: int = HIDDEN,
    epochs: int = EPOCHS,
    batch: int = BATCH,
    learning_rate: float = LEARNING_RATE,
) -> Network:
    """A multi-label MLP (ReLU hidden layer, sigmoid outputs, BCE loss, Adam)."""
    rng = np.random.default_rng(seed)
    n_in, n_out = x.shape[1], y.shape[1]
    prior = np.clip(y.mean(axis=0), 1e-4, 1 - 1e-4)
    params = [
        (rng.standard_normal((n_in, hidden)) * np.sqrt(2.0 / n_in)).astype(np.float32),
        np.zeros(hidden, dtype=np.float32),
        (rng.standard_normal((hidden, n_out)) * np.sqrt(1.0 / hidden)).astype(np.float32),
        np.log(prior / (1 - prior)).astype(np.float32),  # start at the base rates
    ]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            xb, yb = x[rows], y[rows]
            w1, b1, w2, b2 = params
            pre = xb @ w1 + b1
            act = np.maximum(pre, 0.0)
            out = 0.5 * (1.0 + np.tanh(0.5 * (act @ w2 + b2)))
            g_out = (out - yb) / len(rows)  # d(mean BCE)/d(logit)
            g_act = (g_out @ w2.T) * (pre > 0)
            grads = [xb.T @ g_act, g_act.sum(axis=0), act.T @ g_out, g_out.sum(axis=0)]
            step += 1
            for p, g, m, v in zip(params, grads, first, second, strict=True):
                m *= beta1
                m += (1 - beta1) * g
                v *= beta2
                v += (1 - beta2) * g * g
                m_hat = m / (1 - beta1**step)
                v_hat = v / (1 - beta2**step)
                p -= (learning_rate * m_hat / (np.sqrt(v_hat) + eps)).astype(np.float32)
    return Network(*params)


def _stack(networks: list[Network], popularity: Array, conditional: Array) -> HerbModel:
    return HerbModel(
        conditional=conditional,
        popularity=popularity,
        w1=np.stack([n.w1 for n in networks]),
        b1=np.stack([n.b1 for n in networks]),
        w2=np.stack([n.w2 for n in networks]),
        b2=np.stack([n.b2 for n in networks]),
        blend=0.0,
    )


def train(
    *,
    split_seed: int = dataset.SPLIT_SEED,
    network_seed: int = NETWORK_SEED,
    members: int = MEMBERS,
    epochs: int = EPOCHS,
    hidden: int = HIDDEN,
    progress: Callable[[str], None] = lambda _message: None,
) -> TrainingResult:
    started = time.perf_counter()
    data = dataset.load_prescriptions()
    n_symptoms = dataset.symptom_vocabulary().size
    n_herbs = dataset.herb_vocabulary().size
    parts = dataset.split(len(data), split_seed)

    def matrices(rows: NDArray[np.int64]) -> tuple[Array, Array]:
        return (
            dataset.multi_hot(data.symptoms, rows, n_symptoms),
            dataset.multi_hot(data.herbs, rows, n_herbs),
        )

    x_train, y_train = matrices(parts.train)
    held_out = {"validation": matrices(parts.validation), "test": matrices(parts.test)}
    conditional, popularity = fit_frequencies(x_train, y_train)
    seconds = {"data": time.perf_counter() - started}

    fitting = time.perf_counter()
    networks = []
    for m in range(members):
        progress(f"training network {m + 1}/{members} (seed {network_seed + m})")
        networks.append(
            train_network(x_train, y_train, seed=network_seed + m, epochs=epochs, hidden=hidden)
        )
    seconds["networks"] = time.perf_counter() - fitting

    # Choose the blend on validation, with the weights as they will be shipped (float16).
    base = _stack(networks, popularity, conditional).rounded()
    x_val, y_val = held_out["validation"]
    blend_scores = {}
    for a in BLEND_GRID:
        candidate = _with_blend(base, a)
        blend_scores[f"{a:g}"] = precision_recall_at(candidate.scores(x_val), y_val)[
            SELECTION_METRIC
        ]
    best = max(BLEND_GRID, key=lambda a: (blend_scores[f"{a:g}"], -abs(a - 0.5)))
    model = _with_blend(base, best)
    progress(f"blend weight {best:g} chosen on validation {SELECTION_METRIC}")

    metrics: dict[str, dict[str, Metrics]] = {"popularity": {}, "conditional": {}, "model": {}}
    gains: dict[str, dict[str, float]] = {}
    by_count: dict[str, dict[str, dict[str, float]]] = {}
    for part, (x, y) in held_out.items():
        baseline = conditional_frequency_scores(x, conditional, popularity)
        ours = model.scores(x)
        metrics["popularity"][part] = precision_recall_at(popularity_scores(popularity, len(x)), y)
        metrics["conditional"][part] = precision_recall_at(baseline, y)
        metrics["model"][part] = precision_recall_at(ours, y)
        difference, error = paired_difference(ours, baseline, y, k=5)
        gains[part] = {"P@5 difference": difference, "standard error": error}
        by_count[part] = paired_difference_by_group(ours, baseline, y, symptom_count_groups(x))
    seconds["total"] = time.perf_counter() - started

    metadata = {
        "data": {
            "file": dataset.PRESCRIPTIONS_FILE,
            "sha256": dataset.data_sha256(),
            "prescriptions": len(data),
            "symptoms": n_symptoms,
            "herbs": n_herbs,
        },
        "split": {"seed": split_seed, **parts.sizes()},
        "model": {
            "kind": "blend of an MLP ensemble (multi-label, NumPy) and P(herb | symptom)",
            "members": members,
            "network_seeds": [network_seed + m for m in range(members)],
            "hidden": hidden,
            "epochs": epochs,
            "batch": BATCH,
            "learning_rate": LEARNING_RATE,
            "blend": best,
            "blend_selection": {"metric": SELECTION_METRIC, "validation": blend_scores},
        },
        "metrics": metrics,
        "model_minus_conditional": gains,
        # "P@5 a" is the model, "P@5 b" the conditional frequency
        "model_minus_conditional_by_symptom_count": by_count,
        "training_seconds": {k: round(v, 2) for k, v in seconds.items()},
    }
    return TrainingResult(model, metrics, blend_scores, gains, by_count, seconds, metadata)


def _with_blend(model: HerbModel, blend: float) -> HerbModel:
    return HerbModel(
        conditional=model.conditional,
        popularity=model.popularity,
        w1=model.w1,
        b1=model.b1,
        w2=model.w2,
        b2=model.b2,
        blend=blend,
    )


METHOD_LABELS = {
    "popularity": "global herb popularity",
    "conditional": "symptom-conditional frequency",
    "model": "MLP ensemble + frequency blend",
}


def format_table(metrics: dict[str, dict[str, Metrics]]) -> str:
    """A Markdown table: one row per method and part."""
    columns = [f"P@{k}" for k in CUTOFFS] + [f"R@{k}" for k in CUTOFFS]
    lines = [
        "| method | part | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for method, parts in metrics.items():
        for part, values in parts.items():
            cells = " | ".join(f"{values[c]:.4f}" for c in columns)
            lines.append(f"| {METHOD_LABELS.get(method, method)} | {part} | {cells} |")
    return "\n".join(lines)
