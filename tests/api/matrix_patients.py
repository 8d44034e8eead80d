"""Access-matrix entries for patients, the MPI and the longitudinal record.

Targets live at the matrix's ``home`` institution; a clinician of ``other`` has no
record of the patient and no care relationship, so the policy refuses them (403)
even though the alliance default lets them discover the patient.
"""

from __future__ import annotations

import uuid
from datetime import date

from medalliance.access.permissions import Permission as P  # noqa: N817 - the table reads better
from medalliance.domains.patients.identity import Sex
from medalliance.domains.patients.mpi.models import ReviewItem, ReviewStatus
from medalliance.domains.records.models import (
    Allergy,
    AllergyCategory,
    ClinicalStatus,
    Diagnosis,
    Encounter,
    EncounterClass,
    EncounterStatus,
    MedicationStatement,
    MedicationStatus,
)
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role
from tests.api.access_matrix import Call, MatrixContext, RouteSpec
from tests.factories.patients import make_patient

CLINICAL_FOREIGNER = (Role.CLINICIAN,)


def _patient(ctx: MatrixContext) -> uuid.UUID:
    person, _ = make_patient(ctx.home)
    return person.id


def _patient_call(ctx: MatrixContext) -> Call:
    return Call(path_params={"patient_id": _patient(ctx)})


def _search(ctx: MatrixContext) -> Call:
    _patient(ctx)
    return Call(params={"q": "王伟"})


def _registration(ctx: MatrixContext) -> Call:
    return Call(
        json={
            "family_name": "李",
            "given_name": "娜",
            "sex": "female",
            "birth_date": "1980-02-29",
            "phones": ["13900000000"],
        }
    )


def _record(ctx: MatrixContext) -> Call:
    _, record = make_patient(ctx.home)
    return Call(path_params={"record_id": record.id}, json={"city": "清河市"})


def _consent(ctx: MatrixContext) -> Call:
    return Call(path_params={"patient_id": _patient(ctx)}, json={"status": "granted"})


def _review_item(ctx: MatrixContext) -> ReviewItem:
    _, first = make_patient(ctx.home)
    _, second = make_patient(ctx.home, given_name="玮", birth_date=date(1970, 7, 5))
    item = ReviewItem(
        record_id=second.id,
        candidate_record_id=first.id,
        probability=0.8,
        weight=2.0,
        comparison={},
        status=ReviewStatus.OPEN,
        created_at=utcnow(),
    )
    ctx.session.add(item)
    ctx.session.flush()
    return item


def _review(ctx: MatrixContext) -> Call:
    return Call(path_params={"item_id": _review_item(ctx).id})


def _decision(ctx: MatrixContext) -> Call:
    return Call(path_params={"item_id": _review_item(ctx).id}, json={"same_person": False})


def _link(ctx: MatrixContext) -> Call:
    _, record = make_patient(ctx.home)
    target, _ = make_patient(ctx.home, given_name="芳", sex=Sex.FEMALE)
    return Call(
        path_params={"record_id": record.id},
        json={"person_id": str(target.id), "reason": "same ID card seen"},
    )


def _unlink(ctx: MatrixContext) -> Call:
    person, _ = make_patient(ctx.home)
    _, second = make_patient(ctx.home, person=person)
    return Call(path_params={"record_id": second.id}, json={"reason": "a namesake"})


def _history(ctx: MatrixContext) -> Call:
    return Call(path_params={"person_id": _patient(ctx)})


def _encounter_at_home(ctx: MatrixContext) -> Encounter:
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


def _new_encounter(ctx: MatrixContext) -> Call:
    return Call(
        path_params={"patient_id": _patient(ctx)},
        json={"encounter_class": "outpatient", "start": "2026-11-01T09:00:00+08:00"},
    )


def _encounter(ctx: MatrixContext) -> Call:
    return Call(path_params={"encounter_id": _encounter_at_home(ctx).id})


def _finish_encounter(ctx: MatrixContext) -> Call:
    return Call(
        path_params={"encounter_id": _encounter_at_home(ctx).id}, json={"status": "finished"}
    )


def _encounter_child(body: dict[str, object]) -> object:
    def prepare(ctx: MatrixContext) -> Call:
        return Call(path_params={"encounter_id": _encounter_at_home(ctx).id}, json=body)

    return prepare


def _patient_entry(body: dict[str, object]) -> object:
    def prepare(ctx: MatrixContext) -> Call:
        return Call(path_params={"patient_id": _patient(ctx)}, json=body)

    return prepare


def _diagnosis(ctx: MatrixContext) -> Call:
    encounter = _encounter_at_home(ctx)
    entry = Diagnosis(
        encounter_id=encounter.id,
        patient_record_id=encounter.patient_record_id,
        institution_id=ctx.home.id,
        western_code="I10",
        status=ClinicalStatus.ACTIVE,
        recorded_at=utcnow(),
    )
    ctx.session.add(entry)
    ctx.session.flush()
    return Call(path_params={"entry_id": entry.id}, json={"status": "resolved"})


def _allergy(ctx: MatrixContext) -> Call:
    _, record = make_patient(ctx.home)
    entry = Allergy(
        patient_record_id=record.id,
        institution_id=ctx.home.id,
        substance="penicillin",
        category=AllergyCategory.MEDICATION,
        status=ClinicalStatus.ACTIVE,
        recorded_at=utcnow(),
    )
    ctx.session.add(entry)
    ctx.session.flush()
    return Call(path_params={"entry_id": entry.id}, json={"status": "inactive"})


def _medication(ctx: MatrixContext) -> Call:
    _, record = make_patient(ctx.home)
    entry = MedicationStatement(
        patient_record_id=record.id,
        institution_id=ctx.home.id,
        drug="amlodipine",
        status=MedicationStatus.ACTIVE,
        recorded_at=utcnow(),
    )
    ctx.session.add(entry)
    ctx.session.flush()
    return Call(path_params={"entry_id": entry.id}, json={"status": "stopped"})


def _spec(method: str, path: str, access: str, prepare: object, **extra: object) -> RouteSpec:
    return RouteSpec(method, path, access, prepare=prepare, **extra)  # type: ignore[arg-type]


PATIENT_ROUTES: list[RouteSpec] = [
    _spec("GET", "/api/patients", P.PATIENT_READ, _search),
    _spec("POST", "/api/patients", P.PATIENT_WRITE, _registration),
    _spec(
        "GET",
        "/api/patients/{patient_id}",
        P.PATIENT_READ,
        _patient_call,
        foreign=CLINICAL_FOREIGNER,
    ),
    _spec(
        "PATCH",
        "/api/patients/records/{record_id}",
        P.PATIENT_WRITE,
        _record,
        foreign=CLINICAL_FOREIGNER,
    ),
    _spec(
        "GET",
        "/api/patients/{patient_id}/consent",
        P.PATIENT_READ,
        _patient_call,
        foreign=CLINICAL_FOREIGNER,
    ),
    _spec(
        "POST",
        "/api/patients/{patient_id}/consent",
        P.PATIENT_WRITE,
        _consent,
        foreign=CLINICAL_FOREIGNER,
    ),
    _spec("GET", "/api/mpi/review", P.MPI_REVIEW, lambda ctx: Call()),
    _spec("GET", "/api/mpi/review/{item_id}", P.MPI_REVIEW, _review, foreign=CLINICAL_FOREIGNER),
    _spec(
        "POST",
        "/api/mpi/review/{item_id}/decision",
        P.MPI_REVIEW,
        _decision,
        foreign=CLINICAL_FOREIGNER,
    ),
    _spec(
        "POST", "/api/mpi/records/{record_id}/link", P.MPI_REVIEW, _link, foreign=CLINICAL_FOREIGNER
    ),
    _spec(
        "POST",
        "/api/mpi/records/{record_id}/unlink",
        P.MPI_REVIEW,
        _unlink,
        foreign=CLINICAL_FOREIGNER,
    ),
    _spec(
        "GET",
        "/api/mpi/persons/{person_id}/history",
        P.PATIENT_READ,
        _history,
        foreign=CLINICAL_FOREIGNER,
    ),
    _spec(
        "GET",
        "/api/patients/{patient_id}/timeline",
        P.PATIENT_READ,
        _patient_call,
        foreign=CLINICAL_FOREIGNER,
    ),
    _spec(
        "POST",
        "/api/patients/{patient_id}/encounters",
        P.PATIENT_WRITE,
        _new_encounter,
        foreign=CLINICAL_FOREIGNER,
    ),
    _spec(
        "GET",
        "/api/encounters/{encounter_id}",
        P.PATIENT_READ,
        _encounter,
        foreign=CLINICAL_FOREIGNER,
    ),
    _spec(
        "PATCH",
        "/api/encounters/{encounter_id}",
        P.PATIENT_WRITE,
        _finish_encounter,
        foreign=CLINICAL_FOREIGNER,
    ),
    _spec(
        "POST",
        "/api/encounters/{encounter_id}/diagnoses",
        P.PATIENT_WRITE,
        _encounter_child({"western_code": "I10", "western_text": "Hypertension"}),
        foreign=CLINICAL_FOREIGNER,
    ),
    _spec(
        "POST",
        "/api/encounters/{encounter_id}/notes",
        P.PATIENT_WRITE,
        _encounter_child({"kind": "progress", "text": "stable"}),
        foreign=CLINICAL_FOREIGNER,
    ),
    _spec(
        "POST",
        "/api/encounters/{encounter_id}/procedures",
        P.PATIENT_WRITE,
        _encounter_child({"text": "拔罐 cupping", "performed_at": "2026-11-01T10:00:00+08:00"}),
        foreign=CLINICAL_FOREIGNER,
    ),
    _spec(
        "POST",
        "/api/patients/{patient_id}/allergies",
        P.PATIENT_WRITE,
        _patient_entry({"substance": "penicillin", "category": "medication"}),
        foreign=CLINICAL_FOREIGNER,
    ),
    _spec(
        "POST",
        "/api/patients/{patient_id}/medications",
        P.PATIENT_WRITE,
        _patient_entry({"drug": "metformin", "dose": "500 mg"}),
        foreign=CLINICAL_FOREIGNER,
    ),
    _spec(
        "PATCH",
        "/api/diagnoses/{entry_id}",
        P.PATIENT_WRITE,
        _diagnosis,
        foreign=CLINICAL_FOREIGNER,
    ),
    _spec(
        "PATCH", "/api/allergies/{entry_id}", P.PATIENT_WRITE, _allergy, foreign=CLINICAL_FOREIGNER
    ),
    _spec(
        "PATCH",
        "/api/medications/{entry_id}",
        P.PATIENT_WRITE,
        _medication,
        foreign=CLINICAL_FOREIGNER,
    ),
]
