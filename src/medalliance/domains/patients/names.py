"""Names in characters and pinyin (pypinyin), with surname readings.

Matching and search compare toneless pinyin, so homophones (王伟 / 汪伟) meet.
A few surnames read differently from the same character elsewhere (单 shàn, 曾 zēng …);
pypinyin reads characters by context-free frequency, so those are corrected here.
"""

from __future__ import annotations

import re
import unicodedata

from pypinyin import Style, lazy_pinyin

# Surname readings (姓氏读音) that differ from the character's most frequent reading.
SURNAME_READINGS = {
    "单": "shan",
    "曾": "zeng",
    "解": "xie",
    "仇": "qiu",
    "朴": "piao",
    "查": "zha",
    "区": "ou",
    "盖": "ge",
    "乐": "yue",
    "覃": "qin",
    "种": "chong",
    "缪": "miao",
    "翟": "zhai",
    "尉": "yu",
    "召": "shao",
    "秘": "bi",
    "员": "yun",
    "句": "gou",
    "万俟": "mo qi",
    "单于": "chan yu",
    "尉迟": "yu chi",
    "长孙": "zhang sun",
}

_HAN = re.compile(r"[\u3400-\u9fff]")


def has_han(text: str) -> bool:
    return bool(_HAN.search(text))


def _syllables(text: str) -> list[str]:
    return [s for s in lazy_pinyin(text, errors="ignore", v_to_u=False) if s.strip()]


def surname_syllables(family_name: str) -> list[str]:
    if family_name in SURNAME_READINGS:
        return SURNAME_READINGS[family_name].split()
    return _syllables(family_name)


def full_pinyin(family_name: str, given_name: str) -> str:
    """'王伟' → 'wang wei'; Latin names are lower-cased and kept."""
    if not has_han(family_name + given_name):
        return normalise_latin(f"{family_name} {given_name}")
    return " ".join(surname_syllables(family_name) + _syllables(given_name))


def initials(pinyin: str) -> str:
    """'wang wei' → 'ww'."""
    return "".join(s[0] for s in pinyin.split() if s)


def normalise_latin(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^a-z ]", " ", letters.lower()).split())


def query_pinyin(text: str) -> str:
    """What a search box entry means in pinyin: characters converted, Latin normalised."""
    if has_han(text):
        return " ".join(_syllables(text))
    return normalise_latin(text)


def initials_of(text: str) -> str:
    return "".join(lazy_pinyin(text, style=Style.FIRST_LETTER, errors="ignore"))
