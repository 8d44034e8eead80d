"""``POST /api/interop/hl7v2``: an ER7 ORU^R01 in, an HL7 ACK out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession, require
from medalliance.interop.hl7v2 import ack, service
from medalliance.kernel.actor import Actor

router = APIRouter(prefix="/api/interop", tags=["interfaces"])

Gateway = Annotated[Actor, Depends(require(Permission.HL7_INGEST))]


async def _er7_body(request: Request) -> str:
    body = await request.body()
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        # Chinese LIS often send GB18030 (MSH-18); it is a superset of GB2312/GBK.
        return body.decode("gb18030", errors="replace")


@router.post(
    "/hl7v2",
    response_class=Response,
    responses={
        200: {"content": {ack.MEDIA_TYPE: {}}, "description": "ACK with MSA-1 = AA"},
        422: {"content": {ack.MEDIA_TYPE: {}}, "description": "AE: nothing was stored"},
        400: {"content": {ack.MEDIA_TYPE: {}}, "description": "AR: nothing was stored"},
        403: {"content": {ack.MEDIA_TYPE: {}}, "description": "AR: not your institution"},
    },
)
def post_hl7v2(
    raw: Annotated[str, Depends(_er7_body)], session: DbSession, actor: Gateway
) -> Response:
    """Post one HL7 v2.5.1 ORU^R01 (ER7). The reply is an HL7 ACK: AA when stored (or a
    duplicate MSH-10 already stored), AE/AR with ERR naming segment and field otherwise."""
    outcome = service.ingest(session, actor, raw)
    return Response(content=outcome.ack, status_code=outcome.http_status, media_type=ack.MEDIA_TYPE)
