"""Writing many resources of one type at once (a transaction's entries, grouped).

A mapper that offers ``create_many(ctx, resources) -> list[Written]`` writes a group
through the domain's bulk service functions: one policy read per patient, one
statement per table. It must be all-or-nothing like the entries one by one, and say
which resource failed: ``EntryFailed(position, error)``. The bundle then names the
entry (``Bundle.entry[i]...``) exactly as for a single create.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from medalliance.fhir.outcome import FhirError
from medalliance.kernel.errors import DomainError

T = TypeVar("T")
R = TypeVar("R")


class EntryFailed(Exception):
    """The resource at ``position`` of a group failed; ``error`` says why."""

    def __init__(self, position: int, error: DomainError | FhirError) -> None:
        super().__init__(str(error))
        self.position = position
        self.error = error


def one(create_many: Callable[[Any, list[Any]], list[R]], ctx: Any, resource: Any) -> R:
    """A single create through ``create_many``, failing with the entry's own error."""
    try:
        (written,) = create_many(ctx, [resource])
    except EntryFailed as failed:
        raise failed.error from None
    return written


def each(items: Sequence[T], prepare: Callable[[T], R]) -> list[R]:
    """``prepare`` every item; a failure names the item's position."""
    out = []
    for position, item in enumerate(items):
        try:
            out.append(prepare(item))
        except (DomainError, FhirError) as exc:
            raise EntryFailed(position, exc) from exc
    return out


@contextmanager
def domain_batch(positions: Sequence[int]) -> Iterator[None]:
    """A domain bulk call over these group positions: an error carrying
    ``extra['index']`` names that row; any other error names the first."""
    try:
        yield
    except (DomainError, FhirError) as exc:
        index = exc.extra.get("index") if isinstance(exc, DomainError) else None
        at = positions[index] if isinstance(index, int) and index < len(positions) else positions[0]
        raise EntryFailed(at, exc) from exc


def by_key(keys: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[int]]:
    """Group positions by a key (the patient), keeping their order."""
    groups: dict[uuid.UUID, list[int]] = defaultdict(list)
    for position, key in enumerate(keys):
        groups[key].append(position)
    return groups


def waves(positions: Sequence[int], key: Callable[[int], Any]) -> list[list[int]]:
    """Split positions so that no two with the same key share a wave: a later duplicate
    (the same result reported again) then meets the earlier one as already written,
    as it would one by one."""
    seen: dict[Any, int] = defaultdict(int)
    out: list[list[int]] = []
    for position in positions:
        k = key(position)
        wave = seen[k]
        seen[k] += 1
        while len(out) <= wave:
            out.append([])
        out[wave].append(position)
    return out
