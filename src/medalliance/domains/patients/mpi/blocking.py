"""Blocking: only records that share a key are compared, so linkage scales.

Each rule is a combination of fields; two records are compared when they agree on
every field of some rule. The rules are chosen so that a true duplicate shares at
least one key despite errors in several fields (a mistyped ID number still shares a
one-edit variant, a homophone still shares the pinyin, a day/month swap still shares
the year, a missing birth date still shares name and postcode …), and so that blocks
stay small in a registry of millions: no rule blocks on one low-cardinality field
such as a birth date or a surname alone (a million-record registry gives about seven
million candidate pairs). A block larger than ``max_block`` (a placeholder ID, say)
is skipped and counted.

``candidate_pairs`` is the reference, one pair at a time (tests, small inputs);
``candidate_pair_arrays`` gives the same pairs as numpy arrays, built by sorting
instead of Python loops, for batch linkage and training. The online matcher selects
its candidates in SQL (``matching.candidates``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import product

import numpy as np
import numpy.typing as npt

from medalliance.domains.patients.mpi.features import Features, FeatureTable

Keys = npt.NDArray[np.int64]  # records × values of one field; -1 where missing
Index = npt.NDArray[np.intp]


def _one(value: str | None) -> list[str]:
    return [] if not value else [value]


def id_variants(number: str | None) -> list[str]:
    """The number and every string one deletion away from it: two numbers within one
    edit (substitution, adjacent transposition, insertion, deletion) share a variant."""
    if not number:
        return []
    return sorted({number} | {number[:p] + number[p + 1 :] for p in range(len(number))})


@dataclass(frozen=True, slots=True)
class KeyField:
    name: str
    of_record: Callable[[Features], list[str]]
    of_table: Callable[[FeatureTable], Keys]


def _codes(column: npt.NDArray[np.int32]) -> Keys:
    return column.astype(np.int64).reshape(-1, 1)


def _id_variant_keys(table: FeatureTable) -> Keys:
    """Hashes of each record's ``id_variants``: 64-bit polynomial hashes of the code
    points (a collision could only add a candidate pair, never lose one)."""
    vocabulary = table.ids
    if len(vocabulary) == 0:
        return np.full((len(table), 1), -1, dtype=np.int64)
    chars = vocabulary.chars.astype(np.uint64)
    width = chars.shape[1]
    lengths = vocabulary.lengths.astype(np.uint64)
    base, modulus = 1_000_003, 1 << 64
    inverse = np.uint64(pow(base, -1, modulus))
    powers = np.array([pow(base, k, modulus) for k in range(width + 1)], dtype=np.uint64)
    variants = np.empty((len(chars), width + 1), dtype=np.uint64)
    with np.errstate(over="ignore"):
        # hash(s) = Σ s[k]·base^k + len(s)·base^width (mod 2^64); deleting position p
        # divides the tail by base, i.e. multiplies it by base's inverse mod 2^64.
        prefix = np.cumsum(chars * powers[:width], axis=1)
        total = prefix[:, -1]
        shorter = (lengths - np.uint64(1)) * powers[width]
        variants[:, 0] = (total - prefix[:, 0]) * inverse + shorter
        for p in range(1, width):
            variants[:, p] = prefix[:, p - 1] + (total - prefix[:, p]) * inverse + shorter
        variants[:, width] = total + lengths * powers[width]
    keys = variants.view(np.int64) & np.int64(0x7FFF_FFFF_FFFF_FFFF)  # non-negative
    outside = np.arange(width + 1)[None, :] >= vocabulary.lengths[:, None]
    outside[:, width] = False  # the whole number
    keys[outside] = -1
    codes = table.id_number
    found = keys[np.maximum(codes, 0)]
    found[codes < 0] = -1
    return found


def _phone_keys(table: FeatureTable) -> Keys:
    return table.phones.astype(np.int64)


FIELDS: dict[str, KeyField] = {
    f.name: f
    for f in (
        KeyField("id_number", lambda f: _one(f.id_number), lambda t: _codes(t.id_number)),
        KeyField("id_variant", lambda f: id_variants(f.id_number), _id_variant_keys),
        KeyField("phone", lambda f: sorted(f.phones), _phone_keys),
        KeyField(
            "full_pinyin", lambda f: _one(f.full_pinyin or None), lambda t: _codes(t.full_pinyin)
        ),
        KeyField(
            "family_pinyin", lambda f: _one(f.family_pinyin), lambda t: _codes(t.family_pinyin)
        ),
        KeyField("given_pinyin", lambda f: _one(f.given_pinyin), lambda t: _codes(t.given_pinyin)),
        KeyField("birth_date", lambda f: _one(f.birth), lambda t: _codes(t.birth)),
        KeyField(
            "birth_year", lambda f: _one(f.birth and f.birth[:4]), lambda t: _codes(t.birth_year)
        ),
        KeyField(
            "birth_day", lambda f: _one(f.birth and f.birth[4:]), lambda t: _codes(t.birth_day)
        ),
        KeyField("street", lambda f: _one(f.street), lambda t: _codes(t.street)),
        KeyField("postcode", lambda f: _one(f.postcode), lambda t: _codes(t.postcode)),
        KeyField("city", lambda f: _one(f.city), lambda t: _codes(t.city)),
    )
}


@dataclass(frozen=True, slots=True)
class BlockingRule:
    name: str
    fields: tuple[str, ...]

    def keys(self, record: Features) -> list[tuple[str, ...]]:
        return list(product(*(FIELDS[name].of_record(record) for name in self.fields)))

    def key_array(self, table: FeatureTable) -> Keys:
        """records × keys, -1 where missing; equal keys ⇔ equal ``keys``."""
        parts = [FIELDS[name].of_table(table) for name in self.fields]
        if len(parts) == 1:
            return parts[0]
        if any(p.shape[1] != 1 for p in parts):
            raise ValueError(f"rule {self.name}: only a single field may have several values")
        combined = parts[0][:, 0]
        for part in parts[1:]:
            column = part[:, 0]
            missing = (combined < 0) | (column < 0)
            if int(combined.max(initial=0)) + 1 > (1 << 62) // (int(column.max(initial=0)) + 1):
                combined = np.unique(combined, return_inverse=True)[1].reshape(-1)
            combined = combined * (int(column.max(initial=0)) + 1) + column
            combined[missing] = -1
        return combined.reshape(-1, 1)


BLOCKING_RULES: tuple[BlockingRule, ...] = (
    BlockingRule("id_number", ("id_number",)),
    BlockingRule("id_one_edit", ("id_variant",)),
    BlockingRule("phone", ("phone",)),
    BlockingRule("name_birth_year", ("full_pinyin", "birth_year")),
    BlockingRule("name_birth_day", ("full_pinyin", "birth_day")),
    BlockingRule("name_postcode", ("full_pinyin", "postcode")),
    BlockingRule("name_city", ("full_pinyin", "city")),
    BlockingRule("family_birth_date", ("family_pinyin", "birth_date")),
    BlockingRule("given_birth_date", ("given_pinyin", "birth_date")),
    BlockingRule("birth_date_postcode", ("birth_date", "postcode")),
    BlockingRule("given_street", ("given_pinyin", "street")),
)


@dataclass
class BlockingStats:
    pairs: int = 0
    skipped_blocks: int = 0
    skipped_records: int = 0
    per_rule: dict[str, int] = field(default_factory=dict)  # new pairs each rule added


# -- one pair at a time (reference) ------------------------------------------------------


def candidate_pairs(
    left: Sequence[Features],
    right: Sequence[Features] | None = None,
    *,
    max_block: int = 400,
    stats: BlockingStats | None = None,
    rules: Sequence[BlockingRule] = BLOCKING_RULES,
) -> Iterator[tuple[int, int]]:
    """Index pairs (i, j) to compare: i < j within ``left`` (deduplication), or
    i in left and j in right (linkage). Each pair is produced once."""
    stats = stats if stats is not None else BlockingStats()
    seen: set[tuple[int, int]] = set()
    for rule in rules:
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
                        stats.per_rule[rule.name] = stats.per_rule.get(rule.name, 0) + 1
                        yield pair


def _blocks(records: Sequence[Features], rule: BlockingRule) -> dict[Hashable, list[int]]:
    blocks: dict[Hashable, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        for key in rule.keys(record):
            blocks[key].append(index)
    return blocks


# -- all pairs at once --------------------------------------------------------------------


def _member(sorted_values: Keys, values: Keys) -> npt.NDArray[np.bool_]:
    """Which ``values`` occur in ``sorted_values`` (fastest when values are sorted too)."""
    if len(sorted_values) == 0:
        return np.zeros(len(values), dtype=bool)
    position = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    found: npt.NDArray[np.bool_] = sorted_values[position] == values
    return found


def sorted_unique(values: Keys) -> Keys:
    """``np.unique(values)``: numpy 2's hash-based unique is slow on tens of millions
    of integers, its SIMD sort is fast."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


_GOLDEN = np.uint64(0x9E37_79B9_7F4A_7C15)


@dataclass(frozen=True, slots=True)
class _Entries:
    """The (key, record) entries of one rule on one side, grouped by key, without
    repeats.

    Key and row are packed into one 64-bit integer and sorted with ``np.sort``, which
    is many times faster than ``argsort``. A key too wide for the bits left beside the
    row is hashed into them: a collision can only add a candidate pair.
    """

    keys: Keys
    rows: Index
    starts: Index  # first entry of each distinct key
    sizes: Index

    @classmethod
    def of(cls, keys: Keys, rows: Index, size: int) -> _Entries:
        row_bits = max(int(size - 1).bit_length(), 1)
        key_bits = 63 - row_bits
        flat_keys = keys[rows].reshape(-1)
        flat_rows = np.repeat(rows, keys.shape[1]).astype(np.int64)
        present = flat_keys >= 0
        flat_keys, flat_rows = flat_keys[present], flat_rows[present]
        if len(flat_keys) and int(flat_keys.max()) >= 1 << key_bits:
            with np.errstate(over="ignore"):
                mixed = flat_keys.astype(np.uint64) * _GOLDEN
            flat_keys = (mixed >> np.uint64(64 - key_bits)).astype(np.int64)
        packed = sorted_unique((flat_keys << row_bits) | flat_rows)
        sorted_keys = packed >> row_bits
        boundary = np.ones(len(packed), dtype=bool)
        boundary[1:] = sorted_keys[1:] != sorted_keys[:-1]
        starts = np.flatnonzero(boundary)
        sizes = np.diff(np.append(starts, len(packed)))
        return cls(sorted_keys, (packed & ((1 << row_bits) - 1)).astype(np.intp), starts, sizes)


def _entries(
    keys: Keys, left: Index, right: Index | None, size: int
) -> tuple[_Entries, _Entries | None]:
    """The entries of one side (deduplication) or of both (linkage)."""
    if right is None:
        return _Entries.of(keys, left, size), None
    return _Entries.of(keys, left, size), _Entries.of(keys, right, size)


def _shared(left: _Entries, right: _Entries) -> tuple[Index, Index]:
    """Indexes of the key groups of ``left`` and of ``right`` that have the same key."""
    left_keys, right_keys = left.keys[left.starts], right.keys[right.starts]
    in_right = _member(right_keys, left_keys)
    li = np.flatnonzero(in_right)
    ri = np.searchsorted(right_keys, left_keys[li])
    return li, ri


def _pairs_after(first: Index, counts: Index, starts: Index) -> tuple[Index, Index]:
    """Entry ``first[k]`` paired with entries starts[k] … starts[k] + counts[k] - 1."""
    a = np.repeat(first, counts)
    offset = np.arange(len(a)) - np.repeat(np.cumsum(counts) - counts, counts)
    return a, np.repeat(starts, counts) + offset


def _within(entries: _Entries, max_block: int, stats: BlockingStats) -> tuple[Index, Index]:
    big = entries.sizes > max_block
    stats.skipped_blocks += int(big.sum())
    stats.skipped_records += int(entries.sizes[big].sum())
    keep = (entries.sizes >= 2) & ~big
    # every entry of a kept block pairs with the entries after it in the block
    position = np.flatnonzero(np.repeat(keep, entries.sizes))
    end = np.repeat(entries.starts + entries.sizes, entries.sizes)[position]
    first, second = _pairs_after(position, end - position - 1, position + 1)
    return entries.rows[first], entries.rows[second]


def _across(
    left: _Entries, right: _Entries, max_block: int, stats: BlockingStats
) -> tuple[Index, Index]:
    li, ri = _shared(left, right)
    n_left, n_right = left.sizes[li], right.sizes[ri]
    big = n_left * n_right > max_block * max_block
    stats.skipped_blocks += int(big.sum())
    stats.skipped_records += int(n_left[big].sum())
    li, ri = li[~big], ri[~big]
    # each left entry of a shared key pairs with every right entry of that key
    partners = np.zeros(len(left.starts), dtype=np.intp)
    partners[li] = right.sizes[ri]
    partner_start = np.zeros(len(left.starts), dtype=np.intp)
    partner_start[li] = right.starts[ri]
    counts = np.repeat(partners, left.sizes)
    first, second = _pairs_after(
        np.arange(len(left.keys)), counts, np.repeat(partner_start, left.sizes)
    )
    return left.rows[first], right.rows[second]


def candidate_pair_arrays(
    table: FeatureTable,
    left: Index,
    right: Index | None = None,
    *,
    max_block: int = 400,
    stats: BlockingStats | None = None,
    rules: Sequence[BlockingRule] = BLOCKING_RULES,
    on_rule: Callable[[BlockingRule], None] | None = None,
) -> tuple[Index, Index]:
    """The pairs of ``candidate_pairs`` as two arrays of table rows, sorted: within
    ``left`` rows (i < j) or from ``left`` rows to ``right`` rows."""
    stats = stats if stats is not None else BlockingStats()
    seen = np.zeros(0, dtype=np.int64)  # pair codes i·size + j, sorted
    size = np.int64(len(table))
    for rule in rules:
        first_side, second_side = _entries(rule.key_array(table), left, right, len(table))
        if second_side is None:
            i, j = _within(first_side, max_block, stats)
            i, j = np.minimum(i, j), np.maximum(i, j)
        else:
            i, j = _across(first_side, second_side, max_block, stats)
        codes = sorted_unique(i.astype(np.int64) * size + j)
        fresh = codes[~_member(seen, codes)]
        stats.per_rule[rule.name] = len(fresh)
        seen = np.sort(np.concatenate([seen, fresh]))
        if on_rule is not None:
            on_rule(rule)
    stats.pairs = len(seen)
    return (seen // size).astype(np.intp), (seen % size).astype(np.intp)


def sample_block_pairs(
    table: FeatureTable,
    left: Index,
    right: Index | None,
    rule: BlockingRule,
    *,
    samples: int,
    max_block: int,
    rng: np.random.Generator,
) -> tuple[Index, Index]:
    """Up to ``samples`` pairs drawn uniformly from the pairs that share a key of
    ``rule`` (blocks over ``max_block`` left out); all of them if there are fewer."""
    stats = BlockingStats()
    entries, other = _entries(rule.key_array(table), left, right, len(table))
    if other is None:
        sizes = entries.sizes.astype(np.int64)
        usable = (sizes >= 2) & (sizes <= max_block)
        per_block = np.where(usable, sizes * (sizes - 1) // 2, 0)
        if per_block.sum() <= samples:
            return _within(entries, max_block, stats)
        block = np.searchsorted(
            np.cumsum(per_block), rng.integers(0, per_block.sum(), samples), "right"
        )
        x = rng.integers(0, sizes[block])
        y = rng.integers(0, sizes[block] - 1)
        y = y + (y >= x)
        start = entries.starts[block]
        return entries.rows[start + x], entries.rows[start + y]
    a, b = entries, other
    li, ri = _shared(a, b)
    n_left, n_right = a.sizes[li].astype(np.int64), b.sizes[ri].astype(np.int64)
    per_block = np.where(n_left * n_right <= max_block * max_block, n_left * n_right, 0)
    if per_block.sum() <= samples:
        return _across(a, b, max_block, stats)
    block = np.searchsorted(
        np.cumsum(per_block), rng.integers(0, per_block.sum(), samples), "right"
    )
    x = rng.integers(0, n_left[block])
    y = rng.integers(0, n_right[block])
    return a.rows[a.starts[li[block]] + x], b.rows[b.starts[ri[block]] + y]
