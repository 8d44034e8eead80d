"""Time-ordered UUIDs (version 7, RFC 9562).

Version 7 keeps inserts near the end of B-tree indexes, which matters for the
append-heavy tables (audit, jobs, readings) while ids stay globally unique across
member institutions.
"""

from __future__ import annotations

import os
import time
import uuid


def new_id() -> uuid.UUID:
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a = rand >> 68  # 12 bits
    rand_b = rand & ((1 << 62) - 1)
    value = (millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


DEMO_NAMESPACE = uuid.UUID("6f1c1d0e-8d5b-4b8a-9a57-3c1c2a4f0d11")


def stable_id(*parts: str) -> uuid.UUID:
    """A deterministic id for seeded data, so seeding twice finds the same rows."""
    return uuid.uuid5(DEMO_NAMESPACE, "/".join(parts))
