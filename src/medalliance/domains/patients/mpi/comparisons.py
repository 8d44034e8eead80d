"""Comparison levels for each field of a record pair (pure functions).

Each comparison returns a level index into its ``LEVELS`` (0 is the strongest
agreement) or ``None`` when either side is missing: a missing value is neither
evidence for nor against a match (weight 0), as in Fellegi–Sunter practice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler

from medalliance.domains.patients.mpi.features import Features


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
