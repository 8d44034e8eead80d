"""What the matcher compares, normalised once per record.

Online registrations and batch CSV rows both become ``Features``, so both paths
share one model. Names in characters also get toneless pinyin (homophones agree);
Latin names are lower-cased without accents.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from medalliance.domains.patients import names

_NON_DIGITS = re.compile(r"\D")
_ID_NOISE = re.compile(r"[\s-]")
_NULLS = frozenset(("nan", "none", "null"))


@dataclass(frozen=True, slots=True)
class Features:
    key: str
    family: str | None  # characters, or normalised Latin
    given: str | None
    family_pinyin: str | None  # compact toneless pinyin ('wang'), or the Latin name
    given_pinyin: str | None
    birth: str | None  # YYYYMMDD
    sex: str | None  # 'M' / 'F'
    id_number: str | None
    phones: frozenset[str]
    street: str | None
    city: str | None  # city, district or suburb: the locality
    postcode: str | None

    @property
    def full_pinyin(self) -> str:
        return (self.family_pinyin or "") + (self.given_pinyin or "")

    @property
    def initials(self) -> str:
        return (self.family_pinyin or "")[:1] + (self.given_pinyin or "")[:1]


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())  # runs of whitespace to one space, trimmed
    if not text or (len(text) <= 4 and text.lower() in _NULLS):
        return None
    return text


def _name_parts(value: object) -> tuple[str | None, str | None]:
    """(as written, compact pinyin) for one name part."""
    text = _clean(value)
    if text is None:
        return None, None
    return _cleaned_name_parts(text)


# Names repeat (a registry has many 王伟): pinyin conversion is cached per distinct value,
# which makes batch feature building several times faster.
@lru_cache(maxsize=1 << 16)
def _cleaned_name_parts(value: str) -> tuple[str | None, str | None]:
    if names.has_han(value):
        return value, names.query_pinyin(value).replace(" ", "")
    latin = names.normalise_latin(value)
    return latin or None, latin.replace(" ", "") or None


@lru_cache(maxsize=1 << 16)
def _family_pinyin(family: str | None) -> str | None:
    if family is None or not names.has_han(family):
        return None
    return "".join(names.surname_syllables(family))


def build(
    key: str,
    *,
    family_name: object = None,
    given_name: object = None,
    full_name: object = None,
    birth_date: object = None,
    sex: object = None,
    id_number: object = None,
    phones: list[str] | tuple[str, ...] | None = None,
    street: object = None,
    city: object = None,
    postcode: object = None,
) -> Features:
    family, family_py = _name_parts(family_name)
    given, given_py = _name_parts(given_name)
    if family is None and given is None:
        family, given, family_py, given_py = _split_full_name(_clean(full_name))
    family_py = _family_pinyin(family) or family_py
    return Features(
        key=key,
        family=family,
        given=given,
        family_pinyin=family_py,
        given_pinyin=given_py,
        birth=_birth(birth_date),
        sex=_sex(sex),
        id_number=_id(id_number),
        phones=frozenset(p for p in (_NON_DIGITS.sub("", x) for x in phones or ()) if len(p) >= 6),
        street=_lower(street),
        city=_lower(city),
        postcode=_clean(postcode),
    )


@lru_cache(maxsize=1 << 16)
def _split_full_name(
    full: str | None,
) -> tuple[str | None, str | None, str | None, str | None]:
    if full is None:
        return None, None, None, None
    if names.has_han(full):
        compact = full.replace(" ", "")
        family, given = compact[:1], compact[1:]
        for double in names.SURNAME_READINGS:
            if len(double) == 2 and compact.startswith(double):
                family, given = compact[:2], compact[2:]
        return (
            family,
            given or None,
            "".join(names.surname_syllables(family)),
            names.query_pinyin(given).replace(" ", "") if given else None,
        )
    parts = names.normalise_latin(full).split()
    if not parts:
        return None, None, None, None
    # Western order "given family" when written in Latin letters.
    family_l, given_l = parts[-1], " ".join(parts[:-1]) or None
    return family_l, given_l, family_l, None if given_l is None else given_l.replace(" ", "")


def _birth(value: object) -> str | None:
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    text = _clean(value)
    if text is None:
        return None
    digits = _NON_DIGITS.sub("", text)
    if len(digits) != 8:
        return None
    return digits


def _sex(value: object) -> str | None:
    text = (_clean(value) or "").lower()
    if text in ("m", "male", "1", "男"):
        return "M"
    if text in ("f", "female", "2", "女"):
        return "F"
    return None


def _id(value: object) -> str | None:
    text = _clean(value)
    if text is None:
        return None
    return _ID_NOISE.sub("", text).upper() or None


def _lower(value: object) -> str | None:
    text = _clean(value)
    return None if text is None else text.lower()


# -- columnar form, for comparing many pairs at once (batch linkage, training) ----------

Codes = npt.NDArray[np.int32]  # index into a vocabulary, -1 where the value is missing


class Vocabulary:
    """Distinct strings and their codes; equal strings get equal codes."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self.index: dict[str, int] = {}

    def encode(self, values: Iterable[str | None]) -> Codes:
        index, known = self.index, self.values

        def code(value: str | None) -> int:
            if value is None:
                return -1
            found = index.get(value)
            if found is None:
                found = index[value] = len(known)
                known.append(value)
            return found

        return np.fromiter((code(v) for v in values), dtype=np.int32)

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True, slots=True)
class FeatureTable:
    """The same ``Features`` as integer columns: one row per record, strings encoded
    through a vocabulary per kind of value (family and given names share one, so a
    swapped name compares by code). Built once; comparisons and blocking read codes."""

    keys: list[str]
    names: Vocabulary
    family: Codes
    given: Codes
    pinyin: Vocabulary
    family_pinyin: Codes
    given_pinyin: Codes
    full_pinyin: Codes
    initials: Codes
    births: Vocabulary
    birth: Codes
    birth_swapped: Codes  # code of the day/month swapped date, -2 when no record has it
    birth_year: Codes  # the year as a number, -1 when missing
    birth_day: Codes  # MMDD as a number, -1 when missing
    sex: npt.NDArray[np.int8]  # 0 male, 1 female, -1 missing
    ids: Vocabulary
    id_number: Codes
    phone_numbers: Vocabulary
    phones: npt.NDArray[np.int32]  # records × most phones of one record, -1 padding
    streets: Vocabulary
    street: Codes
    localities: Vocabulary
    city: Codes
    postcode: Codes

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def of(cls, records: Sequence[Features]) -> FeatureTable:
        names_, pinyin, births = Vocabulary(), Vocabulary(), Vocabulary()
        ids, phone_numbers, streets, localities = (
            Vocabulary(),
            Vocabulary(),
            Vocabulary(),
            Vocabulary(),
        )
        birth = births.encode(r.birth for r in records)
        swapped = np.array(
            [births.index.get(b[:4] + b[6:8] + b[4:6], -2) for b in births.values] + [-2],
            dtype=np.int32,
        )
        numeric = np.array([int(b) for b in births.values] + [-1], dtype=np.int64)
        width = max((len(r.phones) for r in records), default=0)
        phones = np.full((len(records), max(width, 1)), -1, dtype=np.int32)
        for column in range(width):
            phones[:, column] = phone_numbers.encode(
                sorted(r.phones)[column] if len(r.phones) > column else None for r in records
            )
        return cls(
            keys=[r.key for r in records],
            names=names_,
            family=names_.encode(r.family for r in records),
            given=names_.encode(r.given for r in records),
            pinyin=pinyin,
            family_pinyin=pinyin.encode(r.family_pinyin for r in records),
            given_pinyin=pinyin.encode(r.given_pinyin for r in records),
            full_pinyin=pinyin.encode(r.full_pinyin or None for r in records),
            initials=pinyin.encode(r.initials or None for r in records),
            births=births,
            birth=birth,
            birth_swapped=swapped[birth],
            birth_year=np.where(birth >= 0, numeric[birth] // 10_000, -1).astype(np.int32),
            birth_day=np.where(birth >= 0, numeric[birth] % 10_000, -1).astype(np.int32),
            sex=np.fromiter(
                ({"M": 0, "F": 1}.get(r.sex or "", -1) for r in records), dtype=np.int8
            ),
            ids=ids,
            id_number=ids.encode(r.id_number for r in records),
            phone_numbers=phone_numbers,
            phones=phones,
            streets=streets,
            street=streets.encode(r.street for r in records),
            localities=localities,
            city=localities.encode(r.city for r in records),
            postcode=localities.encode(r.postcode for r in records),
        )
