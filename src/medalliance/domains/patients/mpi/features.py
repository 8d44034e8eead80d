"""What the matcher compares, normalised once per record.

Online registrations and batch CSV rows both become ``Features``, so both paths
share one model. Names in characters also get toneless pinyin (homophones agree);
Latin names are lower-cased without accents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from medalliance.domains.patients import names

_SPACES = re.compile(r"\s+")


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
    text = _SPACES.sub(" ", str(value)).strip()
    if not text or text.lower() in ("nan", "none", "null"):
        return None
    return text


def _name_parts(value: str | None) -> tuple[str | None, str | None]:
    """(as written, compact pinyin) for one name part."""
    value = _clean(value)
    if value is None:
        return None, None
    if names.has_han(value):
        return value, names.query_pinyin(value).replace(" ", "")
    latin = names.normalise_latin(value)
    return latin or None, latin.replace(" ", "") or None


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
    family, family_py = _name_parts(family_name)  # type: ignore[arg-type]
    given, given_py = _name_parts(given_name)  # type: ignore[arg-type]
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
        phones=frozenset(p for p in (re.sub(r"\D", "", x) for x in phones or ()) if len(p) >= 6),
        street=_lower(street),
        city=_lower(city),
        postcode=_clean(postcode),
    )


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
    digits = re.sub(r"\D", "", text)
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
    return re.sub(r"[\s-]", "", text).upper() or None


def _lower(value: object) -> str | None:
    text = _clean(value)
    return None if text is None else text.lower()
