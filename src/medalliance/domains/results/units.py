"""UCUM units and LOINC unit families, checked with a UCUM parser (ucumvert, which maps
UCUM onto pint) instead of a hand-made unit list: a unit fits an item when it is valid
UCUM and has the dimension of the item's LOINC PROPERTY."""

from __future__ import annotations

from functools import cache
from typing import Any

# LOINC PROPERTY → the pint dimensionality of units that measure it.
PROPERTY_DIMENSIONS: dict[str, str] = {
    "MCnc": "[mass] / [length] ** 3",  # mass concentration
    "SCnc": "[substance] / [length] ** 3",  # substance (molar) concentration
    "MFr": "dimensionless",  # mass fraction, e.g. %
}


class UnitError(ValueError):
    """The unit is not valid UCUM, or does not fit the item's unit family."""


@cache
def _registry() -> Any:
    # Building the UCUM grammar and registry takes about a second: once per process.
    from ucumvert import PintUcumRegistry

    return PintUcumRegistry()


@cache
def dimension_of(ucum: str) -> str:
    """The pint dimensionality of a UCUM unit; ``UnitError`` if it is not UCUM."""
    try:
        quantity = _registry().from_ucum(ucum)
    except Exception as exc:  # ucumvert raises its own and lark's errors
        raise UnitError(f"{ucum!r} is not a valid UCUM unit") from exc
    dimensionality = getattr(quantity, "dimensionality", None)
    if dimensionality is None:
        # ucumvert hands back the bare token for an annotation alone ({score}, {count}):
        # UCUM defines a lone annotation as the unity 1, so it is dimensionless.
        if ucum.startswith("{") and ucum.endswith("}") and ucum.count("{") == 1:
            return "dimensionless"
        raise UnitError(f"{ucum!r} is not a valid UCUM unit")
    return str(dimensionality)


def check_unit(ucum: str, unit_property: str | None) -> None:
    """Raise ``UnitError`` unless ``ucum`` is valid UCUM fitting ``unit_property``."""
    dimension = dimension_of(ucum)
    if unit_property is None or unit_property not in PROPERTY_DIMENSIONS:
        return  # an item without a known family: any valid UCUM unit
    wanted = PROPERTY_DIMENSIONS[unit_property]
    if dimension != wanted:
        raise UnitError(
            f"unit {ucum!r} ({dimension}) does not fit the item's unit family "
            f"{unit_property} ({wanted})"
        )
