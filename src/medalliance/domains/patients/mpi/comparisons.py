"""Comparison levels for each field of a record pair (pure functions).

Each comparison returns a level index into its ``LEVELS`` (0 is the strongest
agreement) or ``None`` when either side is missing: a missing value is neither
evidence for nor against a match (weight 0), as in Fellegi–Sunter practice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler
from rapidfuzz.process import cpdist

from medalliance.domains.patients.mpi.features import Codes, Features, FeatureTable, Vocabulary


@dataclass(frozen=True, slots=True)
class Comparison:
    name: str
    levels: tuple[str, ...]
    compare: Callable[[Features, Features], int | None]


def _name_level(
    a_text: str | None, a_py: str | None, b_text: str | None, b_py: str | None
) -> int | None:
    if a_text is None or b_text is None:
        return None
    if a_text == b_text:
        return 0
    if a_py and a_py == b_py:
        return 1  # homophone: same pinyin, other characters
    if not a_py or not b_py:
        return 4
    similarity = JaroWinkler.normalized_similarity(a_py, b_py)
    if similarity >= 0.92:
        return 2
    if similarity >= 0.80:
        return 3
    return 4


def compare_family(a: Features, b: Features) -> int | None:
    level = _name_level(a.family, a.family_pinyin, b.family, b.family_pinyin)
    if level == 4 and a.family and b.given and a.family == b.given and a.given == b.family:
        return 2  # family and given names swapped
    return level


def compare_given(a: Features, b: Features) -> int | None:
    level = _name_level(a.given, a.given_pinyin, b.given, b.given_pinyin)
    if level == 4 and a.given and b.family and a.given == b.family and a.family == b.given:
        return 2
    return level


def compare_birth(a: Features, b: Features) -> int | None:
    if a.birth is None or b.birth is None:
        return None
    if a.birth == b.birth:
        return 0
    swapped = b.birth[:4] + b.birth[6:8] + b.birth[4:6]
    if a.birth == swapped or DamerauLevenshtein.distance(a.birth, b.birth) <= 1:
        return 1  # day/month swap, one mistyped or transposed digit
    if a.birth[:4] == b.birth[:4]:
        return 2
    return 3


def compare_sex(a: Features, b: Features) -> int | None:
    if a.sex is None or b.sex is None:
        return None
    return 0 if a.sex == b.sex else 1


def compare_id(a: Features, b: Features) -> int | None:
    if a.id_number is None or b.id_number is None:
        return None
    if a.id_number == b.id_number:
        return 0
    distance = DamerauLevenshtein.distance(a.id_number, b.id_number)
    if distance <= 1:
        return 1
    if distance <= 2:
        return 2
    return 3


def compare_phone(a: Features, b: Features) -> int | None:
    if not a.phones or not b.phones:
        return None
    if a.phones & b.phones:
        return 0
    if any(DamerauLevenshtein.distance(x, y) <= 1 for x in a.phones for y in b.phones):
        return 1
    return 2


def compare_street(a: Features, b: Features) -> int | None:
    if a.street is None or b.street is None:
        return None
    if a.street == b.street:
        return 0
    similarity = JaroWinkler.normalized_similarity(a.street, b.street)
    if similarity >= 0.90:
        return 1
    if similarity >= 0.70:
        return 2
    return 3


def compare_locality(a: Features, b: Features) -> int | None:
    agree = 0
    known = 0
    for x, y in ((a.city, b.city), (a.postcode, b.postcode)):
        if x is not None and y is not None:
            known += 1
            agree += x == y
    if known == 0:
        return None
    if agree == known:
        return 0
    if agree:
        return 1
    return 2


COMPARISONS: tuple[Comparison, ...] = (
    Comparison(
        "family_name",
        ("exact", "homophone", "similar", "somewhat similar", "different"),
        compare_family,
    ),
    Comparison(
        "given_name",
        ("exact", "homophone", "similar", "somewhat similar", "different"),
        compare_given,
    ),
    Comparison(
        "birth_date", ("exact", "typo or day/month swap", "same year", "different"), compare_birth
    ),
    Comparison("sex", ("same", "different"), compare_sex),
    Comparison("id_number", ("exact", "one edit", "two edits", "different"), compare_id),
    Comparison("phone", ("shared", "one edit", "different"), compare_phone),
    Comparison("street", ("exact", "similar", "somewhat similar", "different"), compare_street),
    Comparison("locality", ("all agree", "some agree", "different"), compare_locality),
)


def levels(a: Features, b: Features) -> tuple[int | None, ...]:
    return tuple(c.compare(a, b) for c in COMPARISONS)


# -- the same levels for many pairs at once --------------------------------------------
#
# ``level_matrix`` gives, for index arrays ``left`` and ``right`` into a FeatureTable,
# exactly ``levels(records[left[k]], records[right[k]])`` for every k (tested on
# samples): equality by integer code in numpy, and the fuzzy scores from the same
# rapidfuzz functions, computed in C by ``cpdist`` only where exact agreement failed,
# and for names and streets once per distinct pair of values.

LevelMatrix = npt.NDArray[np.int8]  # pairs × comparisons, -1 where a value is missing
Index = npt.NDArray[np.intp]
_NAME_SCORE = JaroWinkler.normalized_similarity
_EDITS = DamerauLevenshtein.distance


def _similarities(
    vocabulary: Vocabulary, a: Codes, b: Codes, *, workers: int
) -> npt.NDArray[np.float64]:
    """JaroWinkler.normalized_similarity(values[a[k]], values[b[k]]), computed once per
    distinct pair of values."""
    if len(a) == 0:
        return np.zeros(0)
    size = max(len(vocabulary), 1)
    unique, inverse = np.unique(a.astype(np.int64) * size + b, return_inverse=True)
    values = vocabulary.objects
    found = cpdist(
        values[unique // size],
        values[unique % size],
        scorer=_NAME_SCORE,
        dtype=np.float64,
        workers=workers,
    )
    scores: npt.NDArray[np.float64] = np.asarray(found, dtype=np.float64).reshape(-1)
    result: npt.NDArray[np.float64] = scores[inverse.reshape(-1)]
    return result


_BYTE_LOW = np.uint64(0x0101_0101_0101_0101)


def _mismatches(vocabulary: Vocabulary, a: Codes, b: Codes) -> npt.NDArray[np.int64]:
    """How many positions differ between values of equal length (Hamming distance)."""
    words = vocabulary.words
    if words is None:
        counted: npt.NDArray[np.int64] = np.count_nonzero(
            vocabulary.chars[a] != vocabulary.chars[b], axis=1
        )
        return counted
    count = np.zeros(len(a), dtype=np.uint64)
    for w in range(words.shape[1]):
        x = words[a, w] ^ words[b, w]
        # fold each byte onto its lowest bit, then add the bytes up by multiplication
        x |= x >> np.uint64(4)
        x |= x >> np.uint64(2)
        x |= x >> np.uint64(1)
        with np.errstate(over="ignore"):
            count += ((x & _BYTE_LOW) * _BYTE_LOW) >> np.uint64(56)
    return count.astype(np.int64)


def _transposed(chars: npt.NDArray[Any], a: Codes, b: Codes) -> npt.NDArray[np.bool_]:
    """For values that differ in exactly two positions: are those adjacent and swapped?"""
    ca, cb = chars[a], chars[b]
    mismatch = ca != cb
    first = mismatch.argmax(axis=1)
    second = np.minimum(first + 1, chars.shape[1] - 1)
    k = np.arange(len(a))
    swapped: npt.NDArray[np.bool_] = (
        mismatch[k, second] & (ca[k, first] == cb[k, second]) & (ca[k, second] == cb[k, first])
    )
    return swapped


def _edit_distances(
    vocabulary: Vocabulary, a: Codes, b: Codes, *, cutoff: int, workers: int
) -> npt.NDArray[np.int8]:
    """min(DamerauLevenshtein.distance(values[a[k]], values[b[k]]), cutoff + 1).

    Most pairs are settled in numpy. Between strings of equal length one mismatched
    position is one edit; two are one edit if they are an adjacent transposition and
    two otherwise; three or more are at least two edits. The distance is also at least
    the length difference, and at least the bag distance of the strings' character
    classes. Only pairs these facts leave open go to rapidfuzz.
    """
    result = np.full(len(a), cutoff + 1, dtype=np.int8)
    if len(a) == 0:
        return result
    la, lb = vocabulary.lengths[a], vocabulary.lengths[b]
    gap = np.abs(la - lb)
    rows = np.flatnonzero(gap == 0)
    hamming = _mismatches(vocabulary, a[rows], b[rows])
    distance = np.minimum(hamming, 2)
    two = np.flatnonzero(hamming == 2)
    distance[two[_transposed(vocabulary.chars, a[rows[two]], b[rows[two]])]] = 1
    settled = (hamming <= 2) | (cutoff <= 1)
    result[rows[settled]] = np.minimum(distance[settled], cutoff + 1)
    open_ = np.zeros(len(a), dtype=bool)
    open_[rows[~settled]] = True
    open_ |= (gap > 0) & (gap <= cutoff)
    rest = np.flatnonzero(open_)
    if len(rest):
        diff = vocabulary.buckets[a[rest]] - vocabulary.buckets[b[rest]]
        bag = (np.abs(diff).sum(axis=1) + gap[rest]) // 2
        rest = rest[bag <= cutoff]
    if len(rest):
        values = vocabulary.objects
        found = cpdist(
            values[a[rest]],
            values[b[rest]],
            scorer=_EDITS,
            score_cutoff=cutoff,
            dtype=np.int32,
            workers=workers,
        )
        result[rest] = np.asarray(found).reshape(-1)
    return result


def _name_levels(
    table: FeatureTable,
    text: tuple[Codes, Codes],
    pinyin: tuple[Codes, Codes],
    other: tuple[Codes, Codes],
    workers: int,
) -> npt.NDArray[np.int8]:
    """``compare_family`` / ``compare_given``: ``other`` is the other name part of each
    side (given for family), for the swapped-names rule."""
    (ta, tb), (pa, pb), (oa, ob) = text, pinyin, other
    level = np.full(len(ta), -1, dtype=np.int8)
    present = (ta >= 0) & (tb >= 0)
    level[present] = 4
    exact = present & (ta == tb)
    homophone = present & ~exact & (pa >= 0) & (pa == pb)
    fuzzy = present & ~exact & ~homophone & (pa >= 0) & (pb >= 0)
    rows = np.flatnonzero(fuzzy)
    similarity = _similarities(table.pinyin, pa[rows], pb[rows], workers=workers)
    level[rows] = np.where(similarity >= 0.92, 2, np.where(similarity >= 0.80, 3, 4))
    level[homophone] = 1
    level[exact] = 0
    swapped = (level == 4) & (ta == ob) & (oa == tb) & (oa >= 0)
    level[swapped] = 2
    return level


def _birth_levels(table: FeatureTable, a: Index, b: Index, workers: int) -> npt.NDArray[np.int8]:
    ba, bb = table.birth[a], table.birth[b]
    level = np.full(len(a), -1, dtype=np.int8)
    present = (ba >= 0) & (bb >= 0)
    exact = present & (ba == bb)
    swapped = present & ~exact & (ba == table.birth_swapped[b])
    rest = np.flatnonzero(present & ~exact & ~swapped)
    edits = _edit_distances(table.births, ba[rest], bb[rest], cutoff=1, workers=workers)
    same_year = table.birth_year[a[rest]] == table.birth_year[b[rest]]
    level[rest] = np.where(edits <= 1, 1, np.where(same_year, 2, 3))
    level[swapped] = 1
    level[exact] = 0
    return level


def _id_levels(table: FeatureTable, a: Index, b: Index, workers: int) -> npt.NDArray[np.int8]:
    ia, ib = table.id_number[a], table.id_number[b]
    level = np.full(len(a), -1, dtype=np.int8)
    present = (ia >= 0) & (ib >= 0)
    exact = present & (ia == ib)
    rest = np.flatnonzero(present & ~exact)
    edits = _edit_distances(table.ids, ia[rest], ib[rest], cutoff=2, workers=workers)
    level[rest] = np.where(edits <= 1, 1, np.where(edits <= 2, 2, 3))
    level[exact] = 0
    return level


def _phone_levels(table: FeatureTable, a: Index, b: Index, workers: int) -> npt.NDArray[np.int8]:
    pa, pb = table.phones[a], table.phones[b]
    level = np.full(len(a), -1, dtype=np.int8)
    present = (pa[:, 0] >= 0) & (pb[:, 0] >= 0)
    best = np.full(len(a), 2, dtype=np.int8)
    for x in range(pa.shape[1]):
        for y in range(pb.shape[1]):
            both = present & (pa[:, x] >= 0) & (pb[:, y] >= 0)
            same = both & (pa[:, x] == pb[:, y])
            rest = np.flatnonzero(both & ~same & (best > 1))
            edits = _edit_distances(
                table.phone_numbers, pa[rest, x], pb[rest, y], cutoff=1, workers=workers
            )
            best[rest[edits <= 1]] = 1
            best[same] = 0
    level[present] = best[present]
    return level


def _street_levels(table: FeatureTable, a: Index, b: Index, workers: int) -> npt.NDArray[np.int8]:
    sa, sb = table.street[a], table.street[b]
    level = np.full(len(a), -1, dtype=np.int8)
    present = (sa >= 0) & (sb >= 0)
    exact = present & (sa == sb)
    rest = np.flatnonzero(present & ~exact)
    similarity = _similarities(table.streets, sa[rest], sb[rest], workers=workers)
    level[rest] = np.where(similarity >= 0.90, 1, np.where(similarity >= 0.70, 2, 3))
    level[exact] = 0
    return level


def _locality_levels(table: FeatureTable, a: Index, b: Index) -> npt.NDArray[np.int8]:
    known = np.zeros(len(a), dtype=np.int8)
    agree = np.zeros(len(a), dtype=np.int8)
    for column in (table.city, table.postcode):
        x, y = column[a], column[b]
        both = (x >= 0) & (y >= 0)
        known += both
        agree += both & (x == y)
    level = np.where(agree == known, 0, np.where(agree > 0, 1, 2)).astype(np.int8)
    level[known == 0] = -1
    return level


def level_matrix(
    table: FeatureTable, left: Index, right: Index, *, workers: int = 1
) -> LevelMatrix:
    """``levels`` of the pairs (left[k], right[k]) of table rows, -1 for missing."""
    fa, fb = table.family[left], table.family[right]
    ga, gb = table.given[left], table.given[right]
    pfa, pfb = table.family_pinyin[left], table.family_pinyin[right]
    pga, pgb = table.given_pinyin[left], table.given_pinyin[right]
    sa, sb = table.sex[left], table.sex[right]
    sex = np.where((sa >= 0) & (sb >= 0), (sa != sb).astype(np.int8), -1).astype(np.int8)
    columns = [
        _name_levels(table, (fa, fb), (pfa, pfb), (ga, gb), workers),
        _name_levels(table, (ga, gb), (pga, pgb), (fa, fb), workers),
        _birth_levels(table, left, right, workers),
        sex,
        _id_levels(table, left, right, workers),
        _phone_levels(table, left, right, workers),
        _street_levels(table, left, right, workers),
        _locality_levels(table, left, right),
    ]
    return np.ascontiguousarray(np.stack(columns, axis=1), dtype=np.int8)
