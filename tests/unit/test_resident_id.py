"""GB 11643 resident ID numbers: check character, birth date, sex, the 15-digit form."""

from __future__ import annotations

from datetime import date

import pytest

from medalliance.domains.patients import identity
from medalliance.domains.patients.identity import IdNumberError, Sex

# The example number printed in GB 11643-1999 itself.
STANDARD_EXAMPLE = "11010519491231002X"


def test_the_standards_own_example_is_valid() -> None:
    parsed = identity.parse(STANDARD_EXAMPLE)
    assert parsed.birth_date == date(1949, 12, 31)
    assert parsed.sex is Sex.FEMALE  # 17th digit 2 is even
    assert parsed.address_code == "110105"


def test_lower_case_x_and_spaces_are_normalised() -> None:
    assert identity.parse(" 110105 19491231 002x ").number == STANDARD_EXAMPLE


@pytest.mark.parametrize("wrong", ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"])
def test_every_wrong_check_character_is_refused(wrong: str) -> None:
    with pytest.raises(IdNumberError) as caught:
        identity.parse(STANDARD_EXAMPLE[:17] + wrong)
    assert caught.value.reason == "check-digit"
    assert "should be X" in str(caught.value)


def test_a_single_mistyped_digit_is_caught() -> None:
    mistyped = "11010519491231012X"
    with pytest.raises(IdNumberError) as caught:
        identity.parse(mistyped)
    assert caught.value.reason == "check-digit"


def test_legacy_15_digit_numbers_convert() -> None:
    parsed = identity.parse("110105491231002")
    assert parsed.number == STANDARD_EXAMPLE
    assert parsed.converted_from_15


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("1101051949123100", "length"),
        ("11010519491231002Y", "format"),
        ("1101A5491231002", "format"),
    ],
)
def test_malformed_numbers(value: str, reason: str) -> None:
    with pytest.raises(IdNumberError) as caught:
        identity.parse(value)
    assert caught.value.reason == reason


def test_impossible_and_future_birth_dates() -> None:
    impossible = "110105" + "19490231" + "002"
    with pytest.raises(IdNumberError) as caught:
        identity.parse(impossible + identity.check_char(impossible))
    assert caught.value.reason == "birth-date"
    future = "110105" + "29991231" + "002"
    with pytest.raises(IdNumberError):
        identity.parse(future + identity.check_char(future))


def test_agreement_with_birth_date_and_sex() -> None:
    parsed = identity.parse(STANDARD_EXAMPLE)
    identity.check_agreement(parsed, birth_date=date(1949, 12, 31), sex=Sex.FEMALE)
    with pytest.raises(IdNumberError) as born:
        identity.check_agreement(parsed, birth_date=date(1949, 12, 30), sex=Sex.FEMALE)
    assert born.value.reason == "birth-date-mismatch"
    assert "1949-12-31" in str(born.value)
    with pytest.raises(IdNumberError) as sex:
        identity.check_agreement(parsed, birth_date=None, sex=Sex.MALE)
    assert sex.value.reason == "sex-mismatch"


@pytest.mark.parametrize("sex", [Sex.MALE, Sex.FEMALE])
def test_made_numbers_are_valid_and_carry_the_sex(sex: Sex) -> None:
    for seq in range(0, 600, 37):
        number = identity.make_number("330102", date(1980, 2, 29), seq, sex)
        parsed = identity.parse(number)
        assert parsed.sex is sex
        assert parsed.birth_date == date(1980, 2, 29)
