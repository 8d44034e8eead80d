"""The CapabilityStatement, generated from the registry: it lists only what works."""

from __future__ import annotations

from typing import Any

from medalliance import __version__
from medalliance.fhir.registry import CREATE, Registry

SEARCH_CONTROL = [
    {"name": "_count", "type": "number", "documentation": "page size (≤ 1000), paging links"},
    {"name": "_offset", "type": "number", "documentation": "paging offset (in the links)"},
    {"name": "_sort", "type": "string", "documentation": "the sortable parameters, - for desc"},
    {"name": "_summary", "type": "token", "documentation": "count only"},
]


def capability_statement(registry: Registry, base_url: str) -> dict[str, Any]:
    resources = []
    for mapper in registry:
        interactions = [{"code": i} for i in mapper.interactions]
        entry: dict[str, Any] = {
            "type": mapper.resource_type,
            "interaction": interactions,
            # immutable rows: one version each, complete history; others keep none
            "versioning": "versioned" if mapper.immutable else "no-version",
            "readHistory": mapper.immutable,
            "updateCreate": False,
            "conditionalCreate": CREATE in mapper.interactions,
            "searchParam": [
                {
                    "name": name,
                    "type": param.type,
                    **({"documentation": param.documentation} if param.documentation else {}),
                }
                for name, param in mapper.params.items()
            ]
            + SEARCH_CONTROL,
        }
        if mapper.includes:
            entry["searchInclude"] = sorted(mapper.includes)
        revs = sorted(
            spec
            for other in registry
            for spec in other.revincludes
            if any(
                inc.target == mapper.resource_type
                for inc in other.includes.values()
                if spec in other.includes and other.includes[spec] is inc
            )
        )
        if revs:
            entry["searchRevInclude"] = revs
        if mapper.resource_type == "Patient":
            entry["operation"] = [
                {
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                    "documentation": "Parameters: start and end (the care date range; "
                    "resources without a clinical date are included), _since, _type, "
                    "_count (paged, with next/previous links).",
                }
            ]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-23",
        "kind": "instance",
        "software": {"name": "MedAlliance", "version": __version__},
        "implementation": {"description": "MedAlliance FHIR R4 API", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "OAuth",
                                }
                            ]
                        }
                    ],
                    "description": "Bearer token from POST /api/auth/token; the access policy "
                    "and the audit trail apply as on the JSON API.",
                },
                "resource": resources,
                "interaction": [{"code": "batch"}, {"code": "transaction"}],
            }
        ],
    }
