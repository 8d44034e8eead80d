"""HL7 v2.5.1 acknowledgements (ACK^R01), built with hl7apy."""

from __future__ import annotations

import re

from hl7apy.core import Message

from medalliance.interop.hl7v2.parser import Header, Hl7Problem
from medalliance.kernel.clock import utcnow
from medalliance.kernel.ids import new_id

APPLICATION = "MEDALLIANCE"
MEDIA_TYPE = "x-application/hl7-v2+er7"
# HL7 table 0357 texts of the codes we send.
ERROR_TEXT = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "207": "Application internal error",
}
_DELIMITERS = re.compile(r"[|^~\\&\r\n]")


def _plain(text: str, limit: int = 250) -> str:
    """Free text for a field: no delimiter characters, bounded length."""
    return _DELIMITERS.sub(" ", text)[:limit]


def build(header: Header, code: str, problem: Hl7Problem | None = None) -> str:
    """An ACK with MSA-1 ``code`` (AA, AE, AR) and, for a problem, an ERR segment whose
    ERR-2 names the segment, its sequence and the field."""
    ack = Message("ACK", version="2.5.1")
    msh = ack.msh
    msh.msh_3 = APPLICATION
    msh.msh_4 = _plain(header.receiving_facility, 20) or APPLICATION
    msh.msh_5 = _plain(header.sending_application, 20)
    msh.msh_6 = _plain(header.sending_facility, 20)
    msh.msh_7 = utcnow().strftime("%Y%m%d%H%M%S+0000")
    msh.msh_9 = "ACK^R01^ACK"
    msh.msh_10 = new_id().hex[-20:]  # the random tail: unique even within a millisecond
    msh.msh_11 = header.processing_id if header.processing_id in ("P", "T", "D") else "P"
    msh.msh_12 = "2.5.1"
    msa = ack.add_segment("MSA")
    msa.msa_1 = code
    msa.msa_2 = _plain(header.control_id, 199)
    if problem is not None:
        err = ack.add_segment("ERR")
        err.err_2 = f"{problem.segment}^{problem.sequence}^{problem.field_position}"
        err.err_3 = f"{problem.code}^{ERROR_TEXT.get(problem.code, '')}^HL70357"
        err.err_4 = "E"
        err.err_8 = _plain(str(problem))
    return str(ack.to_er7()) + "\r"
