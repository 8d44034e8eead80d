"""Results test helpers: ER7 ORU^R01 messages, accreditation, catalogue."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

from medalliance.domains.alliance.models import Institution
from medalliance.domains.results import catalogue
from medalliance.domains.results.models import LabAccreditation
from medalliance.kernel.clock import utcnow
from tests.factories import current_session

RESIDENT_ID = "11010519491231002X"


def hl7_time(at: datetime) -> str:
    return at.strftime("%Y%m%d%H%M%S+0000")


def days_ago(days: float) -> datetime:
    return utcnow() - timedelta(days=days)


def obx(
    seq: int,
    code: str,
    value: str,
    unit: str,
    *,
    value_type: str = "NM",
    status: str = "F",
    flag: str = "N",
    at: datetime | None = None,
) -> str:
    when = "" if at is None else hl7_time(at)
    return (
        f"OBX|{seq}|{value_type}|{code}^{code} name^LN||{value}|{unit}^^UCUM|1-10|{flag}|||{status}"
        f"|||{when}"
    )


def oru(
    control_id: str,
    facility: str,
    *,
    mrn: str | None = "MRN-1",
    resident_id: str | None = RESIDENT_ID,
    name: str = "王^秀英",
    birth: str = "19491231",
    sex: str = "F",
    collected: datetime | None = None,
    filler: str = "FIL-1",
    observations: Sequence[str] = (),
    extra_segments: Sequence[str] = (),
) -> str:
    collected = collected or days_ago(1)
    ids = []
    if mrn:
        ids.append(f"{mrn}^^^{facility}^MR")
    if resident_id:
        ids.append(f"{resident_id}^^^CHN^NNCHN")
    segments = [
        f"MSH|^~\\&|LIS|{facility}|MEDALLIANCE|ALLIANCE|{hl7_time(utcnow())}||ORU^R01^ORU_R01"
        f"|{control_id}|P|2.5.1",
        f"PID|1||{'~'.join(ids)}||{name}||{birth}|{sex}",
        f"ORC|RE|ORD-1|{filler}",
        f"OBR|1|ORD-1|{filler}|24323-8^Metabolic panel^LN|||{hl7_time(collected)}"
        f"|||||||||||||||{hl7_time(collected)}||CH|F",
        *(observations or [obx(1, "14749-6", "5.6", "mmol/L")]),
        *extra_segments,
    ]
    return "\r".join(segments)


def seed_catalogue() -> None:
    catalogue.seed_reference(current_session())


def accredit(
    institution: Institution,
    *codes: str,
    passed: bool = True,
    valid_from: date | None = None,
    valid_to: date | None = None,
) -> None:
    session = current_session()
    today = utcnow().date()
    for code in codes:
        session.add(
            LabAccreditation(
                institution_id=institution.id,
                item_code=code,
                eqa_scheme="Provincial EQA (test)",
                passed=passed,
                valid_from=valid_from or today - timedelta(days=365),
                valid_to=valid_to or today + timedelta(days=365),
            )
        )
    session.flush()
