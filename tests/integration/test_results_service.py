"""The results service as the FHIR layer will call it: already-parsed data in."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.audit import service as audit
from medalliance.domains.results import schemas, service
from medalliance.domains.results.models import Result, ResultStatus
from medalliance.kernel.actor import Actor
from medalliance.kernel.errors import InvalidInput, PermissionDenied
from medalliance.kernel.roles import Role
from tests.api.access_matrix import audit_events
from tests.factories.alliance import AllianceFactory, InstitutionFactory
from tests.factories.patients import make_patient
from tests.factories.results import accredit, days_ago, seed_catalogue


def _lab(code: str = "14749-6", unit: str = "mmol/L", **extra: object) -> schemas.LabResultIn:
    return schemas.LabResultIn(
        item_code=code, effective_at=days_ago(1), value_numeric=5.5, unit=unit, **extra
    )  # type: ignore[arg-type]


def test_a_result_is_written_on_the_performing_members_record_with_the_hr_mark(
    session: Session, make_actor: Callable[..., Actor]
) -> None:
    seed_catalogue()
    alliance = AllianceFactory()
    lab, other = InstitutionFactory(alliance=alliance), InstitutionFactory(alliance=alliance)
    accredit(lab, "14749-6")
    person, record = make_patient(lab)
    actor = make_actor(Role.CLINICIAN, institution=lab)
    accredited = service.record_lab_result(
        session=session, actor=actor, person_id=person.id, data=_lab()
    )
    assert accredited.patient_record_id == record.id and accredited.hr_mark
    unaccredited = service.record_lab_result(
        session=session, actor=actor, person_id=person.id, data=_lab("2823-3")
    )
    assert not unaccredited.hr_mark
    audit.flush_pending(session)  # the commit would append them
    assert len(audit_events(session, action="create", resource_type="Result")) == 2
    with pytest.raises(PermissionDenied):  # no record there and no care relationship
        service.record_lab_result(
            session=session,
            actor=make_actor(Role.CLINICIAN, institution=other),
            person_id=person.id,
            data=_lab(),
        )


def test_a_batch_is_all_or_nothing_and_names_the_bad_entry(
    session: Session, make_actor: Callable[..., Actor]
) -> None:
    seed_catalogue()
    lab = InstitutionFactory()
    person, _ = make_patient(lab)
    actor = make_actor(Role.CLINICIAN, institution=lab)
    with pytest.raises(InvalidInput) as caught:
        service.record_lab_results(
            session=session,
            actor=actor,
            person_id=person.id,
            data=[_lab(), _lab("4548-4", unit="mmol/L")],  # HbA1c is a mass fraction
        )
    assert caught.value.field == "unit" and caught.value.extra["index"] == 1
    assert session.scalars(select(Result)).all() == []
    with pytest.raises(InvalidInput, match="imaging item"):
        service.record_lab_result(
            session=session, actor=actor, person_id=person.id, data=_lab("30745-4", unit="1")
        )


def test_imaging_reports_supersede_by_order_reference(
    session: Session, make_actor: Callable[..., Actor]
) -> None:
    lab = InstitutionFactory()
    person, _ = make_patient(lab)
    actor = make_actor(Role.CLINICIAN, institution=lab)

    def report(status: ResultStatus, conclusion: str) -> Result:
        return service.record_imaging_report(
            session=session,
            actor=actor,
            person_id=person.id,
            data=schemas.ImagingReportIn(
                item_code="29252-4",
                modality="CT",
                effective_at=days_ago(2),
                status=status,
                conclusion=conclusion,
                order_ref="ACC-1",
            ),
        )

    first = report(ResultStatus.PRELIMINARY, "preliminary read")
    final = report(ResultStatus.FINAL, "final read")
    assert first.superseded_by_id == final.id and first.conclusion == "preliminary read"
    assert final.supersedes_id == first.id


def test_writers_need_the_access_policy(session: Session, make_actor: Callable[..., Actor]) -> None:
    lab = InstitutionFactory()
    person, _ = make_patient(lab)
    with pytest.raises(PermissionDenied):
        service.record_lab_result(
            session=session,
            actor=make_actor(Role.RESEARCHER, institution=lab),
            person_id=person.id,
            data=_lab(),
        )


def test_lab_input_is_checked() -> None:
    with pytest.raises(ValueError, match="needs a UCUM unit"):
        schemas.LabResultIn(item_code="14749-6", effective_at=days_ago(1), value_numeric=1.0)
    with pytest.raises(ValueError, match="not a LOINC code"):
        _lab("GLU")
    with pytest.raises(ValueError, match="value_numeric or value_text"):
        schemas.LabResultIn(item_code="14749-6", effective_at=days_ago(1) - timedelta(0))
