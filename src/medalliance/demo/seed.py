"""Seed the demo alliance: deterministic (stable ids, a fixed random seed) and
idempotent (a second run finds every row and adds nothing)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance import wiring
from medalliance.access import accounts
from medalliance.access.models import User
from medalliance.audit import service as audit
from medalliance.db.engine import build_engine, build_session_factory
from medalliance.db.uow import unit_of_work
from medalliance.demo import alliance_data as data
from medalliance.demo import tcm_data
from medalliance.demo.monitoring_data import seed_monitoring
from medalliance.demo.patients import DEMO_PERSONS, seed_patients
from medalliance.domains.alliance.models import (
    Alliance,
    Bed,
    BedStatus,
    Department,
    Discipline,
    Institution,
    Practitioner,
    PractitionerTitle,
    SharingDefault,
    Tier,
)
from medalliance.kernel.actor import SYSTEM_ACTOR
from medalliance.kernel.ids import stable_id
from medalliance.kernel.roles import Role

DEMO_PASSWORD = "medalliance-demo"  # noqa: S105 - published on purpose, demo only
RANDOM_SEED = 20261123

# username, role, institution code, practitioner slot (index into that institution's list)
DEMO_ACCOUNTS: list[tuple[str, Role, str, int | None]] = [
    ("admin", Role.ALLIANCE_ADMIN, "QH-LEAD", None),
    ("instadmin", Role.INSTITUTION_ADMIN, "QH-DC", None),
    ("clinician", Role.CLINICIAN, "QH-LEAD", 0),
    ("gp", Role.CLINICIAN, "QH-DC-01", 0),
    ("nurse", Role.NURSE, "QH-LEAD", 1),
    ("pharmacist", Role.PHARMACIST, "QH-LEAD", 2),
    ("caremanager", Role.CARE_MANAGER, "QH-DC-01", 1),
    ("researcher", Role.RESEARCHER, "QH-LEAD", None),
    ("auditor", Role.AUDITOR, "QH-LEAD", None),
    ("gateway", Role.DEVICE_GATEWAY, "QH-DC-01", None),
    ("lis", Role.INTERFACE_GATEWAY, "QH-LEAD", None),
]

# Practitioners per institution by tier: 8 + 4×5 + 8×2 = 44.
PRACTITIONERS_BY_TIER = {Tier.LEAD: 8, Tier.SECONDARY: 5, Tier.PRIMARY: 2}
TITLES_BY_SLOT = [
    (PractitionerTitle.CHIEF_PHYSICIAN, Discipline.INTEGRATED),
    (PractitionerTitle.SUPERVISOR_NURSE, Discipline.WESTERN),
    (PractitionerTitle.PHARMACIST, Discipline.TCM),
    (PractitionerTitle.ATTENDING_PHYSICIAN, Discipline.TCM),
    (PractitionerTitle.ASSOCIATE_CHIEF_PHYSICIAN, Discipline.WESTERN),
    (PractitionerTitle.RESIDENT_PHYSICIAN, Discipline.INTEGRATED),
    (PractitionerTitle.ATTENDING_PHYSICIAN, Discipline.WESTERN),
    (PractitionerTitle.NURSE, Discipline.TCM),
]
PRIMARY_SLOTS = [
    (PractitionerTitle.GENERAL_PRACTITIONER, Discipline.INTEGRATED),
    (PractitionerTitle.NURSE, Discipline.WESTERN),
]
BED_STATUS_WEIGHTS = {
    BedStatus.OCCUPIED: 0.72,
    BedStatus.FREE: 0.2,
    BedStatus.CLEANING: 0.05,
    BedStatus.CLOSED: 0.03,
}


@dataclass
class SeedSummary:
    created: dict[str, int] = field(default_factory=dict)
    accounts: list[tuple[str, str, str]] = field(default_factory=list)

    def bump(self, kind: str) -> None:
        self.created[kind] = self.created.get(kind, 0) + 1

    def describe(self) -> str:
        if not self.created:
            return "Demo alliance already seeded; nothing to add."
        parts = ", ".join(f"{n} {kind}" for kind, n in sorted(self.created.items()))
        return f"Seeded the demo alliance: {parts}."


def seed_demo(database_url: str, *, patients: int = DEMO_PERSONS) -> SeedSummary:
    wiring.load_all()
    engine = build_engine(database_url)
    try:
        with unit_of_work(build_session_factory(engine)) as session:
            return seed(session, patients=patients)
    finally:
        engine.dispose()


def seed(session: Session, *, patients: int = DEMO_PERSONS) -> SeedSummary:
    summary = SeedSummary()
    rng = random.Random(RANDOM_SEED)  # noqa: S311 - synthetic data
    alliance = _alliance(session, summary)
    institutions = _institutions(session, alliance, summary)
    practitioners: dict[str, list[Practitioner]] = {}
    for code, institution in institutions.items():
        departments = _departments(session, institution, summary, rng)
        practitioners[code] = _practitioners(session, institution, departments, summary, rng)
    _accounts(session, institutions, practitioners, summary)
    if patients:
        seeded = seed_patients(session, list(institutions.values()), persons=patients)
        for kind, n in (
            ("patient registrations", seeded.registrations),
            ("MPI links", seeded.linked),
            ("MPI review items", seeded.queued),
            ("encounters", seeded.encounters),
        ):
            if n:
                summary.created[kind] = n
        for kind, n in tcm_data.seed_tcm(session).items():
            if n:
                summary.created[kind] = n
        monitored = seed_monitoring(session, institutions, password=DEMO_PASSWORD)
        for kind, n in (
            ("monitored patients", monitored.patients),
            ("monitoring devices", monitored.devices),
            ("device readings", monitored.readings),
            ("monitoring alerts", monitored.alerts),
        ):
            if n:
                summary.created[kind] = n
    _results(session, list(institutions.values()), summary)
    if summary.created:
        audit.record(
            session,
            SYSTEM_ACTOR,
            action="demo.seed",
            resource_type="Alliance",
            resource_id=alliance.id,
            detail={k: str(v) for k, v in summary.created.items()},
        )
    return summary


def _results(session: Session, institutions: list[Institution], summary: SeedSummary) -> None:
    from medalliance.demo.results_data import seed_results

    seeded = seed_results(session, institutions)
    for kind, n in (
        ("recognition items", seeded.catalogue_items),
        ("lab accreditations", seeded.accreditations),
        ("results", seeded.results),
        ("recognition decisions", seeded.decisions),
    ):
        if n:
            summary.created[kind] = n


def _alliance(session: Session, summary: SeedSummary) -> Alliance:
    alliance_id = stable_id("alliance", data.ALLIANCE["code"])
    alliance = session.get(Alliance, alliance_id)
    if alliance is None:
        alliance = Alliance(id=alliance_id, sharing_default=SharingDefault.OPT_OUT, **data.ALLIANCE)
        session.add(alliance)
        summary.bump("alliances")
    return alliance


def _institutions(
    session: Session, alliance: Alliance, summary: SeedSummary
) -> dict[str, Institution]:
    result: dict[str, Institution] = {}
    for code, name_zh, name_en, tier, type_, district, lead in data.INSTITUTIONS:
        inst_id = stable_id("institution", code)
        institution = session.get(Institution, inst_id)
        if institution is None:
            institution = Institution(
                id=inst_id,
                alliance_id=alliance.id,
                code=code,
                name_zh=name_zh,
                name_en=name_en,
                tier=tier,
                type=type_,
                district=district,
                lead_institution_id=None if lead is None else stable_id("institution", lead),
                active=True,
            )
            session.add(institution)
            session.flush()
            summary.bump("institutions")
        result[code] = institution
    return result


def _departments(
    session: Session, institution: Institution, summary: SeedSummary, rng: random.Random
) -> list[Department]:
    tier_index = {Tier.LEAD: 0, Tier.SECONDARY: 1, Tier.PRIMARY: 2}[institution.tier]
    departments = []
    by_code = {d[0]: d for d in data.DEPARTMENTS}
    for dept_code in data.DEPARTMENTS_BY_TIER[institution.tier]:
        _, name_zh, name_en, discipline, beds = by_code[dept_code]
        dept_id = stable_id("department", institution.code, dept_code)
        department = session.get(Department, dept_id)
        if department is None:
            department = Department(
                id=dept_id,
                institution_id=institution.id,
                code=dept_code,
                name_zh=name_zh,
                name_en=name_en,
                discipline=discipline,
                active=True,
            )
            session.add(department)
            session.flush()
            summary.bump("departments")
        departments.append(department)
        statuses = list(BED_STATUS_WEIGHTS)
        weights = list(BED_STATUS_WEIGHTS.values())
        for n in range(1, beds[tier_index] + 1):
            status = rng.choices(statuses, weights)[0]  # drawn every run: stays deterministic
            bed_id = stable_id("bed", institution.code, dept_code, str(n))
            if session.get(Bed, bed_id) is None:
                session.add(
                    Bed(
                        id=bed_id, department_id=dept_id, code=f"{dept_code}-{n:02d}", status=status
                    )
                )
                summary.bump("beds")
    return departments


def _practitioners(
    session: Session,
    institution: Institution,
    departments: list[Department],
    summary: SeedSummary,
    rng: random.Random,
) -> list[Practitioner]:
    slots = PRIMARY_SLOTS if institution.tier is Tier.PRIMARY else TITLES_BY_SLOT
    count = PRACTITIONERS_BY_TIER[institution.tier]
    clinical = [d for d in departments if d.code not in ("LAB", "RAD", "PHARM")]
    pharmacy = next((d for d in departments if d.code == "PHARM"), None)
    result = []
    institution_index = [row[0] for row in data.INSTITUTIONS].index(institution.code)
    for slot in range(count):
        title, discipline = slots[slot % len(slots)]
        name = rng.choice(data.SURNAMES) + rng.choice(data.GIVEN)
        if title in (PractitionerTitle.PHARMACIST, PractitionerTitle.CHIEF_PHARMACIST):
            department = pharmacy
        else:
            department = clinical[slot % len(clinical)]
        prac_id = stable_id("practitioner", institution.code, str(slot))
        practitioner = session.get(Practitioner, prac_id)
        if practitioner is None:
            practitioner = Practitioner(
                id=prac_id,
                institution_id=institution.id,
                department_id=None if department is None else department.id,
                name=name,
                title=title,
                discipline=discipline,
                specialty=None if department is None else department.name_en,
                licence_number=f"1103{institution_index:03d}{slot:02d}{2010 + slot:04d}02",
                active=True,
            )
            session.add(practitioner)
            summary.bump("practitioners")
        result.append(practitioner)
    session.flush()
    return result


def _accounts(
    session: Session,
    institutions: dict[str, Institution],
    practitioners: dict[str, list[Practitioner]],
    summary: SeedSummary,
) -> None:
    for username, role, inst_code, slot in DEMO_ACCOUNTS:
        institution = institutions[inst_code]
        summary.accounts.append((username, str(role), f"{inst_code} {institution.name_zh}"))
        if session.scalar(select(User.id).where(User.username == username)) is not None:
            continue
        practitioner = None if slot is None else practitioners[inst_code][slot]
        accounts.create_account(
            session,
            username=username,
            password=DEMO_PASSWORD,
            role=role,
            display_name=practitioner.name if practitioner else username,
            institution_id=institution.id,
            practitioner_id=None if practitioner is None else practitioner.id,
        )
        summary.bump("accounts")
