"""Form errors next to their fields, in the user's language.

Pages validate a form with the domain's own pydantic schema (or call the service and
catch its ``DomainError``) and hand the result to ``FormErrors``; templates show
``errors[field]`` beside each input with the ``field`` macro.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from medalliance.kernel.errors import DomainError
from medalliance.web import i18n

N_ = i18n.N_
Model = TypeVar("Model", bound=BaseModel)

# pydantic error types → a message (msgids); the rest fall back to "not valid".
MESSAGES: dict[str, str] = {
    "missing": N_("This field is required."),
    "string_too_short": N_("This is too short."),
    "string_too_long": N_("This is too long."),
    "string_pattern_mismatch": N_("This does not have the expected format."),
    "date_from_datetime_parsing": N_("Enter a date as YYYY-MM-DD."),
    "date_parsing": N_("Enter a date as YYYY-MM-DD."),
    "date_from_datetime_inexact": N_("Enter a date as YYYY-MM-DD."),
    "datetime_parsing": N_("Enter a date and time."),
    "int_parsing": N_("Enter a whole number."),
    "float_parsing": N_("Enter a number."),
    "decimal_parsing": N_("Enter a number."),
    "greater_than": N_("This number is too small."),
    "greater_than_equal": N_("This number is too small."),
    "less_than": N_("This number is too large."),
    "less_than_equal": N_("This number is too large."),
    "enum": N_("Choose one of the options."),
    "literal_error": N_("Choose one of the options."),
    "uuid_parsing": N_("Choose an entry from the list."),
}
NOT_VALID = N_("This value is not valid.")


class FormErrors(Mapping[str, str]):
    """Field name → translated message; ``""`` holds errors of the whole form."""

    def __init__(self) -> None:
        self._errors: dict[str, str] = {}

    def __getitem__(self, key: str) -> str:
        return self._errors[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._errors)

    def __len__(self) -> int:
        return len(self._errors)

    def add(self, field: str | None, message: str) -> None:
        """Add an error (an English msgid; translated here) unless the field has one."""
        self._errors.setdefault(field or "", i18n.gettext(message))

    def add_validation(self, exc: ValidationError) -> None:
        for error in exc.errors():
            loc = [str(p) for p in error.get("loc", ()) if not isinstance(p, int)]
            field = loc[0] if loc else ""
            message = MESSAGES.get(error.get("type", ""), NOT_VALID)
            if error.get("type") == "value_error":
                # A validator's own sentence (e.g. a resident-ID check): translated if known.
                message = str(error.get("ctx", {}).get("error", error.get("msg", NOT_VALID)))
            self.add(field, message)

    def add_domain(self, exc: DomainError) -> None:
        """A service's refusal: beside its field when it names one, else for the form."""
        self.add(exc.field, exc.detail)


def validate(model: type[Model], data: Mapping[str, Any], errors: FormErrors) -> Model | None:
    """Build a schema from a form (empty strings count as missing); None on errors."""
    cleaned = {k: v for k, v in data.items() if not (isinstance(v, str) and v.strip() == "")}
    try:
        return model.model_validate(cleaned)
    except ValidationError as exc:
        errors.add_validation(exc)
        return None
