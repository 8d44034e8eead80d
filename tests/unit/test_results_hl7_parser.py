"""ORU^R01 parsing: what becomes of each field, and where a problem is located."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from medalliance.domains.results.models import ResultStatus
from medalliance.interop.hl7v2 import ack, parser
from tests.factories.results import obx, oru


def _message(**kwargs: object) -> str:
    return parser.normalise(oru("P-1", "HOSP01", **kwargs))  # type: ignore[arg-type]


def test_fields_of_a_lab_result() -> None:
    at = datetime(2026, 11, 20, 7, 0, tzinfo=UTC)
    parsed = parser.parse(
        _message(observations=[obx(1, "2823-3", "4.1", "mmol/L", flag="H", status="C", at=at)])
    )
    assert (parsed.sending_facility, parsed.control_id, parsed.version) == (
        "HOSP01",
        "P-1",
        "2.5.1",
    )
    assert parsed.patient.mrn == "MRN-1" and parsed.patient.resident_id == "11010519491231002X"
    assert (parsed.patient.family_name, parsed.patient.given_name) == ("王", "秀英")
    assert parsed.patient.sex == "female" and str(parsed.patient.birth_date) == "1949-12-31"
    (lab,) = parsed.labs
    assert lab.data.item_code == "2823-3" and lab.data.value_numeric == 4.1
    assert lab.data.unit == "mmol/L" and lab.data.abnormal_flag == "H"
    assert lab.data.status is ResultStatus.CORRECTED and lab.data.effective_at == at
    assert lab.data.order_ref == "FIL-1" and lab.data.reference_range == "1-10"


def test_a_time_without_offset_is_china_standard_time() -> None:
    when = parser.parse_time("20261120070000", "OBX", 14)
    assert when.utcoffset() == timedelta(hours=8)
    assert parser.parse_time("20261120070000-0500", "OBX", 14).tzinfo == timezone(
        timedelta(hours=-5)
    )


def test_line_feeds_are_accepted_as_segment_ends() -> None:
    message = oru("P-2", "HOSP01").replace("\r", "\r\n")
    assert parser.parse(parser.normalise(message)).control_id == "P-2"


@pytest.mark.parametrize(
    ("observations", "location"),
    [
        ([obx(1, "2823-3", "4.1", "mmol/L"), obx(2, "2951-2", "x", "mmol/L")], "OBX^2^5"),
        ([obx(1, "2823-3", "4.1", "mmol/L", flag="??")], "OBX^1^8"),
        ([obx(1, "not-loinc", "4.1", "mmol/L")], "OBX^1^3"),
        ([obx(1, "2823-3", "", "mmol/L")], "OBX^1^5"),
    ],
)
def test_problems_name_segment_sequence_and_field(observations: list[str], location: str) -> None:
    with pytest.raises(parser.Hl7Problem) as caught:
        parser.parse(_message(observations=observations))
    assert caught.value.location == location and caught.value.ack_code == "AE"


def test_the_ack_echoes_the_control_id_and_locates_the_error() -> None:
    header = parser.header_of(_message())
    problem = parser.Hl7Problem("OBX", 6, "unit | bad ^ here", "103", sequence=2)
    text = ack.build(header, "AE", problem)
    lines = text.strip("\r").split("\r")
    assert lines[0].startswith("MSH|^~\\&|MEDALLIANCE|")
    assert lines[1] == "MSA|AE|P-1"
    assert lines[2].split("|")[2:4] == ["OBX^2^6", "103^Table value not found^HL70357"]
    assert "unit   bad   here" in lines[2]
