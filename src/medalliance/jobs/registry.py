"""Job handlers by kind, and periodic schedules.

A handler runs inside the transaction that marks its job done, so its database
effects happen exactly once. Effects outside the database must be idempotent on
``JobContext.job_id`` (the handler may run again if the worker dies mid-way).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class JobContext:
    job_id: uuid.UUID
    kind: str
    attempt: int
    payload: dict[str, Any]


Handler = Callable[[Session, JobContext], None]


@dataclass(frozen=True, slots=True)
class Schedule:
    kind: str
    every: timedelta
    payload: dict[str, Any]


_handlers: dict[str, Handler] = {}
_schedules: dict[str, Schedule] = {}


def handler(kind: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _handlers[kind] = fn
        return fn

    return register


def get_handler(kind: str) -> Handler | None:
    return _handlers.get(kind)


def unregister(kind: str) -> None:
    _handlers.pop(kind, None)
    _schedules.pop(kind, None)


def schedule(kind: str, every: timedelta, payload: dict[str, Any] | None = None) -> None:
    _schedules[kind] = Schedule(kind=kind, every=every, payload=payload or {})


def schedules() -> list[Schedule]:
    return list(_schedules.values())
