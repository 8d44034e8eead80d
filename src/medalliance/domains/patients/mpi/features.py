"""What the matcher compares, normalised once per record.

Online registrations and batch CSV rows both become ``Features``, so both paths
share one model. Names in characters also get toneless pinyin (homophones agree);
Latin names are lower-cased without accents.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from itertools import islice
from typing import Any

import numpy as np
import numpy.typing as npt

from medalliance.domains.patients import names

# Two-character surnames (复姓): a full name written as one string starts with one of
# these, not with a one-character surname and a three-character given name.
COMPOUND_SURNAMES = frozenset(
    {
        *(k for k in names.SURNAME_READINGS if len(k) == 2),
        *("欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "公孙", "慕容", "宇文", "司徒"),
        *("司空", "夏侯", "轩辕", "令狐", "端木", "独孤", "南宫", "西门", "百里", "呼延"),
        *("澹台", "公冶", "太史", "申屠", "闻人", "赫连", "钟离", "濮阳", "淳于", "宗政"),
    }
)
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
    text = value if isinstance(value, str) else str(value)
    if not text.isalnum():  # letters and digits only (most values) have nothing to trim
        text = " ".join(text.split())  # runs of whitespace to one space, trimmed
    if not text or (len(text) <= 4 and text[0] in "nN" and text.lower() in _NULLS):
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
        if compact[:2] in COMPOUND_SURNAMES and len(compact) > 2:
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
        self._arrays: dict[str, npt.NDArray[Any]] = {}

    def encode(self, values: Iterable[str | None]) -> Codes:
        index = self.index
        add = index.setdefault
        codes = [-1 if v is None else add(v, len(index)) for v in values]
        if len(index) > len(self.values):
            self.values.extend(islice(index, len(self.values), None))
        return np.array(codes, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.values)

    def _cached(self, name: str, make: Callable[[], npt.NDArray[Any]]) -> npt.NDArray[Any]:
        found = self._arrays.get(name)
        if found is None or len(found) != len(self.values):
            found = self._arrays[name] = make()
        return found

    @property
    def objects(self) -> npt.NDArray[np.object_]:
        """The values as a numpy object array (fast to index with codes)."""
        return self._cached("objects", lambda: np.array(self.values, dtype=object))

    @property
    def chars(self) -> npt.NDArray[np.unsignedinteger[Any]]:
        """The values as code points, one row each, padded with zeros (in the smallest
        unsigned type that holds them: digits take one byte)."""

        def make() -> npt.NDArray[np.unsignedinteger[Any]]:
            width = max(max((len(v) for v in self.values), default=1), 1)
            text = np.array(self.values, dtype=f"<U{width}").reshape(-1)
            points = text.view(np.uint32).reshape(len(self.values), width)
            top = int(points.max(initial=0))
            return points.astype(np.uint8 if top < 256 else np.uint16 if top < 65536 else np.uint32)

        return self._cached("chars", make)

    @property
    def words(self) -> npt.NDArray[np.uint64] | None:
        """One-byte ``chars`` packed eight to a 64-bit word, or None when some character
        needs more than a byte."""
        chars = self.chars
        if chars.dtype != np.uint8:
            return None

        def make() -> npt.NDArray[np.uint64]:
            width = -(-chars.shape[1] // 8) * 8
            padded = np.zeros((len(chars), width), dtype=np.uint8)
            padded[:, : chars.shape[1]] = chars
            return padded.view("<u8").astype(np.uint64)

        return self._cached("words", make)

    @property
    def lengths(self) -> npt.NDArray[np.int32]:
        return self._cached(
            "lengths", lambda: np.array([len(v) for v in self.values], dtype=np.int32)
        )

    @property
    def buckets(self) -> npt.NDArray[np.int16]:
        """How many characters of each value fall in each of 16 classes (code point
        mod 16): a coarse character histogram for lower bounds on edit distances."""

        def make() -> npt.NDArray[np.int16]:
            chars = self.chars
            rows = np.repeat(np.arange(len(chars), dtype=np.int64), chars.shape[1])
            flat = chars.reshape(-1).astype(np.int64)
            present = flat > 0
            counts = np.bincount(rows[present] * 16 + flat[present] % 16, minlength=len(chars) * 16)
            return counts.reshape(len(chars), 16).astype(np.int16)

        return self._cached("buckets", make)


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
        birth = births.encode([r.birth for r in records])
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
            family=names_.encode([r.family for r in records]),
            given=names_.encode([r.given for r in records]),
            pinyin=pinyin,
            family_pinyin=pinyin.encode([r.family_pinyin or None for r in records]),
            given_pinyin=pinyin.encode([r.given_pinyin or None for r in records]),
            full_pinyin=pinyin.encode([r.full_pinyin or None for r in records]),
            initials=pinyin.encode([r.initials or None for r in records]),
            births=births,
            birth=birth,
            birth_swapped=swapped[birth],
            birth_year=np.where(birth >= 0, numeric[birth] // 10_000, -1).astype(np.int32),
            birth_day=np.where(birth >= 0, numeric[birth] % 10_000, -1).astype(np.int32),
            sex=np.fromiter(
                ({"M": 0, "F": 1}.get(r.sex or "", -1) for r in records), dtype=np.int8
            ),
            ids=ids,
            id_number=ids.encode([r.id_number for r in records]),
            phone_numbers=phone_numbers,
            phones=phones,
            streets=streets,
            street=streets.encode([r.street for r in records]),
            localities=localities,
            city=localities.encode([r.city for r in records]),
            postcode=localities.encode([r.postcode for r in records]),
        )
