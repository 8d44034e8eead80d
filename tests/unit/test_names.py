"""Pinyin for names: surname readings, initials, homophones, Latin names."""

from __future__ import annotations

import pytest

from medalliance.domains.patients import names


@pytest.mark.parametrize(
    ("family", "given", "pinyin", "initials"),
    [
        ("王", "伟", "wang wei", "ww"),
        ("当", "归", "dang gui", "dg"),
        ("单", "雄信", "shan xiong xin", "sxx"),  # surname 单 reads shàn
        ("曾", "志伟", "zeng zhi wei", "zzw"),  # surname 曾 reads zēng
        ("欧阳", "娜娜", "ou yang na na", "oynn"),
        ("Smith", "Anna", "smith anna", "sa"),
    ],
)
def test_full_pinyin_and_initials(family: str, given: str, pinyin: str, initials: str) -> None:
    assert names.full_pinyin(family, given) == pinyin
    assert names.initials(names.full_pinyin(family, given)) == initials


def test_homophones_share_their_pinyin() -> None:
    assert names.full_pinyin("王", "伟") == names.full_pinyin("汪", "玮")


def test_query_pinyin_and_latin_normalisation() -> None:
    assert names.query_pinyin("王伟") == "wang wei"
    assert names.query_pinyin("  Wáng  Wěi ") == "wang wei"
    assert names.initials_of("张三") == "zs"
