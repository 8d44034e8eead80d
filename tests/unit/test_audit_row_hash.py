"""``audit.chain.row_hash``: every hashed field and the previous hash change the digest."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from medalliance.audit.chain import (
    GENESIS_HASH,
    HASHED_FIELDS,
    canonical_detail,
    chain_hash,
    row_hash,
    unsequenced_body,
)

BASE: dict[str, Any] = {
    "seq": 42,
    "event_id": uuid.UUID("01900000-0000-7000-8000-000000000001"),
    "recorded_at": datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC),
    "action": "read",
    "outcome": "success",
    "actor_user_id": uuid.UUID("01900000-0000-7000-8000-000000000002"),
    "actor_username": "dr.li",
    "actor_role": "clinician",
    "actor_institution_id": uuid.UUID("01900000-0000-7000-8000-000000000003"),
    "resource_type": "Patient",
    "resource_id": "p-1",
    "patient_id": uuid.UUID("01900000-0000-7000-8000-000000000004"),
    "purpose_of_use": "TREAT",
    "reason": "follow-up",
    "request_id": "req-1",
    "client_address": "10.0.0.1",
    "detail": '{"basis":"same-institution"}',
}
PREV = "a" * 64


def changed(name: str, value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return "x"
    if isinstance(value, int):
        return value + 1
    if isinstance(value, uuid.UUID):
        return uuid.UUID(int=value.int ^ 1)
    if isinstance(value, datetime):
        return value + timedelta(microseconds=1)
    return value + "!"


def test_base_covers_every_hashed_field() -> None:
    assert set(BASE) == set(HASHED_FIELDS)


def test_the_digest_is_a_deterministic_sha256_hex() -> None:
    digest = row_hash(PREV, BASE)
    assert digest == row_hash(PREV, dict(reversed(list(BASE.items()))))
    assert len(digest) == 64
    int(digest, 16)


@pytest.mark.parametrize("name", HASHED_FIELDS)
def test_changing_any_hashed_field_changes_the_digest(name: str) -> None:
    edited = BASE | {name: changed(name, BASE[name])}
    assert row_hash(PREV, edited) != row_hash(PREV, BASE)


@pytest.mark.parametrize("name", [n for n in HASHED_FIELDS if n not in ("seq", "recorded_at")])
def test_clearing_an_optional_field_changes_the_digest(name: str) -> None:
    assert row_hash(PREV, BASE | {name: None}) != row_hash(PREV, BASE)


def test_the_previous_hash_is_part_of_the_digest() -> None:
    assert row_hash(PREV, BASE) != row_hash(GENESIS_HASH, BASE)
    assert row_hash(PREV, BASE) != row_hash("b" + PREV[1:], BASE)


def test_fields_outside_the_chain_do_not_matter() -> None:
    assert row_hash(PREV, BASE | {"hash": "ignored", "prev_hash": "ignored"}) == row_hash(
        PREV, BASE
    )


def test_the_same_instant_in_another_zone_hashes_the_same() -> None:
    """The database may hand back the time in another zone; the instant is what counts."""
    shanghai = timezone(timedelta(hours=8))
    moved = BASE | {"recorded_at": BASE["recorded_at"].astimezone(shanghai)}
    assert row_hash(PREV, moved) == row_hash(PREV, BASE)


def test_canonical_detail_ignores_key_order_and_keeps_unicode() -> None:
    assert canonical_detail({"b": 1, "a": "中文"}) == canonical_detail({"a": "中文", "b": 1})
    assert canonical_detail({"a": "中文"}) == '{"a":"中文"}'
    assert canonical_detail(None) == canonical_detail({}) == "{}"


def test_the_rule_is_the_one_rows_were_written_with() -> None:
    """Pinned: the digest of BASE under the chain's original rule (sha256 of prev_hash, a
    newline and the sorted, compact JSON of the fields). Rows already in the trail verify
    only while this holds; a new rule needs a version of its own."""
    assert row_hash(PREV, BASE) == (
        "8b87803a613745b3bf8a375a290e34260f8e11a236331a5702e65e74150b0bc0"
    )


@pytest.mark.parametrize("seq", [1, 42, 10**12])
def test_the_unsequenced_body_completed_with_seq_is_the_canonical_body(seq: int) -> None:
    """What the PostgreSQL append function relies on: "seq" sorts last."""
    fields = BASE | {"seq": seq, "reason": '引号"与,逗号}', "detail": '{"a":"}"}'}
    unsequenced = unsequenced_body(fields)
    body = json.loads(unsequenced + f',"seq":{seq}}}')
    assert list(body)[-1] == "seq" and body["seq"] == seq
    assert body["reason"] == fields["reason"] and set(body) == set(HASHED_FIELDS)
    assert chain_hash(PREV, unsequenced, seq) == row_hash(PREV, fields)
