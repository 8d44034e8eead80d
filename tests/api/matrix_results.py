"""Access-matrix entries for results, mutual recognition and the HL7 v2 interface.

Targets live at the matrix's ``home`` institution; a clinician of ``other`` has no
record of the patient and no care relationship, so the policy refuses them (403).
An interface account of another member posting for ``home`` gets an HL7 AR with 403
(an ACK, not a problem document): tests/api/test_results_api.py covers that case.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from medalliance.access.permissions import Permission as P  # noqa: N817 - the table reads better
from medalliance.domains.results import catalogue
from medalliance.domains.results.models import Result, ResultKind, ResultStatus
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role
from tests.api.access_matrix import Call, MatrixContext, RouteSpec, unique
from tests.factories.patients import make_patient
from tests.factories.results import accredit, obx, oru

FOREIGN_CLINICIAN = (Role.CLINICIAN,)
GLUCOSE = "14749-6"


def _result_at_home(ctx: MatrixContext) -> tuple[uuid.UUID, Result]:
    catalogue.seed_reference(ctx.session)
    accredit(ctx.home, GLUCOSE)
    person, record = make_patient(ctx.home)
    result = Result(
        patient_record_id=record.id,
        institution_id=ctx.home.id,
        kind=ResultKind.LAB,
        item_code=GLUCOSE,
        item_system="LN",
        status=ResultStatus.FINAL,
        effective_at=utcnow() - timedelta(days=1),
        value_numeric=5.4,
        unit="mmol/L",
        hr_mark=True,
        source="test",
    )
    ctx.session.add(result)
    ctx.session.flush()
    return person.id, result


def _result(ctx: MatrixContext) -> Call:
    return Call(path_params={"result_id": _result_at_home(ctx)[1].id})


def _patient_results(ctx: MatrixContext) -> Call:
    return Call(path_params={"patient_id": _result_at_home(ctx)[0]})


def _trend(ctx: MatrixContext) -> Call:
    return Call(path_params={"patient_id": _result_at_home(ctx)[0]}, params={"item": GLUCOSE})


def _order_check(ctx: MatrixContext) -> Call:
    person_id, _ = _result_at_home(ctx)
    return Call(
        json={"patient_id": str(person_id), "institution_code": ctx.home.code, "items": [GLUCOSE]}
    )


def _decision(ctx: MatrixContext) -> Call:
    person_id, result = _result_at_home(ctx)
    return Call(
        json={"patient_id": str(person_id), "result_id": str(result.id), "decision": "reuse"}
    )


def _seeded(ctx: MatrixContext) -> Call:
    catalogue.seed_reference(ctx.session)
    return Call()


def _new_item(ctx: MatrixContext) -> Call:
    return Call(
        json={
            "code": unique("L"),
            "code_system": "L",
            "kind": "imaging",
            "name_zh": "测试检查",
            "name_en": "Test study",
            "source": "site configuration (test)",
            "valid_from": "2026-01-01",
        }
    )


def _new_accreditation(ctx: MatrixContext) -> Call:
    catalogue.seed_reference(ctx.session)
    return Call(
        json={
            "institution_code": ctx.home.code,
            "item_code": GLUCOSE,
            "eqa_scheme": "NCCL EQA 2026",
            "passed": True,
            "valid_from": "2026-01-01",
            "valid_to": "2026-12-31",
        }
    )


def _hl7(ctx: MatrixContext) -> Call:
    catalogue.seed_reference(ctx.session)
    message = oru(unique("M"), ctx.home.code, observations=[obx(1, GLUCOSE, "5.5", "mmol/L")])
    return Call(content=message.encode(), headers={"Content-Type": "x-application/hl7-v2+er7"})


RESULT_ROUTES: list[RouteSpec] = [
    RouteSpec("GET", "/api/results/catalogue", P.REGISTRY_READ, prepare=_seeded),
    RouteSpec("POST", "/api/results/catalogue", P.RESULTS_CATALOGUE_MANAGE, prepare=_new_item),
    RouteSpec("GET", "/api/results/accreditations", P.REGISTRY_READ),
    RouteSpec(
        "POST",
        "/api/results/accreditations",
        P.RESULTS_CATALOGUE_MANAGE,
        prepare=_new_accreditation,
    ),
    RouteSpec("GET", "/api/results/repeat-reasons", P.REGISTRY_READ),
    RouteSpec("GET", "/api/results/statistics", P.REGISTRY_READ),
    RouteSpec(
        "POST",
        "/api/results/order-check",
        P.PATIENT_READ,
        prepare=_order_check,
        foreign=FOREIGN_CLINICIAN,
    ),
    RouteSpec(
        "POST",
        "/api/results/decisions",
        P.PATIENT_WRITE,
        prepare=_decision,
        foreign=FOREIGN_CLINICIAN,
    ),
    RouteSpec(
        "GET",
        "/api/results/{result_id}",
        P.PATIENT_READ,
        prepare=_result,
        foreign=FOREIGN_CLINICIAN,
    ),
    RouteSpec(
        "GET",
        "/api/patients/{patient_id}/results",
        P.PATIENT_READ,
        prepare=_patient_results,
        foreign=FOREIGN_CLINICIAN,
    ),
    RouteSpec(
        "GET",
        "/api/patients/{patient_id}/results/trend",
        P.PATIENT_READ,
        prepare=_trend,
        foreign=FOREIGN_CLINICIAN,
    ),
    RouteSpec("POST", "/api/interop/hl7v2", P.HL7_INGEST, prepare=_hl7),
]
