"""history-instance and vread, for the types whose domain rows never change once written
(``Mapper.immutable``): each resource has exactly one version, "1", so its history is
that version and ``_history/1`` is the resource. Types updated in place keep no
versions: neither interaction is offered for them (405), nor advertised."""

from __future__ import annotations

from typing import Any

from medalliance.fhir.context import FhirContext
from medalliance.fhir.outcome import FhirError
from medalliance.fhir.registry import FIRST_VERSION, HISTORY, VREAD, Mapper


def _mapper(ctx: FhirContext, resource_type: str, interaction: str) -> Mapper:
    mapper = ctx.registry.get(resource_type)
    if interaction not in mapper.interactions:
        raise FhirError(
            405,
            f"{interaction} is not supported for {resource_type}: its records are updated "
            "in place and no earlier versions are kept",
            code="not-supported",
        )
    return mapper


def etag(resource: dict[str, Any]) -> str | None:
    version = resource.get("meta", {}).get("versionId")
    return None if version is None else f'W/"{version}"'


def vread(ctx: FhirContext, resource_type: str, rid: str, vid: str) -> dict[str, Any]:
    mapper = _mapper(ctx, resource_type, VREAD)
    resource = mapper.read(ctx, rid)  # the access policy and the audit trail, as a read
    if vid != resource["meta"]["versionId"]:
        raise FhirError(404, f"{resource_type}/{rid} has no version {vid!r}", code="not-found")
    return resource


def history(ctx: FhirContext, resource_type: str, rid: str) -> dict[str, Any]:
    mapper = _mapper(ctx, resource_type, HISTORY)
    resource = mapper.read(ctx, rid)
    assert resource["meta"]["versionId"] == FIRST_VERSION
    url = ctx.url(resource_type, resource["id"])
    return {
        "resourceType": "Bundle",
        "type": "history",
        "total": 1,
        "link": [{"relation": "self", "url": f"{url}/_history"}],
        "entry": [
            {
                "fullUrl": url,
                "resource": resource,
                "request": {"method": "POST", "url": resource_type},
                "response": {
                    "status": "201 Created",
                    "etag": etag(resource),
                    "lastModified": resource["meta"]["lastUpdated"],
                },
            }
        ],
    }
