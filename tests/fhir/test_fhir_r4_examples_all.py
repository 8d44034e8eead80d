"""Every file of the official R4 examples in ../shared/data/fhir-r4-examples through the
fhir.resources R4B models (the project's validator), not only the mapped types: what does
not round-trip is listed here with the reason, and must keep failing for that reason."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "fhir-r4-examples"
FILES = sorted(SHARED.glob("*.json")) if SHARED.is_dir() else []
INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")

# R4B (4.3) removed or redesigned these R4 resource types: no model to validate against
NOT_IN_R4B = {
    "effectevidencesynthesis-example.json",
    "riskevidencesynthesis-example.json",
    "MedicinalProduct.json",
    *(
        f"medicinalproduct{kind}-example.json"
        for kind in (
            "authorization",
            "indication",
            "ingredient",
            "interaction",
            "manufactured",
            "packaged",
            "pharmaceutical",
            "undesirableeffect",
        )
    ),
    *(
        f"substance{kind}-example.json"
        for kind in (
            "nucleicacid",
            "polymer",
            "protein",
            "referenceinformation",
            "sourcematerial",
            "specification",
        )
    ),
}
# valid R4 that R4B's models refuse (elements that became required or changed type)
REFUSED_BY_R4B = {
    "evidence-example.json",  # Evidence was redesigned in R4B
    "medicinalproductcontraindication-questionnaire.json",  # R4B Questionnaire.item rules
    "practitionerrole-questionnaire.json",
    "specimendefinition-questionnaire.json",
    "SmartPatientA.json",  # Appointment.participant.status, ImagingStudy sopClass/modality
}
NOT_A_RESOURCE = {  # search index listings and a wrapper without resourceType
    "ResourceWrapperNoVersion.json",
    "DocumentReference-example-relatesTo-code-appends.indexes.json",
    "DocumentReference-example-relatesTo-code-transforms-replaces-target.indexes.json",
    "DocumentReference-example-relatesTo-code-transforms.indexes.json",
}


def _normal(value: Any, key: str = "") -> Any:
    """Equal meaning, equal form: instants as instants, base64 without line breaks."""
    if isinstance(value, dict):
        return {k: _normal(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v, key) for v in value]
    if isinstance(value, str) and key == "data":
        return re.sub(r"\s+", "", value)
    if isinstance(value, str) and INSTANT.match(value):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


pytestmark = pytest.mark.skipif(not FILES, reason=f"{SHARED} is not present")


def test_the_lists_name_only_files_that_exist() -> None:
    names = {p.name for p in FILES}
    assert names >= NOT_IN_R4B | REFUSED_BY_R4B | NOT_A_RESOURCE
    assert len(names) >= 150


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_example_round_trips_through_r4b(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8-sig"))
    if path.name in NOT_A_RESOURCE:
        assert not isinstance(data, dict) or "resourceType" not in data
        return
    rtype = data["resourceType"]
    if path.name in NOT_IN_R4B:
        with pytest.raises(ValueError, match="not a valid FHIR Model"):
            get_fhir_model_class(rtype)
        return
    if path.name in REFUSED_BY_R4B:
        with pytest.raises(ValidationError):
            get_fhir_model_class(rtype).model_validate(data)
        return
    model = get_fhir_model_class(rtype).model_validate(data)
    again = json.loads(model.model_dump_json(exclude_none=True))
    assert _normal(again) == _normal(data)
