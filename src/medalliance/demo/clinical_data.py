"""Integrated diagnoses for the synthetic demo histories.

ICD-10 codes are the WHO classification; the TCM pattern codes are ICD-11 chapter 26
(TM1) codes listed as verified in ../shared/reference/tcm/standards.md §2 (from the
WHO MMS via the Taiwan NRICM FHIR IG). TCM disease names are common TCM terms, given
as text without codes because no machine-readable GB/T 15657-2021 table is available.
"""

from __future__ import annotations

# (ICD-10 code, Western text, TCM disease, TM1 pattern code, pattern text)
DIAGNOSES: list[tuple[str, str, str, str, str]] = [
    (
        "I10",
        "Essential (primary) hypertension 原发性高血压",
        "眩晕",
        "SF52",
        "肝阳上亢证 Liver yang ascendant hyperactivity pattern",
    ),
    (
        "E11.9",
        "Type 2 diabetes mellitus 2型糖尿病",
        "消渴",
        "SF93",
        "肾阴虚证 Kidney yin deficiency pattern",
    ),
    (
        "J44.9",
        "Chronic obstructive pulmonary disease 慢性阻塞性肺疾病",
        "肺胀",
        "SF89",
        "痰热壅肺证 Phlegm heat obstructing the lung pattern",
    ),
    ("I50.9", "Heart failure 心力衰竭", "心衰", "SF97", "肾阳虚证 Kidney yang deficiency pattern"),
    (
        "J06.9",
        "Acute upper respiratory infection 急性上呼吸道感染",
        "感冒",
        "SF8C",
        "风寒束肺证 Wind-cold fettering the lung pattern",
    ),
    ("K29.7", "Gastritis 胃炎", "胃脘痛", "SF70", "脾气虚证 Spleen qi deficiency pattern"),
    (
        "F51.0",
        "Insomnia 失眠",
        "不寐",
        "SF6J",
        "心脾两虚证 Heart and spleen systems deficiency pattern",
    ),
    (
        "I25.1",
        "Atherosclerotic heart disease 冠状动脉粥样硬化性心脏病",
        "胸痹",
        "SF01",
        "血瘀证 Blood stasis pattern",
    ),
    ("M54.5", "Low back pain 腰痛", "腰痛", "SF97", "肾阳虚证 Kidney yang deficiency pattern"),
    (
        "K58.9",
        "Irritable bowel syndrome 肠易激综合征",
        "泄泻",
        "SF5J",
        "肝脾不和证 Disharmony of liver and spleen systems pattern",
    ),
]

# Western drugs taken for those conditions (generic names), by ICD-10 code.
MEDICATIONS: dict[str, list[tuple[str, str, str]]] = {
    "I10": [("amlodipine", "5 mg", "qd"), ("losartan", "50 mg", "qd")],
    "E11.9": [("metformin", "500 mg", "bid")],
    "J44.9": [("tiotropium", "18 µg", "qd")],
    "I50.9": [("furosemide", "20 mg", "qd"), ("digoxin", "0.125 mg", "qd")],
    "I25.1": [("aspirin", "100 mg", "qd"), ("atorvastatin", "20 mg", "qn")],
    "F51.0": [],
    "J06.9": [],
    "K29.7": [("omeprazole", "20 mg", "qd")],
    "M54.5": [],
    "K58.9": [],
}

TONGUE_BODIES = ["淡红", "红", "淡白", "暗紫"]
TONGUE_COATINGS = ["薄白", "黄腻", "白腻", "少苔"]
PULSES = ["弦", "细数", "沉细", "滑", "浮紧", "弦滑"]
ALLERGENS = [
    ("青霉素 penicillin", "medication", "rash"),
    ("磺胺 sulfonamides", "medication", "urticaria"),
    ("海鲜 shellfish", "food", "swelling"),
    ("花粉 pollen", "environment", "rhinitis"),
]
