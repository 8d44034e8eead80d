"""recommender: latency of one TCM herb recommendation, and the time to train the model.

In process, no HTTP: the figure is the recommender's own work. Three variants are timed
alternately (floor, model, recommend, floor, …) for ``rounds`` windows each, one call
at a time, every call timed with ``perf_counter`` (p50/p99 nearest rank):

* **numpy floor**: one float32 matrix-vector product the size of the model's output
  layer (hidden 256 × 753 herbs) — the least NumPy work any learned ranking costs;
* **model score**: ``HerbModel.score_one`` for a symptom set (the whole ensemble and the
  frequency table, no ranking);
* **recommend**: ``service.recommend(k=10)`` end to end: names → ids, scores, ranking,
  the safety hook (the placeholder checker, which finds nothing), the result objects.

The queries are the validation cases of the shipped split, cycled. Then the model is
retrained once with ``training.train()`` (the same call as ``medalliance tcm
train-recommender``, without writing files) and timed; set
MEDALLIANCE_BENCH_RECOMMENDER_TRAIN=0 to skip it.

    python -m benchmarks.run recommender
    python -m benchmarks.bench_recommender            # printed only
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from benchmarks.harness import (
    BenchmarkResult,
    Check,
    LoadResult,
    Options,
    Ratio,
    Variant,
    ratios_per_round,
)
from medalliance.domains.recommender import dataset, service, training
from medalliance.domains.recommender.model import shipped_metadata
from medalliance.domains.recommender.safety import NOT_CONNECTED

NAME = "recommender"
TITLE = "One TCM herb recommendation (≤ 20 ms) vs one NumPy matrix-vector product; training"
LATENCY_BUDGET_MS = 20.0
TRAINING_BUDGET_S = 600.0
TRAIN_ENV = "MEDALLIANCE_BENCH_RECOMMENDER_TRAIN"
WINDOW_S = 2.0
WARMUP_CALLS = 200
K = 10


def _queries() -> list[list[str]]:
    data = dataset.load_prescriptions()
    parts = dataset.split(len(data), shipped_metadata()["split"]["seed"])
    names = dataset.symptom_vocabulary().names
    return [[names[s] for s in data.symptoms[i]] for i in parts.validation]


def _timed_window(label: str, call: Callable[[int], object], window_s: float) -> LoadResult:
    for i in range(WARMUP_CALLS):
        call(i)
    latencies: list[float] = []
    cpu_started = time.process_time()
    started = time.perf_counter()
    deadline = started + window_s
    i = 0
    while True:
        t0 = time.perf_counter()
        if t0 >= deadline:
            break
        call(i)
        latencies.append(time.perf_counter() - t0)
        i += 1
    elapsed = time.perf_counter() - started
    return LoadResult(
        label=label,
        concurrency=1,
        window_s=elapsed,
        requests=len(latencies),
        errors=0,
        latencies_s=latencies,
        total_ok=len(latencies),
        total_errors=0,
        server_cpu_s=None,
        client_cpu_s=time.process_time() - cpu_started,
    )


def measure(rounds: int = 3, window_s: float = WINDOW_S, train: bool = True) -> BenchmarkResult:
    started = time.perf_counter()
    queries = _queries()
    index = dataset.symptom_vocabulary().index
    ids = [[index[n] for n in q] for q in queries]
    model = service.shipped_model()
    rng = np.random.default_rng(0)
    vector = rng.standard_normal(model.w2.shape[1]).astype(np.float32)
    matrix = np.ascontiguousarray(model.w2[0])

    def floor(i: int) -> object:
        return vector @ matrix

    def score(i: int) -> object:
        return model.score_one(ids[i % len(ids)])

    def recommend(i: int) -> object:
        return service.recommend(symptoms=queries[i % len(queries)], k=K, safety=NOT_CONNECTED)

    variants = [
        Variant("numpy floor", f"one float32 vector × ({matrix.shape[0]}×{matrix.shape[1]})"),
        Variant("model score", "HerbModel.score_one: ensemble + frequency table"),
        Variant("recommend", f"service.recommend(k={K}) end to end, placeholder safety check"),
    ]
    calls = [floor, score, recommend]
    for _ in range(rounds):
        for variant, call in zip(variants, calls, strict=True):
            variant.rounds.append(_timed_window(variant.name, call, window_s))
    floor_v, score_v, recommend_v = variants

    # Correctness: the timed function returns k distinct herbs, best first.
    sample = service.recommend(symptoms=queries[0], k=K, safety=NOT_CONNECTED)
    herbs = [s.herb for s in sample.suggestions]
    scores = [s.score for s in sample.suggestions]
    correct = len(set(herbs)) == K and scores == sorted(scores, reverse=True)

    checks = [
        Check(
            f"one recommendation within {LATENCY_BUDGET_MS:g} ms (p99)",
            recommend_v.p99_ms <= LATENCY_BUDGET_MS,
            f"p50 {recommend_v.p50_ms:.3f} ms, p99 {recommend_v.p99_ms:.3f} ms",
        ),
        Check("recommend returns k distinct herbs in score order", correct, " ".join(herbs)),
    ]
    notes = [
        f"{len(queries):,} validation symptom sets cycled; "
        f"mean {np.mean([len(q) for q in queries]):.2f} symptoms per query.",
    ]
    if train:
        cpu0 = resource.getrusage(resource.RUSAGE_SELF).ru_utime
        t0 = time.perf_counter()
        result = training.train()
        train_s = time.perf_counter() - t0
        train_cpu = resource.getrusage(resource.RUSAGE_SELF).ru_utime - cpu0
        checks.append(
            Check(
                f"training within {TRAINING_BUDGET_S:g} s",
                train_s <= TRAINING_BUDGET_S,
                f"{train_s:.1f} s wall, {train_cpu:.1f} s user CPU "
                f"({result.model.w1.shape[0]} networks; validation P@5 "
                f"{result.metrics['model']['validation']['P@5']:.4f})",
            )
        )
        notes.append(
            "Training stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items())
        )
    return BenchmarkResult(
        name=NAME,
        title=TITLE,
        description=(
            "In-process latency of one recommendation (one call at a time, "
            f"{window_s:g} s windows, {rounds} alternating rounds); 'req/s' are calls/s."
        ),
        variants=variants,
        ratios=[
            Ratio(
                "recommend p50 ÷ numpy floor p50",
                recommend_v.p50_ms / floor_v.p50_ms,
                "the cost of a whole recommendation in matrix-vector products",
                ratios_per_round(recommend_v, floor_v, lambda r: r.p50_ms),
            ),
            Ratio(
                "model score p50 ÷ numpy floor p50",
                score_v.p50_ms / floor_v.p50_ms,
                "three networks and the frequency table (three output layers at least)",
                ratios_per_round(score_v, floor_v, lambda r: r.p50_ms),
            ),
        ],
        checks=checks,
        notes=notes,
        elapsed_s=time.perf_counter() - started,
    )


def run(options: Options) -> BenchmarkResult:
    """The runner's entry point (``options.rounds`` is used; the rest concerns HTTP)."""
    return measure(rounds=options.rounds, train=os.environ.get(TRAIN_ENV, "1") != "0")


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.run import format_result

    result = measure(train="--no-train" not in (argv or sys.argv[1:]))
    print(format_result(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
