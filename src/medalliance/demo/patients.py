"""Demo patients: about 2,000 synthetic people registered across the members, with
histories, including duplicate registrations for the MPI to link or queue.

Most duplicates carry the registry's everyday errors (``synthetic.registry``) and link.
A few are people who came back after moving to another district, with a new phone and
without their ID card: only name, sex and birth date agree, so the MPI cannot be sure
and queues them for a person to decide (the demo's review queue).

Registrations go through the real use case (so the MPI matches them) with an
idempotency key per synthetic record, which makes seeding idempotent; histories are
written only for registrations that were new.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from medalliance.access.permissions import permissions_for
from medalliance.demo import clinical_data as cd
from medalliance.domains.alliance.models import Institution, Tier
from medalliance.domains.patients import identity
from medalliance.domains.patients import service as patients_service
from medalliance.domains.patients.identity import IdNumberError
from medalliance.domains.patients.mpi import synthetic
from medalliance.domains.patients.schemas import PatientCreate
from medalliance.domains.records import schemas as rs
from medalliance.domains.records import service as records_service
from medalliance.domains.records.models import (
    AllergyCategory,
    EncounterClass,
    EncounterStatus,
    NoteKind,
)
from medalliance.kernel.actor import Actor
from medalliance.kernel.ids import stable_id
from medalliance.kernel.roles import Role

DEMO_PERSONS = 1700  # with duplicates ≈ 2,100 registrations
ANCHOR = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)  # fixed, so seeding is deterministic
RANDOM_SEED = 20261124
MOVED_SHARE = 0.03  # of the duplicate registrations: came back after moving (see above)


@dataclass
class PatientSeedSummary:
    registrations: int = 0
    linked: int = 0
    queued: int = 0
    encounters: int = 0


def _clerk(institution: Institution) -> Actor:
    return Actor(
        user_id=stable_id("demo-clerk", institution.code),
        username=f"demo-seed@{institution.code}",
        role=Role.CLINICIAN,
        institution_id=institution.id,
        permissions=permissions_for(Role.CLINICIAN),
    )


def _valid_id(rec: synthetic.SyntheticRecord) -> str | None:
    """The desk refuses a mistyped number or one that disagrees with the birth date:
    such duplicates are registered without one, as they would be."""
    if rec.id_number is None:
        return None
    try:
        identity.check_agreement(
            identity.parse(rec.id_number), birth_date=rec.birth_date, sex=rec.sex
        )
    except IdNumberError:
        return None
    return rec.id_number


def _returned_after_moving(
    rec: synthetic.SyntheticRecord, rng: random.Random
) -> synthetic.SyntheticRecord:
    """The same person registering again after moving to another district of the city:
    a new street, district, postcode and phone, and no ID card at the desk."""
    area, _city, districts = synthetic.PROVINCES[rec.province]
    district = rng.choice([i for i, d in enumerate(districts) if d != rec.district])
    return replace(
        rec,
        id_number=None,
        phone=f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}",
        district=districts[district],
        postcode=f"{area[:4]}{district + 1:02d}",
        street=f"{rng.choice(synthetic.STREETS)}{rng.randrange(1, 400)}号",
    )


def _registrations(persons: int) -> list[synthetic.SyntheticRecord]:
    """The synthetic registry in registration order, a ``MOVED_SHARE`` of its duplicates
    turned into people who came back after moving."""
    moves = random.Random(f"{RANDOM_SEED}:moved")  # noqa: S311 - synthetic data
    records = sorted(
        synthetic.registry(persons, duplicate_rate=0.15, seed=RANDOM_SEED),
        key=lambda r: r.record_id,
    )
    return [
        _returned_after_moving(r, moves)
        if "-D" in r.record_id and moves.random() < MOVED_SHARE
        else r
        for r in records
    ]


def seed_patients(
    session: Session, institutions: list[Institution], persons: int = DEMO_PERSONS
) -> PatientSeedSummary:
    rng = random.Random(RANDOM_SEED)  # noqa: S311 - synthetic data
    summary = PatientSeedSummary()
    primary = [i for i in institutions if i.tier is Tier.PRIMARY]
    higher = [i for i in institutions if i.tier is not Tier.PRIMARY]
    home: dict[int, Institution] = {}
    for rec in _registrations(persons):
        first = rec.person not in home
        if first:
            home[rec.person] = rng.choice(primary if rng.random() < 0.6 else higher)
            institution = home[rec.person]
        else:
            others = [i for i in institutions if i.id != home[rec.person].id]
            institution = rng.choice(others)
        result = patients_service.register(
            session=session,
            actor=_clerk(institution),
            data=PatientCreate(
                mrn=f"{institution.code}-{rec.record_id}",
                family_name=rec.family_name,
                given_name=rec.given_name,
                sex=rec.sex,
                birth_date=rec.birth_date,
                id_number=_valid_id(rec),
                phones=[rec.phone] if rec.phone else [],
                province=rec.province,
                city=rec.city,
                district=rec.district,
                street=rec.street,
                postcode=rec.postcode,
            ),
            idempotency_key=f"demo:{rec.record_id}",
        )
        if not result.created:
            continue
        summary.registrations += 1
        summary.linked += result.link_method != "new_person"
        summary.queued += result.review_candidates
        # A generator per record: a rerun that skips existing histories must not shift
        # the choices made for the records after them.
        history_rng = random.Random(f"{RANDOM_SEED}:{rec.record_id}")  # noqa: S311
        summary.encounters += _history(session, history_rng, institution, result.patient.id)
        if summary.registrations % 200 == 0:
            session.flush()
            session.expunge_all()
    return summary


def _history(
    session: Session, rng: random.Random, institution: Institution, person_id: uuid.UUID
) -> int:
    clerk = _clerk(institution)
    conditions = rng.sample(cd.DIAGNOSES, k=rng.choice([1, 1, 2, 3]))
    visits = rng.randint(1, 4)
    for n in range(visits):
        start = ANCHOR - timedelta(days=rng.randrange(0, 720), hours=rng.randrange(0, 8))
        inpatient = rng.random() < 0.1
        encounter = records_service.create_encounter(
            session=session,
            actor=clerk,
            person_id=person_id,
            data=rs.EncounterCreate(
                encounter_class=EncounterClass.INPATIENT
                if inpatient
                else EncounterClass.OUTPATIENT,
                status=EncounterStatus.FINISHED,
                start=start,
                end=start + timedelta(days=rng.randint(3, 12) if inpatient else 0, minutes=20),
                reason=conditions[n % len(conditions)][2],
            ),
        )
        icd, western, disease, pattern, pattern_text = conditions[n % len(conditions)]
        records_service.add_diagnosis(
            session=session,
            actor=clerk,
            encounter_id=encounter.id,
            data=rs.DiagnosisCreate(
                primary=True,
                western_code=icd,
                western_text=western,
                tcm_disease_text=disease,
                tcm_pattern_system="icd11",
                tcm_pattern_code=pattern,
                tcm_pattern_text=pattern_text,
            ),
        )
        if rng.random() < 0.5:
            records_service.add_note(
                session=session,
                actor=clerk,
                encounter_id=encounter.id,
                data=rs.NoteCreate(
                    kind=NoteKind.TCM_FOUR_EXAMINATIONS,
                    text=f"{disease}，{pattern_text.split()[0]}",
                    tcm_exam=rs.TcmExamination(
                        tongue_body=rng.choice(cd.TONGUE_BODIES),
                        tongue_coating=rng.choice(cd.TONGUE_COATINGS),
                        pulse=rng.choice(cd.PULSES),
                    ),
                ),
            )
    for icd, *_ in conditions:
        for drug, dose, frequency in cd.MEDICATIONS.get(icd, []):
            records_service.add_medication(
                session=session,
                actor=clerk,
                person_id=person_id,
                data=rs.MedicationCreate(drug=drug, dose=dose, route="oral", frequency=frequency),
            )
    if rng.random() < 0.08:
        substance, category, reaction = rng.choice(cd.ALLERGENS)
        records_service.add_allergy(
            session=session,
            actor=clerk,
            person_id=person_id,
            data=rs.AllergyCreate(
                substance=substance, category=AllergyCategory(category), reaction=reaction
            ),
        )
    return visits
