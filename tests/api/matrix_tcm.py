"""Access-matrix entries for the TCM routes: reference lookups (any signed-in user),
the safety check, prescriptions (clinicians prescribe) and constitution assessments.

Patient targets live at the matrix's ``home`` institution; a clinician of ``other``
has no record of the patient and no care relationship, so the policy refuses them.
"""

from __future__ import annotations

from medalliance.access.permissions import Permission as P  # noqa: N817 - the table reads better
from medalliance.domains.records.models import Encounter, EncounterClass, EncounterStatus
from medalliance.domains.tcm.constitution import questionnaire
from medalliance.domains.tcm.models import (
    HerbalForm,
    Prescription,
    PrescriptionHerb,
    PrescriptionStatus,
)
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role
from tests.api.access_matrix import AUTHENTICATED, Call, MatrixContext, RouteSpec
from tests.factories.patients import make_patient

FOREIGN = (Role.CLINICIAN,)
DRAFT = {
    "herbs": [{"name": "黄芪", "dose_g": 15}, {"name": "当归", "dose_g": 6}],
    "dose_count": 7,
    "herbal_form": "granules",
}


def _encounter(ctx: MatrixContext) -> Encounter:
    _, record = make_patient(ctx.home)
    encounter = Encounter(
        patient_record_id=record.id,
        institution_id=ctx.home.id,
        encounter_class=EncounterClass.OUTPATIENT,
        status=EncounterStatus.IN_PROGRESS,
        start=utcnow(),
    )
    ctx.session.add(encounter)
    ctx.session.flush()
    return encounter


def _prescription(ctx: MatrixContext) -> Prescription:
    encounter = _encounter(ctx)
    prescription = Prescription(
        encounter_id=encounter.id,
        patient_record_id=encounter.patient_record_id,
        institution_id=ctx.home.id,
        status=PrescriptionStatus.DRAFT,
        dose_count=7,
        herbal_form=HerbalForm.GRANULES,
        findings=[],
        check_context={},
        checked_at=utcnow(),
        herbs=[PrescriptionHerb(seq=1, name="黄芪", herb="黄芪", dose_g=15, origin="free")],
    )
    ctx.session.add(prescription)
    ctx.session.flush()
    return prescription


def _safety_check(ctx: MatrixContext) -> Call:
    person, _ = make_patient(ctx.home)
    return Call(json={"patient_id": str(person.id), "herbs": [{"name": "丹参", "dose_g": 9}]})


def _new_prescription(ctx: MatrixContext) -> Call:
    return Call(path_params={"encounter_id": _encounter(ctx).id}, json=DRAFT)


def _prescription_call(body: dict[str, object] | None = None) -> object:
    def prepare(ctx: MatrixContext) -> Call:
        return Call(path_params={"prescription_id": _prescription(ctx).id}, json=body)

    return prepare


def _encounter_prescriptions(ctx: MatrixContext) -> Call:
    return Call(path_params={"encounter_id": _prescription(ctx).encounter_id})


def _assessment(ctx: MatrixContext) -> Call:
    person, _ = make_patient(ctx.home)
    answers = dict.fromkeys(questionnaire().required("male"), 2)
    return Call(path_params={"patient_id": person.id}, json={"answers": answers})


def _patient(ctx: MatrixContext) -> Call:
    person, _ = make_patient(ctx.home)
    return Call(path_params={"patient_id": person.id})


def _spec(method: str, path: str, access: str, prepare: object, **extra: object) -> RouteSpec:
    return RouteSpec(method, path, access, prepare=prepare, **extra)  # type: ignore[arg-type]


TCM_ROUTES: list[RouteSpec] = [
    _spec("GET", "/api/tcm/herbs", AUTHENTICATED, lambda ctx: Call(params={"q": "dg"})),
    _spec("GET", "/api/tcm/herbs/{name}", AUTHENTICATED, lambda ctx: Call({"name": "当归"})),
    _spec("GET", "/api/tcm/formulas", AUTHENTICATED, lambda ctx: Call(params={"q": "四君子"})),
    _spec(
        "GET", "/api/tcm/formulas/{formula}", AUTHENTICATED, lambda ctx: Call({"formula": "F001"})
    ),
    _spec("GET", "/api/tcm/constitution/questionnaire", AUTHENTICATED, lambda ctx: Call()),
    _spec("POST", "/api/tcm/safety-check", P.PATIENT_READ, _safety_check, foreign=FOREIGN),
    _spec(
        "POST",
        "/api/encounters/{encounter_id}/prescriptions",
        P.PRESCRIBE,
        _new_prescription,
        foreign=FOREIGN,
    ),
    _spec(
        "GET",
        "/api/encounters/{encounter_id}/prescriptions",
        P.PATIENT_READ,
        _encounter_prescriptions,
        foreign=FOREIGN,
    ),
    _spec(
        "GET",
        "/api/prescriptions/{prescription_id}",
        P.PATIENT_READ,
        _prescription_call(),
        foreign=FOREIGN,
    ),
    _spec(
        "PUT",
        "/api/prescriptions/{prescription_id}",
        P.PRESCRIBE,
        _prescription_call(DRAFT),
        foreign=FOREIGN,
    ),
    _spec(
        "POST",
        "/api/prescriptions/{prescription_id}/sign",
        P.PRESCRIBE,
        _prescription_call({}),
        foreign=FOREIGN,
    ),
    _spec(
        "POST",
        "/api/prescriptions/{prescription_id}/cancel",
        P.PRESCRIBE,
        _prescription_call({"reason": "wrong patient"}),
        foreign=FOREIGN,
    ),
    _spec(
        "POST",
        "/api/patients/{patient_id}/constitution",
        P.PATIENT_WRITE,
        _assessment,
        foreign=FOREIGN,
    ),
    _spec(
        "GET",
        "/api/patients/{patient_id}/constitution",
        P.PATIENT_READ,
        _patient,
        foreign=FOREIGN,
    ),
]
