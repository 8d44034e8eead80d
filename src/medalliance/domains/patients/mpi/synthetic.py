"""A synthetic Chinese patient registry with known duplicates, for training the
shipped model, the demo, tests and benchmarks. Every person is invented.

Duplicates carry the errors a registry really has: homophone characters in the
given name, a mistyped or missing ID number, a day/month swap or one wrong digit in
the birth date, a changed phone, a moved address. Common names are common, so many
different people share a name such as 王伟.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from medalliance.domains.patients import identity
from medalliance.domains.patients.identity import Sex

# The most frequent surnames, weighted roughly by how common they are (synthetic data).
SURNAMES = "".join(
    [
        "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯",
        "邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢",
    ]
)
SURNAME_WEIGHTS = [max(1.0, 80 - 1.6 * i) for i in range(len(SURNAMES))]
RARE_SURNAMES = ["欧阳", "司马", "上官", "诸葛", "单", "仇", "区", "覃"]
GIVEN_MALE = list("伟强磊军勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊帆建国志文")
GIVEN_FEMALE = list("芳娜敏静丽艳娟霞秀英玲桂兰萍红梅琳洁燕雪慧颖倩婷佳")
# Characters that share a toneless pinyin: registration clerks type one for another.
HOMOPHONES = {
    "伟": "玮炜维薇",
    "丽": "莉俐利",
    "静": "婧靖晶",
    "娜": "纳",
    "军": "君均",
    "杰": "洁捷",
    "红": "宏鸿洪",
    "华": "桦骅",
    "明": "铭鸣",
    "芳": "方舫",
    "敏": "闽珉",
    "强": "蔷",
    "燕": "艳雁",
    "斌": "彬滨",
    "涛": "韬",
    "玲": "琳龄",
    "英": "瑛莹",
    "梅": "玫媚",
    "波": "博",
    "辉": "晖徽",
    "文": "雯",
    "平": "萍",
}
PROVINCES = {
    "浙江省": ("330100", "杭州市", ["上城区", "拱墅区", "西湖区", "滨江区"]),
    "江苏省": ("320100", "南京市", ["玄武区", "秦淮区", "鼓楼区", "栖霞区"]),
    "上海市": ("310100", "上海市", ["黄浦区", "徐汇区", "长宁区", "静安区"]),
    "四川省": ("510100", "成都市", ["锦江区", "青羊区", "金牛区", "武侯区"]),
}
STREETS = [
    "人民路",
    "解放路",
    "建设路",
    "中山路",
    "和平街",
    "胜利街",
    "文化路",
    "新华路",
    "光明街",
    "长江路",
]


@dataclass
class SyntheticRecord:
    record_id: str
    person: int  # the truth: records of one person share this
    family_name: str
    given_name: str
    sex: Sex
    birth_date: date
    id_number: str | None
    phone: str | None
    province: str
    city: str
    district: str
    street: str
    postcode: str

    def as_row(self) -> dict[str, str]:
        return {
            "record_id": self.record_id,
            "family_name": self.family_name,
            "given_name": self.given_name,
            "birth_date": self.birth_date.isoformat(),
            "sex": "M" if self.sex is Sex.MALE else "F",
            "id_number": self.id_number or "",
            "phone": self.phone or "",
            "address": self.street,
            "city": self.district,
            "province": self.province,
            "postcode": self.postcode,
        }


def _person(rng: random.Random, index: int, taken: set[str]) -> SyntheticRecord:
    sex = Sex.MALE if rng.random() < 0.5 else Sex.FEMALE
    family = (
        rng.choice(RARE_SURNAMES)
        if rng.random() < 0.02
        else rng.choices(SURNAMES, SURNAME_WEIGHTS)[0]
    )
    pool = GIVEN_MALE if sex is Sex.MALE else GIVEN_FEMALE
    given = rng.choice(pool) if rng.random() < 0.45 else rng.choice(pool) + rng.choice(pool)
    born = date(1930, 1, 1) + timedelta(days=rng.randrange(0, 365 * 93))
    province = rng.choice(list(PROVINCES))
    area, city, districts = PROVINCES[province]
    district_index = rng.randrange(len(districts))
    address_code = area[:4] + f"{district_index + 2:02d}"
    born, id_number = _unique_number(address_code, born, rng.randrange(1000), sex, taken)
    return SyntheticRecord(
        record_id=f"P{index:07d}",
        person=index,
        family_name=family,
        given_name=given,
        sex=sex,
        birth_date=born,
        id_number=id_number,
        phone=f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}",
        province=province,
        city=city,
        district=districts[district_index],
        street=f"{rng.choice(STREETS)}{rng.randrange(1, 400)}号",
        postcode=f"{area[:4]}{district_index + 1:02d}",
    )


SEQUENCES_PER_SEX = 500  # identity.make_number: odd sequence codes for men, even for women


def _unique_number(
    address_code: str, born: date, sequence: int, sex: Sex, taken: set[str]
) -> tuple[date, str]:
    """A valid number no other invented person holds (two people never share one; with
    16 address codes a million people would otherwise draw ~900 clashes). On a clash the
    next free sequence code is used, then the next day: no extra random draws, so every
    other generated value stays as it was."""
    while True:
        for step in range(SEQUENCES_PER_SEX):
            number = identity.make_number(address_code, born, sequence + step, sex)
            if number not in taken:
                taken.add(number)
                return born, number
        born += timedelta(days=1)


def _typo_digit(rng: random.Random, text: str) -> str:
    position = rng.randrange(len(text) - 1)
    digit = str((int(text[position]) + rng.randrange(1, 10)) % 10)
    return text[:position] + digit + text[position + 1 :]


def _duplicate(rng: random.Random, source: SyntheticRecord, record_id: str) -> SyntheticRecord:
    dup = SyntheticRecord(**{**source.__dict__, "record_id": record_id})
    errors = rng.sample(
        [
            "homophone",
            "id_typo",
            "id_missing",
            "birth_swap",
            "birth_typo",
            "phone",
            "moved",
            "none",
        ],
        k=rng.choice([1, 1, 2, 2, 3]),
    )
    for error in errors:
        if error == "homophone":
            chars = [rng.choice(HOMOPHONES[c]) if c in HOMOPHONES else c for c in dup.given_name]
            dup.given_name = "".join(chars)
        elif error == "id_typo" and dup.id_number:
            dup.id_number = _typo_digit(rng, dup.id_number)
        elif error == "id_missing":
            dup.id_number = None
        elif (
            error == "birth_swap"
            and dup.birth_date.day <= 12
            and dup.birth_date.day != dup.birth_date.month
        ):
            dup.birth_date = date(dup.birth_date.year, dup.birth_date.day, dup.birth_date.month)
        elif error == "birth_typo":
            dup.birth_date = dup.birth_date + timedelta(days=rng.choice([-10, -1, 1, 10]))
        elif error == "phone":
            dup.phone = (
                f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
                if rng.random() < 0.8
                else None
            )
        elif error == "moved":
            dup.street = f"{rng.choice(STREETS)}{rng.randrange(1, 400)}号"
    return dup


def registry(
    persons: int,
    *,
    duplicate_rate: float = 0.2,
    seed: int = 7,
    taken_ids: set[str] | None = None,
) -> list[SyntheticRecord]:
    """``persons`` people; a ``duplicate_rate`` share of them registered twice (a few thrice).

    Every invented person gets a resident ID of their own. ``taken_ids``, when given,
    holds numbers already in use (by registries generated before, say): they are
    avoided, and the new people's numbers are added to it."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data
    taken = taken_ids if taken_ids is not None else set()
    records: list[SyntheticRecord] = []
    for index in range(persons):
        person = _person(rng, index, taken)
        records.append(person)
        if rng.random() < duplicate_rate:
            copies = 2 if rng.random() < 0.1 else 1
            for copy in range(copies):
                records.append(_duplicate(rng, person, f"{person.record_id}-D{copy + 1}"))
    rng.shuffle(records)
    return records
