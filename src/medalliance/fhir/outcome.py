"""OperationOutcome errors: every failure on /fhir is one, with the path of the bad element."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from medalliance.kernel.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
)


class FhirError(Exception):
    """An error answered as an OperationOutcome with an HTTP status."""

    def __init__(
        self,
        status: int,
        diagnostics: str,
        *,
        code: str = "invalid",
        expression: list[str] | None = None,
        issues: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.diagnostics = diagnostics
        self.issues = issues or [issue(code, diagnostics, expression)]


def issue(
    code: str, diagnostics: str, expression: list[str] | None = None, severity: str = "error"
) -> dict[str, Any]:
    found: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        found["expression"] = expression
    return found


def outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": issues}


def invalid(path: str, diagnostics: str, status: int = 422) -> FhirError:
    return FhirError(status, diagnostics, code="invalid", expression=[path])


def _path(resource_type: str, loc: tuple[Any, ...]) -> str:
    out = resource_type
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part) != "__root__":
            out += f".{part}"
    return out


def from_validation(resource_type: str, exc: ValidationError) -> FhirError:
    """fhir.resources reports pydantic errors; name each bad element by its FHIRPath."""
    issues = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        code = "required" if err.get("type") == "missing" else "structure"
        issues.append(issue(code, err.get("msg", "invalid"), [_path(resource_type, loc)]))
    first = issues[0]["diagnostics"] if issues else "invalid resource"
    return FhirError(400, first, issues=issues)


_STATUS: list[tuple[type[DomainError], int, str]] = [
    (NotAuthenticated, 401, "login"),
    (PermissionDenied, 403, "forbidden"),
    (NotFound, 404, "not-found"),
    (Conflict, 409, "conflict"),
    (InvalidInput, 422, "invalid"),
]


def from_domain(exc: DomainError, resource_type: str | None = None) -> FhirError:
    status, code = next(
        ((st, cd) for cls, st, cd in _STATUS if isinstance(exc, cls)), (400, "processing")
    )
    path = FIELD_PATHS.get(exc.field or "")
    expression = [path] if path else None
    return FhirError(status, exc.detail, code=code, expression=expression)


# Domain fields a service may name in an error, as the FHIR elements they come from.
FIELD_PATHS = {
    "id_number": "Patient.identifier",
    "mrn": "Patient.identifier",
    "birth_date": "Patient.birthDate",
    "patient_id": "subject",
    "department_id": "Encounter.location",
    "practitioner_id": "Encounter.participant",
    "end": "Encounter.period.end",
    "status": "status",
    "code": "Organization.identifier",
    "lead_institution_code": "Organization.partOf",
    "alliance_code": "Organization",
    "licence_number": "Practitioner.identifier",
    "identifier": "identifier",
}


def ignored_parameters(keys: list[str] | tuple[str, ...]) -> list[dict[str, Any]]:
    """Prefer: handling=lenient: a warning per parameter left out of a search."""
    return [
        issue(
            "not-supported",
            f"parameter {key!r} is not supported here and was ignored",
            [key],
            severity="warning",
        )
        for key in keys
    ]


def search_outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    """A searchset entry carrying an OperationOutcome (search.mode = outcome)."""
    return {"resource": outcome(issues), "search": {"mode": "outcome"}}
