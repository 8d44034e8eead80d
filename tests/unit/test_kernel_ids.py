"""``kernel.ids.new_id``: RFC 9562 version-7 UUIDs, ordered by creation time."""

from __future__ import annotations

import time
import uuid

from medalliance.kernel.ids import new_id, stable_id


def test_new_id_is_a_version_7_rfc_uuid() -> None:
    for _ in range(200):
        value = new_id()
        assert isinstance(value, uuid.UUID)
        assert value.version == 7
        assert value.variant == uuid.RFC_4122
        assert uuid.UUID(str(value)) == value


def test_new_id_carries_the_unix_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    value = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= value.int >> 80 <= after


def test_ids_from_later_milliseconds_sort_later() -> None:
    ids = []
    for _ in range(20):
        ids.append(new_id())
        time.sleep(0.002)
    assert ids == sorted(ids)
    assert [str(i) for i in ids] == sorted(str(i) for i in ids)  # text order too


def test_ids_are_unique_within_one_millisecond() -> None:
    batch = [new_id() for _ in range(10_000)]
    assert len(set(batch)) == len(batch)


def test_stable_id_is_deterministic_and_distinct_per_path() -> None:
    assert stable_id("inst", "A") == stable_id("inst", "A")
    assert stable_id("inst", "A") != stable_id("inst", "B")
    assert stable_id("inst", "A").version == 5


def test_ids_made_within_one_millisecond_sort_in_the_order_made() -> None:
    # many ids share a millisecond here; ORDER BY id must still give creation order
    batch = [new_id() for _ in range(10_000)]
    assert batch == sorted(batch)
    assert len({i.int >> 80 for i in batch}) < len(batch)  # the case was exercised


def test_the_next_id_carries_over_full_random_bits() -> None:
    from medalliance.kernel.ids import _next_after

    full = 5 << 80 | 0x7 << 76 | 0xFFF << 64 | 0b10 << 62 | ((1 << 62) - 1)
    following = uuid.UUID(int=_next_after(full))
    assert following.int > full
    assert following.version == 7 and following.variant == uuid.RFC_4122
    assert following.int >> 80 == 6
