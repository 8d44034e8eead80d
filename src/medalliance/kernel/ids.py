"""Time-ordered UUIDs (version 7, RFC 9562).

Version 7 keeps inserts near the end of B-tree indexes, which matters for the
append-heavy tables (audit, jobs, readings) while ids stay globally unique across
member institutions.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_last = 0
_lock = threading.Lock()


def new_id() -> uuid.UUID:
    """A version 7 UUID, strictly increasing within the process: ids made in the same
    millisecond still sort in the order they were made (RFC 9562 §6.2, method 3: the
    next id is the last plus one when the clock has not moved on), so ``ORDER BY id``
    keeps the order rows were written in."""
    global _last
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a = rand >> 68  # 12 bits
    rand_b = rand & ((1 << 62) - 1)
    value = (millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    with _lock:
        if value <= _last:
            value = _next_after(_last)
        _last = value
    return uuid.UUID(int=value)


def _next_after(last: int) -> int:
    """``last`` + 1 in the random bits, skipping the version and variant bits."""
    rand_b = (last & ((1 << 62) - 1)) + 1
    rand_a = (last >> 64) & 0xFFF
    millis = last >> 80
    if rand_b >> 62:  # carry into rand_a, then into the timestamp
        rand_b = 0
        rand_a += 1
        if rand_a >> 12:
            rand_a = 0
            millis += 1
    return millis << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b


DEMO_NAMESPACE = uuid.UUID("6f1c1d0e-8d5b-4b8a-9a57-3c1c2a4f0d11")


def stable_id(*parts: str) -> uuid.UUID:
    """A deterministic id for seeded data, so seeding twice finds the same rows."""
    return uuid.uuid5(DEMO_NAMESPACE, "/".join(parts))
