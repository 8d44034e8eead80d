"""Demo prescriptions and constitution assessments on the seeded encounters.

Each recent demo encounter gets one integrated prescription chosen by its primary
diagnosis: a classical formula from the reference data (modified) or a free
composition, plus Western drugs. Everything goes through the real use cases, so
the safety check runs and stores its findings; prescriptions with a blocking finding
are signed with an override reason (audited), a few stay drafts, a few are cancelled.
Synthetic data; the herbal choices are illustrations, not clinical advice.
"""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.access.permissions import permissions_for
from medalliance.domains.patients import service as patients_service
from medalliance.domains.records.models import Diagnosis, Encounter
from medalliance.domains.tcm import assessments, constitution, service
from medalliance.domains.tcm import schemas as ts
from medalliance.domains.tcm.models import ConstitutionAssessment, HerbalForm, Prescription
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.ids import stable_id
from medalliance.kernel.roles import Role

RANDOM_SEED = 20261125
PRESCRIPTIONS = 150
ASSESSMENTS = 30


def _h(name: str, grams: float) -> dict[str, object]:
    return {"name": name, "dose_g": grams}


def _w(drug: str, dose: str, frequency: str, days: int | None = 30) -> dict[str, object]:
    return {
        "drug": drug,
        "dose": dose,
        "route": "oral",
        "frequency": frequency,
        "duration_days": days,
    }


# By ICD-10 code of the encounter's primary diagnosis (demo/clinical_data.py).
TEMPLATES: dict[str, dict[str, object]] = {
    "I10": {  # free composition in the manner of 天麻钩藤饮
        "herbs": [
            _h("天麻", 9),
            _h("钩藤", 12),
            _h("石决明", 18),
            _h("牛膝", 12),
            _h("杜仲", 9),
            _h("黄芩", 9),
            _h("栀子", 9),
            _h("益母草", 9),
            _h("桑寄生", 9),
            _h("茯苓", 9),
            _h("甘草", 6),
        ],
        "western": [_w("amlodipine", "5 mg", "qd")],
    },
    "E11.9": {  # 六味地黄丸 as a decoction, with 人参 (人参 × antidiabetics: warn)
        "from_formula": {
            "formula": "六味地黄丸",
            "change": [
                _h("熟地黄", 24),
                _h("山萸肉", 12),
                _h("干山药", 12),
                _h("泽泻", 9),
                _h("牡丹皮", 9),
                _h("茯苓", 9),
            ],
            "add": [_h("人参", 6)],
        },
        "western": [_w("metformin", "500 mg", "bid")],
    },
    "J44.9": {  # 二陈汤 with 苦杏仁
        "from_formula": {"formula": "二陈汤", "change": [_h("半夏", 9)], "add": [_h("苦杏仁", 9)]},
        "western": [],
    },
    "I50.9": {  # 真武汤 with 炙甘草: 甘草 × digoxin and × furosemide are major → block
        "from_formula": {"formula": "真武汤", "add": [_h("炙甘草", 6)]},
        "western": [_w("furosemide", "20 mg", "qd")],
    },
    "J06.9": {"from_formula": {"formula": "麻黄汤"}, "western": []},
    "K29.7": {  # 四君子汤 + 半夏, 陈皮 (六君子汤's composition)
        "from_formula": {"formula": "四君子汤", "add": [_h("半夏", 9), _h("陈皮", 6)]},
        "western": [_w("omeprazole", "20 mg", "qd", 14)],
    },
    "F51.0": {"from_formula": {"formula": "酸枣仁汤"}, "western": []},
    "I25.1": {  # 血府逐瘀汤 + 丹参 with aspirin and clopidogrel (warn)
        "from_formula": {"formula": "血府逐瘀汤", "add": [_h("丹参", 15)]},
        "western": [_w("aspirin", "100 mg", "qd"), _w("clopidogrel", "75 mg", "qd")],
    },
    "M54.5": {  # 独活寄生汤 as written: 细辛 6 g is above its range → toxic_dose (warn)
        "from_formula": {"formula": "独活寄生汤"},
        "western": [_w("diclofenac", "75 mg", "qd", 7)],
    },
    "K58.9": {
        "from_formula": {
            "formula": "痛泻要方",
            "change": [_h("白术", 9), _h("白芍药", 6), _h("陈皮", 6), _h("防风", 6)],
        },
        "western": [],
    },
}
# A draft the check blocks on 十八反: 附子 added to 二陈汤 (半夏).
INCOMPATIBLE_DRAFT: dict[str, object] = {
    "from_formula": {"formula": "二陈汤", "change": [_h("半夏", 9)], "add": [_h("附子", 9)]},
    "western": [],
}
OVERRIDES = [
    "Serum potassium and digoxin level checked weekly; short course agreed with the patient",
    "Benefit judged to outweigh the risk; INR and bleeding signs monitored",
    "Reviewed with the pharmacist; dose within the department's protocol",
]


def _prescriber(institution_id: object) -> Actor:
    return Actor(
        user_id=stable_id("demo-prescriber", str(institution_id)),
        username=f"demo-prescriber@{institution_id}",
        role=Role.CLINICIAN,
        institution_id=institution_id,  # type: ignore[arg-type]
        permissions=permissions_for(Role.CLINICIAN),
    )


def seed_tcm(session: Session) -> dict[str, int]:
    """Idempotent: encounters that already have a prescription are skipped."""
    rng = random.Random(RANDOM_SEED)  # noqa: S311 - synthetic data
    counts = {"prescriptions": 0, "overridden": 0, "constitution assessments": 0}
    rows = session.execute(
        select(Encounter, Diagnosis.western_code)
        .join(Diagnosis, Diagnosis.encounter_id == Encounter.id)
        .where(Diagnosis.primary.is_(True))
        .order_by(Encounter.start.desc(), Encounter.id)
        .limit(PRESCRIPTIONS)
    ).all()
    done = set(session.scalars(select(Prescription.encounter_id)))
    for index, (encounter, icd) in enumerate(rows):
        if encounter.id in done or icd not in TEMPLATES:
            continue
        actor = _prescriber(encounter.institution_id)
        template = INCOMPATIBLE_DRAFT if index % 25 == 7 else TEMPLATES[icd]
        body = ts.PrescriptionWrite.model_validate(
            {
                **template,
                "dose_count": rng.choice([7, 7, 14]),
                "herbal_form": rng.choice(list(HerbalForm)),
                "instructions": "水煎服，日一剂，早晚分服" if index % 2 else "开水冲服，日一剂",
            }
        )
        prescription = service.create_prescription(
            session=session, actor=actor, encounter_id=encounter.id, data=body
        )
        counts["prescriptions"] += 1
        if template is INCOMPATIBLE_DRAFT or index % 10 == 3:
            continue  # left as a draft
        blocking = any(f["severity"] == "block" for f in prescription.findings)
        service.sign_prescription(
            session=session,
            actor=actor,
            prescription_id=prescription.id,
            override_reason=rng.choice(OVERRIDES) if blocking else None,
        )
        counts["overridden"] += blocking
        if index % 17 == 5:
            service.cancel_prescription(
                session=session,
                actor=actor,
                prescription_id=prescription.id,
                reason="Patient reported nausea; stopped at follow-up",
            )
    counts["constitution assessments"] = _assessments(session, rng, [e for e, _ in rows])
    return counts


def _assessments(session: Session, rng: random.Random, encounters: list[Encounter]) -> int:
    if session.scalar(select(ConstitutionAssessment.id).limit(1)) is not None:
        return 0  # seeded before
    q = constitution.questionnaire()
    created = 0
    seen: set[object] = set()
    for encounter in encounters:
        if created >= ASSESSMENTS or encounter.patient_record_id in seen:
            continue
        seen.add(encounter.patient_record_id)
        person_id = patients_service.person_of_record(session, encounter.patient_record_id)
        record = (
            None
            if person_id is None
            else patients_service.local_record(session, person_id, encounter.institution_id)
        )
        if person_id is None or record is None:
            continue
        sex = str(record.sex) if str(record.sex) in ("male", "female") else "female"
        # Mostly low scores with one or two leanings, as a population would answer.
        leaning = rng.sample([s.code for s in q.scales[1:]], k=rng.choice([0, 1, 2]))
        answers = {}
        for item_id in q.required(sex):
            scales = [s.code for s in q.scales if any(i == item_id for i, _ in s.items)]
            high = any(code in leaning for code in scales)
            answers[item_id] = rng.choice([3, 4, 4, 5] if high else [1, 1, 2, 2, 3])
        answers["A1"] = rng.choice([2, 3, 4, 5])
        answers["A6"] = rng.choice([3, 4, 5])
        assessments.record_assessment(
            session=session,
            actor=_prescriber(encounter.institution_id),
            person_id=person_id,
            data=ts.AssessmentCreate(
                answers=answers, assessed_at=utcnow() - timedelta(days=rng.randrange(0, 365))
            ),
        )
        created += 1
    return created
