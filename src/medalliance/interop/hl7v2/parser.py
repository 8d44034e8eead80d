"""ORU^R01 (HL7 v2.5.1) to the results domain's input shapes, with hl7apy doing the
parsing. Every problem names its segment and field so the ACK can point at it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message
from hl7apy.utils import get_datetime_info
from pydantic import ValidationError

from medalliance.domains.results.models import ResultStatus
from medalliance.domains.results.schemas import ImagingReportIn, LabResultIn

SUPPORTED_VERSIONS = frozenset({"2.5.1", "2.5"})
# A timestamp without an offset is the sending member's local time (China Standard Time).
SITE_ZONE = ZoneInfo("Asia/Shanghai")
# HL7 table 0074 diagnostic service sections that are imaging, with the DICOM modality.
IMAGING_SECTIONS = {
    "CT": "CT",
    "NMR": "MR",
    "NMS": "NM",
    "RUS": "US",
    "CUS": "US",
    "OUS": "US",
    "VUS": "US",
    "RX": "DX",
    "XRC": "RF",
    "RAD": "OT",
}
# Conventional LOINC codes of the sections of a narrative radiology report.
FINDINGS_CODE = "18782-3"
IMPRESSION_CODE = "19005-8"
# HL7 tables 0085 (OBX-11) and 0123 (OBR-25) → our status.
OBSERVATION_STATUS = {
    "F": ResultStatus.FINAL,
    "C": ResultStatus.CORRECTED,
    "P": ResultStatus.PRELIMINARY,
    "R": ResultStatus.PRELIMINARY,
}
NUMERIC_TYPES = frozenset({"NM", "SN"})
TEXT_TYPES = frozenset({"ST", "TX", "FT", "CE", "CWE"})
SN_VALUE = re.compile(r"^\s*(?:[<>]=?|=)?\^?(-?[0-9]+(?:\.[0-9]+)?)\s*$")


@dataclass(slots=True)
class Hl7Problem(Exception):
    """A message problem, located for ERR-2 and coded from HL7 table 0357."""

    segment: str
    field_position: int
    message: str
    code: str = "102"  # data type error
    sequence: int = 1
    ack_code: str = "AE"  # AE: application error; AR: rejected

    def __str__(self) -> str:
        return f"{self.segment}-{self.field_position}: {self.message}"

    @property
    def location(self) -> str:
        return f"{self.segment}^{self.sequence}^{self.field_position}"


@dataclass(slots=True)
class PatientIdentity:
    mrn: str | None
    resident_id: str | None
    passport: str | None
    family_name: str
    given_name: str
    birth_date: date | None
    sex: str | None
    phones: list[str] = field(default_factory=list)
    street: str | None = None
    city: str | None = None
    province: str | None = None
    postcode: str | None = None


@dataclass(slots=True)
class ParsedLab:
    obx_sequence: int
    data: LabResultIn


@dataclass(slots=True)
class ParsedImaging:
    obr_sequence: int
    data: ImagingReportIn


@dataclass(slots=True)
class ParsedOru:
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    control_id: str
    processing_id: str
    version: str
    message_type: str
    patient: PatientIdentity
    labs: list[ParsedLab]
    imaging: list[ParsedImaging]
    header: Header


@dataclass(slots=True)
class Header:
    """What an ACK needs, even for a message whose body is bad."""

    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    control_id: str = ""
    processing_id: str = "P"
    version: str = "2.5.1"
    message_type: str = ""


_ESCAPES = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\", ".br": "\n"}
_ESCAPE = re.compile(r"\\(F|S|T|R|E|\.br)\\")


def unescape(text: str) -> str:
    """Decode HL7 escape sequences in a text value. hl7apy keeps them encoded (and
    re-escapes formatting sequences it does not know inside OBX-5), so undo both."""
    text = text.replace("\\E\\.br\\E\\", "\n")
    return _ESCAPE.sub(lambda m: _ESCAPES[m.group(1)], text)


def normalise(raw: str) -> str:
    """Segments end in CR; HTTP bodies and files often carry LF or CRLF instead."""
    return raw.replace("\r\n", "\r").replace("\n", "\r").strip("\r \t\ufeff")


def _er7(element: Any) -> str:
    try:
        return str(element.to_er7()).strip()
    except (HL7apyException, AttributeError, IndexError):
        return ""


def _component(fld: Any, index: int) -> str:
    """The index-th component (1-based) of a field's first repetition."""
    try:
        children = list(fld.children)
    except (AttributeError, IndexError, HL7apyException):
        return ""
    if len(children) == 1 and "_" not in str(children[0].name):
        return _er7(fld) if index == 1 else ""  # a primitive field (ST, IS, NM …)
    for child in children:  # absent components are simply not among the children
        if str(child.name).rsplit("_", 1)[-1] == str(index):
            return _er7(child)
    return ""


def parse_time(value: str, segment: str, position: int, sequence: int = 1) -> datetime:
    try:
        naive, _fmt, offset, _micro = get_datetime_info(value)
    except (ValueError, TypeError) as exc:
        raise Hl7Problem(
            segment, position, f"{value!r} is not an HL7 date/time", sequence=sequence
        ) from exc
    if offset:
        sign = -1 if offset.startswith("-") else 1
        hours, minutes = int(offset[1:3]), int(offset[3:5])
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
        aware: datetime = naive.replace(tzinfo=zone)
        return aware
    local: datetime = naive.replace(tzinfo=SITE_ZONE)
    return local


def header_of(raw: str) -> Header:
    """Best-effort MSH for the ACK; never raises."""
    try:
        message = parse_message(raw, find_groups=False, validation_level=VALIDATION_LEVEL.QUIET)
        msh = message.msh
    except Exception:
        return Header()
    return _header(msh)


def _header(msh: Any) -> Header:
    header = Header()
    header.sending_application = _er7(msh.msh_3)
    header.sending_facility = _component(msh.msh_4, 1)
    header.receiving_application = _er7(msh.msh_5)
    header.receiving_facility = _er7(msh.msh_6)
    header.control_id = _er7(msh.msh_10)
    header.processing_id = _component(msh.msh_11, 1) or "P"
    header.version = _component(msh.msh_12, 1) or "2.5.1"
    header.message_type = _er7(msh.msh_9)
    return header


def parse(raw: str) -> ParsedOru:
    """Parse and check an ORU^R01; raise ``Hl7Problem`` naming the first bad field."""
    if not raw.startswith("MSH"):
        raise Hl7Problem("MSH", 0, "the message does not start with an MSH segment", "100",
                         ack_code="AR")  # fmt: skip
    try:
        message = parse_message(raw, find_groups=True, validation_level=VALIDATION_LEVEL.QUIET)
    except HL7apyException as exc:
        raise Hl7Problem("MSH", 0, f"not a parsable HL7 v2 message: {exc}", "100",
                         ack_code="AR") from exc  # fmt: skip
    msh = message.msh
    message_type = _er7(msh.msh_9)
    if _component(msh.msh_9, 1) != "ORU" or _component(msh.msh_9, 2) != "R01":
        raise Hl7Problem("MSH", 9, f"message type {message_type!r} is not ORU^R01", "200",
                         ack_code="AR")  # fmt: skip
    version = _component(msh.msh_12, 1)
    if version not in SUPPORTED_VERSIONS:
        raise Hl7Problem("MSH", 12, f"version {version!r} is not 2.5.1", "203", ack_code="AR")
    control_id = _er7(msh.msh_10)
    if not control_id:
        raise Hl7Problem("MSH", 10, "the message control id is missing", "101", ack_code="AR")
    processing_id = _component(msh.msh_11, 1)
    if processing_id != "P":
        raise Hl7Problem("MSH", 11, f"processing id {processing_id!r}: only production (P) "
                         "messages are stored", "202", ack_code="AR")  # fmt: skip
    facility = _component(msh.msh_4, 1)
    if not facility:
        raise Hl7Problem("MSH", 4, "the sending facility (institution code) is missing", "101",
                         ack_code="AR")  # fmt: skip
    results = _children(message, "ORU_R01_PATIENT_RESULT")
    if len(results) != 1:
        raise Hl7Problem("PID", 0, "exactly one patient per message is supported", "100")
    patients = _children(results[0], "ORU_R01_PATIENT")
    if not patients or not _children(patients[0], "PID"):
        raise Hl7Problem("PID", 0, "the PID segment is missing", "100")
    patient = _patient(_children(patients[0], "PID")[0])
    labs: list[ParsedLab] = []
    imaging: list[ParsedImaging] = []
    obx_counter = [0]
    orders = _children(results[0], "ORU_R01_ORDER_OBSERVATION")
    if not orders:
        raise Hl7Problem("OBR", 0, "the message carries no OBR (order observation)", "100")
    for obr_sequence, order in enumerate(orders, start=1):
        obrs = _children(order, "OBR")
        if not obrs:
            raise Hl7Problem("OBR", 0, "an order observation without OBR", "100",
                             sequence=obr_sequence)  # fmt: skip
        obxs = [
            obx
            for observation in _children(order, "ORU_R01_OBSERVATION")
            for obx in _children(observation, "OBX")
        ]
        section = _component(obrs[0].obr_24, 1)
        if section in IMAGING_SECTIONS:
            imaging.append(_imaging(obrs[0], obr_sequence, section, obxs, obx_counter))
        else:
            labs.extend(_labs(obrs[0], obr_sequence, obxs, obx_counter))
    if not labs and not imaging:
        raise Hl7Problem("OBX", 0, "the message carries no observation (OBX)", "100")
    return ParsedOru(
        sending_application=_er7(msh.msh_3),
        sending_facility=facility,
        receiving_application=_er7(msh.msh_5),
        receiving_facility=_er7(msh.msh_6),
        control_id=control_id,
        processing_id=processing_id,
        version=version,
        message_type=message_type,
        patient=patient,
        labs=labs,
        imaging=imaging,
        header=_header(msh),
    )


def _children(element: Any, name: str) -> list[Any]:
    return [c for c in element.children if str(c.name).upper() == name]


def _patient(pid: Any) -> PatientIdentity:
    mrn = resident = passport = None
    for repetition in pid.pid_3:
        value = _component(repetition, 1)
        kind = _component(repetition, 5)
        if not value:
            continue
        if kind == "MR" and mrn is None:
            mrn = value
        elif kind in ("NNCHN", "NI") and resident is None:
            resident = value
        elif kind == "PPN" and passport is None:
            passport = value
    if mrn is None and resident is None and passport is None:
        raise Hl7Problem("PID", 3, "no identifier of type MR, NNCHN or PPN", "101")
    names = list(pid.pid_5) if _er7(pid.pid_5) else []
    if not names:
        raise Hl7Problem("PID", 5, "the patient name is missing", "101")
    family = _component(names[0].children[0], 1) if names[0].children else ""
    family = family or _component(names[0], 1)
    given = _component(names[0], 2)
    born = _er7(pid.pid_7)
    birth_date = parse_time(born, "PID", 7).date() if born else None
    sex = {"M": "male", "F": "female", "U": "unknown"}.get(_component(pid.pid_8, 1))
    if _er7(pid.pid_8) and sex is None:
        raise Hl7Problem("PID", 8, f"sex {_er7(pid.pid_8)!r} is not M, F or U", "103")
    phones = [
        _component(rep, 12) or _component(rep, 1) for rep in pid.pid_13 if _er7(rep)
    ] if _er7(pid.pid_13) else []  # fmt: skip
    address = next(iter(pid.pid_11)) if _er7(pid.pid_11) else None
    return PatientIdentity(
        mrn=mrn,
        resident_id=resident,
        passport=passport,
        family_name=family,
        given_name=given,
        birth_date=birth_date,
        sex=sex,
        phones=[p for p in phones if p],
        street=None if address is None else (_component(address, 1) or None),
        city=None if address is None else (_component(address, 3) or None),
        province=None if address is None else (_component(address, 4) or None),
        postcode=None if address is None else (_component(address, 5) or None),
    )


def _status(value: str, segment: str, position: int, sequence: int) -> ResultStatus:
    if value not in OBSERVATION_STATUS:
        raise Hl7Problem(segment, position, f"result status {value!r} is not F, C, P or R",
                         "103", sequence=sequence)  # fmt: skip
    return OBSERVATION_STATUS[value]


def _order_ref(obr: Any) -> str | None:
    return _component(obr.obr_3, 1) or _component(obr.obr_2, 1) or None


def _labs(obr: Any, obr_sequence: int, obxs: list[Any], counter: list[int]) -> list[ParsedLab]:
    collected = _er7(obr.obr_7)
    issued = _er7(obr.obr_22)
    out: list[ParsedLab] = []
    for obx in obxs:
        counter[0] += 1
        seq = counter[0]
        value_type = _er7(obx.obx_2)
        code = _component(obx.obx_3, 1)
        if not code:
            raise Hl7Problem("OBX", 3, "the observation identifier is missing", "101", seq)
        raw_value = _er7(obx.obx_5)
        if not raw_value:
            raise Hl7Problem("OBX", 5, "the observation value is missing", "101", seq)
        numeric: float | None = None
        text: str | None = None
        if value_type in NUMERIC_TYPES:
            match = SN_VALUE.match(raw_value) if value_type == "SN" else None
            try:
                numeric = float(match.group(1) if match else raw_value)
            except ValueError as exc:
                raise Hl7Problem("OBX", 5, f"{raw_value!r} is not a number ({value_type})",
                                 "102", seq) from exc  # fmt: skip
        elif value_type in TEXT_TYPES:
            coded = value_type in ("CE", "CWE")
            text = unescape((_component(obx.obx_5, 2) or raw_value) if coded else raw_value)
        else:
            raise Hl7Problem("OBX", 2, f"value type {value_type!r} is not supported", "103", seq)
        when = _er7(obx.obx_14) or collected
        if not when:
            raise Hl7Problem("OBX", 14, "no observation time (OBX-14 or OBR-7)", "101", seq)
        position = 14 if _er7(obx.obx_14) else 7
        effective_at = parse_time(when, "OBX" if position == 14 else "OBR", position, seq)
        fields = {
            "item_code": code,
            "item_system": _component(obx.obx_3, 3) or "LN",
            "item_name": _component(obx.obx_3, 2) or None,
            "status": _status(_er7(obx.obx_11), "OBX", 11, seq),
            "effective_at": effective_at,
            "issued_at": parse_time(issued, "OBR", 22, obr_sequence) if issued else None,
            "performing_lab": _component(obx.obx_23, 1) or None,
            "order_ref": _order_ref(obr),
            "value_numeric": numeric,
            "value_text": text,
            "unit": _component(obx.obx_6, 1) or None,
            "reference_range": _er7(obx.obx_7) or None,
            "abnormal_flag": _er7(obx.obx_8) or None,
        }
        out.append(ParsedLab(seq, _validated(LabResultIn, fields, "OBX", seq, LAB_FIELDS)))
    return out


def _imaging(
    obr: Any, obr_sequence: int, section: str, obxs: list[Any], counter: list[int]
) -> ParsedImaging:
    code = _component(obr.obr_4, 1)
    if not code:
        raise Hl7Problem("OBR", 4, "the universal service identifier is missing", "101",
                         obr_sequence)  # fmt: skip
    study = _er7(obr.obr_7)
    if not study:
        raise Hl7Problem("OBR", 7, "the study time is missing", "101", obr_sequence)
    findings: list[str] = []
    impressions: list[str] = []
    pacs_url: str | None = None
    body_site: str | None = None
    for obx in obxs:
        counter[0] += 1
        value_type = _er7(obx.obx_2)
        if value_type == "RP":
            pacs_url = _component(obx.obx_5, 1) or None
            continue
        text = unescape(_er7(obx.obx_5))
        observation = _component(obx.obx_3, 1)
        (impressions if observation == IMPRESSION_CODE else findings).append(text)
        body_site = body_site or _component(obx.obx_20, 2) or _component(obx.obx_20, 1) or None
    issued = _er7(obr.obr_22)
    fields = {
        "item_code": code,
        "item_system": _component(obr.obr_4, 3) or "LN",
        "item_name": _component(obr.obr_4, 2) or None,
        "status": _status(_er7(obr.obr_25), "OBR", 25, obr_sequence),
        "effective_at": parse_time(study, "OBR", 7, obr_sequence),
        "issued_at": parse_time(issued, "OBR", 22, obr_sequence) if issued else None,
        "order_ref": _order_ref(obr),
        "modality": IMAGING_SECTIONS[section],
        "body_site": body_site,
        "report_text": "\n".join(t for t in findings if t),
        "conclusion": "\n".join(t for t in impressions if t) or None,
        "pacs_url": pacs_url,
    }
    return ParsedImaging(
        obr_sequence,
        _validated(ImagingReportIn, fields, "OBR", obr_sequence, IMAGING_FIELDS),
    )


# Where each input field came from, to point the ACK at it.
LAB_FIELDS = {
    "item_code": ("OBX", 3),
    "item_system": ("OBX", 3),
    "item_name": ("OBX", 3),
    "status": ("OBX", 11),
    "effective_at": ("OBX", 14),
    "issued_at": ("OBR", 22),
    "performing_lab": ("OBX", 23),
    "order_ref": ("OBR", 3),
    "value_numeric": ("OBX", 5),
    "value_text": ("OBX", 5),
    "unit": ("OBX", 6),
    "reference_range": ("OBX", 7),
    "abnormal_flag": ("OBX", 8),
}
IMAGING_FIELDS = {
    "item_code": ("OBR", 4),
    "item_system": ("OBR", 4),
    "item_name": ("OBR", 4),
    "status": ("OBR", 25),
    "effective_at": ("OBR", 7),
    "issued_at": ("OBR", 22),
    "order_ref": ("OBR", 3),
    "modality": ("OBR", 24),
    "body_site": ("OBX", 20),
    "report_text": ("OBX", 5),
    "conclusion": ("OBX", 5),
    "pacs_url": ("OBX", 5),
}


def _validated(
    model: Any,
    fields: dict[str, Any],
    segment: str,
    sequence: int,
    where: dict[str, tuple[str, int]],
) -> Any:
    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        name = str(first["loc"][0]) if first.get("loc") else ""
        if not name:  # a whole-model check: find the field its message names
            name = next((f for f in where if f in message or f.split("_")[0] in message), "")
        seg, position = where.get(name, (segment, 5 if segment == "OBX" else 4))
        raise Hl7Problem(seg, position, message, "102", sequence) from exc
