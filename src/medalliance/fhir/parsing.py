"""Parse and validate incoming resources with fhir.resources (R4B models)."""

from __future__ import annotations

import json
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import BaseModel, ValidationError

from medalliance.fhir.outcome import FhirError, invalid


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FhirError(400, f"the body is not valid JSON: {exc}", code="structure") from exc


def resource(data: Any, expected: str | None = None, path: str = "") -> BaseModel:
    if not isinstance(data, dict):
        raise invalid(path or "Resource", "a resource must be a JSON object", 400)
    rtype = data.get("resourceType")
    if not isinstance(rtype, str):
        raise invalid(
            f"{path}resourceType" if path else "resourceType", "resourceType is missing", 400
        )
    if expected is not None and rtype != expected:
        raise invalid(
            f"{path}resourceType" if path else "resourceType",
            f"resourceType is {rtype!r} but this endpoint takes {expected!r}",
            400,
        )
    try:
        model = get_fhir_model_class(rtype)
    except (KeyError, ValueError) as exc:
        raise invalid("resourceType", f"{rtype!r} is not a FHIR R4 resource type", 400) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        from medalliance.fhir.outcome import from_validation

        error = from_validation(rtype, exc)
        if path:
            for item in error.issues:
                item["expression"] = [
                    path + e.split(".", 1)[1] if "." in e else path.rstrip(".")
                    for e in item.get("expression", [])
                ]
        raise error from exc
