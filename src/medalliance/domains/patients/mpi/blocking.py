"""Blocking: only records that share a key are compared, so linkage scales.

The rules are chosen so a true duplicate shares at least one key despite a typo in
any single field: the resident ID, the birth date, the full pinyin, a phone, the
family name with the birth year, the given name with the birth month and day, and
the postcode with the initials.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from medalliance.domains.patients.mpi.features import Features

KeyFunction = Callable[[Features], Iterable[str]]


def _one(value: str | None) -> list[str]:
    return [] if not value else [value]


BLOCKING_RULES: dict[str, KeyFunction] = {
    "id_number": lambda f: _one(f.id_number),
    "birth_date": lambda f: _one(f.birth),
    "full_pinyin": lambda f: _one(f.full_pinyin or None),
    "phone": lambda f: sorted(f.phones),
    "family_birth_year": lambda f: _one(
        f"{f.family_pinyin}|{f.birth[:4]}" if f.family_pinyin and f.birth else None
    ),
    "given_birth_day": lambda f: _one(
        f"{f.given_pinyin}|{f.birth[4:]}" if f.given_pinyin and f.birth else None
    ),
    "postcode_initials": lambda f: _one(
        f"{f.postcode}|{f.initials}" if f.postcode and f.initials else None
    ),
}


@dataclass
class BlockingStats:
    pairs: int = 0
    skipped_blocks: int = 0
    skipped_records: int = 0


def candidate_pairs(
    left: Sequence[Features],
    right: Sequence[Features] | None = None,
    *,
    max_block: int = 400,
    stats: BlockingStats | None = None,
) -> Iterator[tuple[int, int]]:
    """Index pairs (i, j) to compare: i < j within ``left`` (deduplication), or
    i in left and j in right (linkage). Each pair is produced once."""
    stats = stats if stats is not None else BlockingStats()
    seen: set[tuple[int, int]] = set()
    for rule in BLOCKING_RULES.values():
        left_blocks = _blocks(left, rule)
        right_blocks = left_blocks if right is None else _blocks(right, rule)
        for key, lefts in left_blocks.items():
            rights = right_blocks.get(key)
            if not rights:
                continue
            if len(lefts) * len(rights) > max_block * max_block:
                stats.skipped_blocks += 1
                stats.skipped_records += len(lefts)
                continue
            for i in lefts:
                for j in rights:
                    if right is None and j <= i:
                        continue
                    pair = (i, j)
                    if pair not in seen:
                        seen.add(pair)
                        stats.pairs += 1
                        yield pair


def _blocks(records: Sequence[Features], rule: KeyFunction) -> dict[str, list[int]]:
    blocks: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        for key in rule(record):
            blocks[key].append(index)
    return blocks
