"""The Chinese resident identity card number (公民身份号码), GB 11643-1999.

18 characters: a 6-digit address code, the birth date (YYYYMMDD), a 3-digit sequence
code whose last digit is odd for men and even for women, and a check character
(ISO 7064 MOD 11-2: weights 2^(17-i) mod 11, remainder mapped to "10X98765432").
The legacy 15-digit form (GB 11643-1989) has a 2-digit year and no check character;
it converts by inserting "19" and computing the check character.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"


class Sex(StrEnum):
    """GB/T 2261.1 codes by name: male 1, female 2, unknown 0, unspecified 9."""

    MALE = "male"
    FEMALE = "female"
    UNKNOWN = "unknown"


class IdNumberError(ValueError):
    """Why an ID number was refused; ``reason`` is a stable machine code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ResidentId:
    number: str  # always the 18-character form, check character upper-case
    birth_date: date
    sex: Sex
    address_code: str
    converted_from_15: bool = False


def check_char(first17: str) -> str:
    total = sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def parse(raw: str, *, today: date | None = None) -> ResidentId:
    """Validate and normalise a resident ID number, or raise ``IdNumberError``."""
    value = raw.strip().replace(" ", "").upper()
    converted = False
    if len(value) == 15:
        if not value.isdigit():
            raise IdNumberError("format", "A 15-digit ID number must contain only digits.")
        first17 = value[:6] + "19" + value[6:]
        value = first17 + check_char(first17)
        converted = True
    if len(value) != 18:
        raise IdNumberError("length", "An ID number has 18 characters (or 15 in the old form).")
    if not value[:17].isdigit() or not (value[17].isdigit() or value[17] == "X"):
        raise IdNumberError(
            "format", "An ID number has 17 digits followed by a digit or X as check character."
        )
    expected = check_char(value[:17])
    if value[17] != expected:
        raise IdNumberError(
            "check-digit",
            f"The check character of this ID number is wrong (it should be {expected}, "
            f"not {value[17]}); the number was probably mistyped.",
        )
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError as exc:
        raise IdNumberError(
            "birth-date", f"The ID number encodes an impossible birth date ({value[6:14]})."
        ) from exc
    if born > (today or date.today()) or born.year < 1880:  # noqa: DTZ011 - a calendar date
        raise IdNumberError(
            "birth-date", f"The ID number encodes an impossible birth date ({born.isoformat()})."
        )
    sex = Sex.MALE if int(value[16]) % 2 == 1 else Sex.FEMALE
    return ResidentId(value, born, sex, value[:6], converted)


def check_agreement(resident: ResidentId, *, birth_date: date | None, sex: Sex | None) -> None:
    """The ID number must agree with the birth date and sex given beside it."""
    if birth_date is not None and birth_date != resident.birth_date:
        raise IdNumberError(
            "birth-date-mismatch",
            f"The ID number gives the birth date {resident.birth_date.isoformat()}, "
            f"but the registration says {birth_date.isoformat()}.",
        )
    if sex is not None and sex is not Sex.UNKNOWN and sex is not resident.sex:
        raise IdNumberError(
            "sex-mismatch",
            f"The ID number belongs to a {'man' if resident.sex is Sex.MALE else 'woman'} "
            f"(17th digit {'odd' if resident.sex is Sex.MALE else 'even'}), "
            f"but the registration says {sex}.",
        )


def make_number(address_code: str, born: date, sequence: int, sex: Sex) -> str:
    """Build a valid synthetic number (demo data and tests)."""
    seq = sequence % 500 * 2 + (1 if sex is Sex.MALE else 0)  # odd for men, even for women
    first17 = f"{address_code}{born:%Y%m%d}{seq:03d}"
    return first17 + check_char(first17)
