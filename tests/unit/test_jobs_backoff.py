"""``jobs.worker.backoff``: exponential with jitter, capped."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from medalliance.jobs.worker import BACKOFF_CAP_SECONDS, backoff


class FixedJitter(random.Random):
    def __init__(self, factor: float) -> None:
        super().__init__(0)
        self.factor = factor

    def uniform(self, a: float, b: float) -> float:
        assert (a, b) == (0.5, 1.0)
        return self.factor


def test_without_jitter_the_delay_doubles_from_two_seconds() -> None:
    full = FixedJitter(1.0)
    assert [backoff(n, full).total_seconds() for n in range(1, 7)] == [2, 4, 8, 16, 32, 64]
    assert backoff(0, full) == backoff(1, full) == timedelta(seconds=2)


@pytest.mark.parametrize("attempt", [1, 2, 5, 9])
def test_jitter_stays_between_half_and_full_delay(attempt: int) -> None:
    full = backoff(attempt, FixedJitter(1.0))
    rng = random.Random(attempt)
    for _ in range(200):
        delay = backoff(attempt, rng)
        assert full / 2 <= delay <= full


def test_the_delay_grows_with_each_attempt() -> None:
    rng = random.Random(7)
    # Even with the worst jitter, attempt n+1 waits at least as long as attempt n at best.
    for attempt in range(1, 11):
        assert backoff(attempt + 1, FixedJitter(0.5)) >= backoff(attempt, FixedJitter(1.0))
        assert backoff(attempt + 1, rng) >= backoff(attempt, FixedJitter(0.5))


@pytest.mark.parametrize("attempt", [12, 13, 50, 1_000, 5_000])
def test_the_delay_is_capped_at_an_hour(attempt: int) -> None:
    assert backoff(attempt, FixedJitter(1.0)) == timedelta(seconds=BACKOFF_CAP_SECONDS)
    assert backoff(attempt, random.Random(attempt)) <= timedelta(hours=1)
