"""Hashing rules of the chain; pure functions shared by the writer and the verifier.

A row's hash is ``sha256(prev_hash + "\\n" + body)`` where ``body`` is the canonical
JSON of ``HASHED_FIELDS`` (sorted keys, no spaces). ``seq`` sorts last, so the body is
``unsequenced_body(fields)`` followed by ``,"seq":N}``: on PostgreSQL the append
function (``audit.ddl``) chains rows from the unsequenced bodies the application
sends, numbering them under the head's lock, with the very same rule.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64

HASHED_FIELDS = (
    "seq",
    "event_id",
    "recorded_at",
    "action",
    "outcome",
    "actor_user_id",
    "actor_username",
    "actor_role",
    "actor_institution_id",
    "resource_type",
    "resource_id",
    "patient_id",
    "purpose_of_use",
    "reason",
    "request_id",
    "client_address",
    "detail",
)
_UNSEQUENCED = tuple(name for name in HASHED_FIELDS if name != "seq")
# The split into body + seq suffix relies on this; a field sorting after "seq" would be
# a new hashing rule (and old rows would need the old one to verify).
assert max(HASHED_FIELDS) == "seq"


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if value is None or isinstance(value, (int, str)):
        return value
    return str(value)


def unsequenced_body(fields: dict[str, Any]) -> str:
    """The canonical body without its closing ``,"seq":N}``."""
    payload = {name: _canonical(fields.get(name)) for name in _UNSEQUENCED}
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return body[:-1]  # drop the closing brace: "seq" comes next


def chain_hash(prev_hash: str, unsequenced: str, seq: int) -> str:
    body = f'{unsequenced},"seq":{seq}}}'
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def row_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return chain_hash(prev_hash, unsequenced_body(fields), int(fields["seq"]))


def canonical_detail(detail: dict[str, Any] | None) -> str:
    return json.dumps(detail or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
