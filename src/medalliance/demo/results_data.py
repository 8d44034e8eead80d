"""Demo results and mutual recognition: the catalogue from the reference, demo prices
and imaging windows (labelled as demo site configuration), every lead and secondary
member accredited for every item, synthetic results across members (a few through
HL7 v2, with a correction), and a history of reuse and repeat decisions.

Values are synthetic and carry no reference ranges or abnormal flags: the platform
ships no clinical thresholds that the reference does not give.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.access.permissions import permissions_for
from medalliance.domains.alliance.models import Institution, Tier
from medalliance.domains.patients.models import PatientRecord
from medalliance.domains.results import catalogue, schemas
from medalliance.domains.results import service as results_service
from medalliance.domains.results.models import (
    LabAccreditation,
    RecognitionChoice,
    RecognitionDecision,
    Result,
    ResultKind,
    ResultStatus,
)
from medalliance.domains.results.reference import SEED_ITEMS
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.ids import stable_id
from medalliance.kernel.roles import Role

RANDOM_SEED = 20261125
DEMO_PRICE_SOURCE = "DEMO site configuration: illustrative price in CNY, not a tariff"
DEMO_WINDOW_SOURCE = "DEMO site configuration (the reference gives no window for imaging)"
DEMO_VERSION_FROM = date(2026, 1, 1)
# Illustrative demo prices (CNY) — configuration of the demo site, not reference data.
DEMO_PRICES = {
    "14749-6": "8.00",
    "2345-7": "8.00",
    "4548-4": "60.00",
    "2093-3": "10.00",
    "2823-3": "12.00",
    "2951-2": "12.00",
    "1988-5": "30.00",
    "30745-4": "60.00",
    "29252-4": "300.00",
}
DEMO_IMAGING_WINDOW_DAYS = 30
# Synthetic value ranges for the demo generator only (not reference ranges).
LAB_DRAWS = [
    ("14749-6", "mmol/L", 4.0, 9.0),
    ("2823-3", "mmol/L", 3.4, 5.4),
    ("2951-2", "mmol/L", 134.0, 147.0),
    ("4548-4", "%", 4.8, 9.0),
    ("2093-3", "mg/dL", 140.0, 260.0),
    ("1988-5", "mg/L", 0.5, 20.0),
]
RESULT_RECORDS = 300
DECISIONS = 60


@dataclass
class ResultsSeedSummary:
    catalogue_items: int = 0
    accreditations: int = 0
    results: int = 0
    decisions: int = 0


def _admin() -> Actor:
    return Actor(
        user_id=stable_id("demo-admin", "results"),
        username="demo-seed@results",
        role=Role.ALLIANCE_ADMIN,
        permissions=permissions_for(Role.ALLIANCE_ADMIN),
    )


def _clerk(institution: Institution) -> Actor:
    return Actor(
        user_id=stable_id("demo-lab", institution.code),
        username=f"demo-lab@{institution.code}",
        role=Role.CLINICIAN,
        institution_id=institution.id,
        permissions=permissions_for(Role.CLINICIAN),
    )


def seed_results(session: Session, institutions: list[Institution]) -> ResultsSeedSummary:
    summary = ResultsSeedSummary()
    summary.catalogue_items = catalogue.seed_reference(session)
    summary.catalogue_items += _demo_configuration(session)
    summary.accreditations = _accreditation(session, institutions)
    if session.scalar(select(func.count()).select_from(Result).where(Result.source == "demo")):
        return summary  # results and decisions were seeded by an earlier run
    rng = random.Random(RANDOM_SEED)  # noqa: S311 - synthetic data
    by_id = {i.id: i for i in institutions}
    summary.results = _results(session, rng, by_id)
    summary.decisions = _decisions(session, rng, institutions)
    return summary


def _demo_configuration(session: Session) -> int:
    """Version 2 of priced or imaging items: demo prices and imaging windows."""
    added = 0
    for seed in SEED_ITEMS:
        price = DEMO_PRICES.get(seed.code)
        if price is None and seed.kind is not ResultKind.IMAGING:
            continue
        if len(catalogue.item_history(session, seed.code)) > 1:
            continue
        window = seed.validity_days
        window_source = seed.validity_source
        if seed.kind is ResultKind.IMAGING:
            window, window_source = DEMO_IMAGING_WINDOW_DAYS, DEMO_WINDOW_SOURCE
        catalogue.add_version(
            session=session,
            actor=_admin(),
            data=schemas.CatalogueItemIn(
                code=seed.code,
                kind=seed.kind,
                name_zh=seed.name_zh,
                name_en=seed.name_en,
                unit_property=seed.unit_property,
                validity_days=window,
                validity_source=window_source,
                price=None if price is None else Decimal(price),
                price_source=None if price is None else DEMO_PRICE_SOURCE,
                source="WORKFLOWS.md §1.4 with demo site configuration",
                valid_from=DEMO_VERSION_FROM,
            ),
        )
        added += 1
    return added


def _accreditation(session: Session, institutions: list[Institution]) -> int:
    """Every lead and secondary member passed EQA for every item (demo alliance)."""
    added = 0
    for institution in institutions:
        if institution.tier is Tier.PRIMARY:
            continue
        for seed in SEED_ITEMS:
            row_id = stable_id("accreditation", institution.code, seed.code)
            if session.get(LabAccreditation, row_id) is not None:
                continue
            session.add(
                LabAccreditation(
                    id=row_id,
                    institution_id=institution.id,
                    item_code=seed.code,
                    eqa_scheme="DEMO provincial EQA (室间质评) 2023–2027",
                    passed=True,
                    valid_from=date(2023, 1, 1),
                    valid_to=date(2027, 12, 31),
                )
            )
            added += 1
    session.flush()
    return added


def _results(session: Session, rng: random.Random, by_id: dict[uuid.UUID, Institution]) -> int:
    records = session.execute(
        select(PatientRecord.id, PatientRecord.person_id, PatientRecord.institution_id)
        .order_by(PatientRecord.mrn)
        .limit(RESULT_RECORDS)
    ).all()
    now = utcnow()
    written = 0
    for record_id, person_id, institution_id in records:
        institution = by_id[institution_id]
        clerk = _clerk(institution)
        for code, unit, low, high in rng.sample(LAB_DRAWS, k=rng.randint(2, 4)):
            collected = now - timedelta(days=rng.uniform(1, 75))
            results_service.record_lab_result(
                session=session,
                actor=clerk,
                person_id=person_id,
                record_id=record_id,
                source="demo",
                data=schemas.LabResultIn(
                    item_code=code,
                    status=ResultStatus.FINAL,
                    effective_at=collected,
                    issued_at=collected + timedelta(hours=3),
                    performing_lab=f"{institution.name_zh} 检验科",
                    order_ref=f"DEMO-{written}",
                    value_numeric=round(rng.uniform(low, high), 1),
                    unit=unit,
                ),
            )
            written += 1
        if institution.tier is not Tier.PRIMARY and rng.random() < 0.3:
            study = now - timedelta(days=rng.uniform(1, 60))
            results_service.record_imaging_report(
                session=session,
                actor=clerk,
                person_id=person_id,
                record_id=record_id,
                source="demo",
                data=schemas.ImagingReportIn(
                    item_code="30745-4",
                    status=ResultStatus.FINAL,
                    effective_at=study,
                    modality="DX",
                    body_site="Chest 胸部",
                    report_text="Synthetic demo report. 合成演示报告。",
                    conclusion="Synthetic demo conclusion. 合成演示结论。",
                    pacs_url=f"https://pacs.demo.invalid/{institution.code}/{written}",
                    order_ref=f"DEMO-IMG-{written}",
                ),
            )
            written += 1
    session.flush()
    return written


def _decisions(session: Session, rng: random.Random, institutions: list[Institution]) -> int:
    """A history of order-time decisions at the lead hospital on results from members."""
    lead = next(i for i in institutions if i.tier is Tier.LEAD)
    rows = session.execute(
        select(Result.id, Result.item_code, PatientRecord.person_id)
        .join(PatientRecord, PatientRecord.id == Result.patient_record_id)
        .where(Result.institution_id != lead.id, Result.kind == ResultKind.LAB)
        .order_by(Result.effective_at.desc())
        .limit(DECISIONS)
    ).all()
    now = utcnow()
    for n, (result_id, code, person_id) in enumerate(rows):
        item = catalogue.item_on(session, code, now.date())
        reuse = rng.random() < 0.7
        reasons = [] if reuse else rng.sample(["R1", "R2", "R3", "R4", "R7", "R10"], k=1)
        session.add(
            RecognitionDecision(
                id=stable_id("demo-decision", str(n)),
                person_id=person_id,
                result_id=result_id,
                item_code=code,
                item_version=None if item is None else item.version,
                ordering_institution_id=lead.id,
                order_ref=f"DEMO-ORDER-{n}",
                clinician_user_id=stable_id("demo-clerk", lead.code),
                decision=RecognitionChoice.REUSE if reuse else RecognitionChoice.REPEAT,
                reason_codes=reasons,
                price=None if item is None else item.price,
                decided_at=now - timedelta(days=rng.uniform(0, 60)),
            )
        )
    session.flush()
    return len(rows)
