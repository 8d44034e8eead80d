"""Table-driven tests of the TCM safety rules, generated from the reference data
shipped in the package (one case per reference row).

The expected severities are written out here from the mapping in the README (and
safety/rules.py), read straight off each CSV row, so a change to the rules' mapping or
to how a row is read fails a case. ``REFERENCE_ROWS_COVERED`` sums what is covered.
"""

from __future__ import annotations

import csv
import re
from importlib import resources

import pytest

from medalliance.domains.tcm.safety import BLOCK, INFO, WARN, HerbDose, UnknownHerb, check
from medalliance.kernel.errors import InvalidInput


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("medalliance.domains.tcm.reference").joinpath(name).read_text("utf-8")
    return list(csv.DictReader(text.splitlines()))


HERBS = _rows("herbs.csv")
PAIRS = _rows("incompatibilities.csv")
PREGNANCY = _rows("pregnancy.csv")
INTERACTIONS = _rows("herb_drug_interactions.csv")
PROCESSED = _rows("processed_forms.csv")
DRUGS = _rows("drug_names.csv")
TOXIC = {"小毒": WARN, "有毒": BLOCK, "大毒": BLOCK}


def _of(findings: list, rule: str) -> list:
    return [f for f in findings if f.rule == rule]


# --- 十八反 / 十九畏: every pair, both orders, and the processed forms of each side ----------


@pytest.mark.parametrize("row", PAIRS, ids=[f"{r['herb_a_zh']}-{r['herb_b_zh']}" for r in PAIRS])
def test_every_incompatible_pair_is_found(row: dict[str, str]) -> None:
    a, b = row["herb_a_zh"], row["herb_b_zh"]
    expected = BLOCK if row["chp2020_stated"] == "yes" else WARN
    processed = {p["parent_zh"]: [] for p in PROCESSED}
    for p in PROCESSED:
        processed[p["parent_zh"]].append(p["name_zh"])
    for first, second in [
        (a, b),
        (b, a),
        *((form, b) for form in processed.get(a, [])),
        *((a, form) for form in processed.get(b, [])),
    ]:
        found = _of(check([first, second]), row["rule"])
        assert len(found) == 1, (first, second)
        assert found[0].severity == expected
        assert set(found[0].herbs) == {first, second}
        assert found[0].source == row["source"]
        assert found[0].message_zh and found[0].message_en


def test_compatible_herbs_give_no_pair_finding() -> None:
    findings = check(["麻黄", "桂枝", "苦杏仁", "甘草"])
    assert not _of(findings, "eighteen_incompatible")
    assert not _of(findings, "nineteen_antagonism")


# --- pregnancy: every row ---------------------------------------------------------------


@pytest.mark.parametrize("row", PREGNANCY, ids=[r["name_zh"] for r in PREGNANCY])
def test_every_pregnancy_row(row: dict[str, str]) -> None:
    rule = f"pregnancy_{row['level']}"
    expected = BLOCK if row["level"] == "contraindicated" else WARN
    found = check([row["name_zh"]], pregnant=True)
    matching = [f for f in found if f.rule.startswith("pregnancy_")]
    assert [(f.rule, f.severity, f.source) for f in matching] == [(rule, expected, row["source"])]
    assert not [f for f in check([row["name_zh"]], pregnant=False) if "pregnancy" in f.rule]
    assert not [f for f in check([row["name_zh"]], pregnant=None) if "pregnancy" in f.rule]


def test_processed_form_takes_its_parents_pregnancy_row() -> None:
    # 附子 is a pregnancy row; 制附子 (processed_forms.csv) has none of its own.
    parent = next(r for r in PREGNANCY if r["name_zh"] == "附子")
    assert not any(r["name_zh"] == "制附子" for r in PREGNANCY)
    found = [f for f in check(["制附子"], pregnant=True) if "pregnancy" in f.rule]
    assert [f.rule for f in found] == [f"pregnancy_{parent['level']}"]


# --- dose ranges and toxic herbs: every herb with a range -------------------------------


def _range(row: dict[str, str]) -> tuple[float, float] | None:
    if row["dose_chp2020_min_g"] and row["dose_chp2020_max_g"]:
        return float(row["dose_chp2020_min_g"]), float(row["dose_chp2020_max_g"])
    if row["dose_textbook_min_g"] and row["dose_textbook_max_g"]:
        return float(row["dose_textbook_min_g"]), float(row["dose_textbook_max_g"])
    return None


DOSED = [r for r in HERBS if _range(r) is not None]


@pytest.mark.parametrize("row", DOSED, ids=[r["name_zh"] for r in DOSED])
def test_every_dose_limit(row: dict[str, str]) -> None:
    _low, high = _range(row)  # type: ignore[misc]
    name = row["name_zh"]
    within = check([HerbDose(name, high)])
    assert not _of(within, "dose_above_range") and not _of(within, "toxic_dose")
    above = check([HerbDose(name, high * 1.5)])
    if row["toxicity"] in TOXIC:
        (finding,) = _of(above, "toxic_dose")
        assert finding.severity == TOXIC[row["toxicity"]]
        assert not _of(above, "dose_above_range")
    else:
        (finding,) = _of(above, "dose_above_range")
        assert finding.severity == WARN
        assert not _of(above, "toxic_dose")
    basis = "ChP2020" if row["dose_chp2020_min_g"] and row["dose_chp2020_max_g"] else "textbook"
    assert basis in finding.message_en
    assert finding.source  # the ChP entry or the textbook line


def test_processed_form_is_held_to_its_parents_range() -> None:
    gancao = next(r for r in HERBS if r["name_zh"] == "甘草")
    high = _range(gancao)[1]  # type: ignore[index]
    (finding,) = _of(check([HerbDose("炙甘草", high + 1)]), "dose_above_range")
    assert "甘草" in finding.message_en


# --- duplicates: every processed form with its parent ------------------------------------


@pytest.mark.parametrize("row", PROCESSED, ids=[r["name_zh"] for r in PROCESSED])
def test_every_processed_form_duplicates_its_parent(row: dict[str, str]) -> None:
    (finding,) = _of(check([row["name_zh"], row["parent_zh"]]), "duplicate_herb")
    assert finding.severity == WARN
    assert set(finding.herbs) == {row["name_zh"], row["parent_zh"]}
    assert "processed_forms.csv" in finding.source


def test_same_herb_twice_and_aliases_are_duplicates() -> None:
    assert _of(check(["当归", "当归"]), "duplicate_herb")
    assert _of(check(["苦杏仁", "杏仁"]), "duplicate_herb")  # formula_herbs: 杏仁 → 苦杏仁
    assert not _of(check(["当归", "川芎"]), "duplicate_herb")


# --- herb–drug interactions: every row, every drug and class it names -----------------------


def _terms(text: str) -> list[str]:
    inner = re.findall(r"\(([^)]*)\)", text)
    outer = re.sub(r"\([^)]*\)", "", text)
    parts = [p.strip() for chunk in [outer, *inner] for p in re.split(r",| / |/", chunk)]
    return [p for p in parts if p]


def _expected_severity(row: dict[str, str], drug: str) -> str:
    grade = row["severity"]
    if grade.startswith("major (warfarin"):  # the one row graded per drug
        return BLOCK if drug.lower() == "warfarin" else WARN
    return BLOCK if grade.startswith("major") else WARN


def _row_herbs(row: dict[str, str]) -> list[str]:
    return [h.strip() for h in re.sub(r"\([^)]*\)", "", row["herb_zh"]).split("/") if h.strip()]


@pytest.mark.parametrize(
    "row", INTERACTIONS, ids=[f"{r['herb_zh'][:8]}-{r['drug_or_class'][:20]}" for r in INTERACTIONS]
)
def test_every_interaction_row(row: dict[str, str]) -> None:
    examples = _terms(row["drug_examples"])
    for herb in _row_herbs(row):
        for drug in examples:
            # Several rows may match one drug (HCTZ: diuretics and antihypertensives);
            # this row's finding names its drug class.
            (finding,) = [
                f
                for f in check([herb], drugs=[drug])
                if f.rule == "herb_drug_interaction"
                and f" ({row['drug_or_class']}): " in f.message_en
            ]
            assert finding.severity == _expected_severity(row, drug), (herb, drug)
            assert finding.source == row["source"]
            assert finding.drugs == (drug,) and finding.herbs == (herb,)


@pytest.mark.parametrize("row", DRUGS, ids=[r["drug_en"] for r in DRUGS])
def test_chinese_and_english_drug_names_reach_the_same_rows(row: dict[str, str]) -> None:
    herbs = sorted({h for r in INTERACTIONS for h in _row_herbs(r)} - {"石膏"})
    by_english = {(f.herbs, f.source) for f in check(herbs, drugs=[row["drug_en"]])}
    by_chinese = {(f.herbs, f.source) for f in check(herbs, drugs=[row["drug_zh"]])}
    assert by_english == by_chinese


def test_drug_dictionary_uses_only_classes_the_interaction_data_names() -> None:
    reference_terms = {
        t.lower()
        for r in INTERACTIONS
        for t in _terms(r["drug_or_class"]) + _terms(r["drug_examples"])
    }
    for row in DRUGS:
        for cls in filter(None, row["classes"].split(";")):
            assert cls in reference_terms, (row["drug_en"], cls)


def test_a_drug_reaches_a_row_through_its_class_and_a_product_name() -> None:
    # 甘草 × antihypertensives (ACE inhibitors, ARBs, CCBs): amlodipine is a CCB.
    found = _of(check(["甘草"], drugs=["苯磺酸氨氯地平片"]), "herb_drug_interaction")
    assert found and found[0].drugs == ("苯磺酸氨氯地平片",)
    assert _of(check(["丹参"], drugs=["Warfarin sodium 3 mg"]), "herb_drug_interaction")
    assert not _of(check(["丹参"], drugs=["omeprazole"]), "herb_drug_interaction")


# --- allergies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("herbs", "drugs", "allergy", "hit_herbs", "hit_drugs"),
    [
        (["当归"], [], "当归", ("当归",), ()),
        (["炙甘草"], [], "甘草 (rash)", ("炙甘草",), ()),  # a processed form of the allergen
        (["川芎"], ["aspirin"], "阿司匹林", (), ("aspirin",)),
        (["川芎"], ["阿司匹林肠溶片"], "aspirin", (), ("阿司匹林肠溶片",)),
        (["川芎"], ["penicillin V"], "penicillin", (), ("penicillin V",)),
    ],
)
def test_allergy(
    herbs: list[str],
    drugs: list[str],
    allergy: str,
    hit_herbs: tuple[str, ...],
    hit_drugs: tuple[str, ...],
) -> None:
    (finding,) = _of(check(herbs, drugs=drugs, allergies=[allergy]), "allergy")
    assert finding.severity == BLOCK
    assert (finding.herbs, finding.drugs) == (hit_herbs, hit_drugs)
    assert not _of(check(herbs, drugs=drugs, allergies=["shellfish 海鲜"]), "allergy")


# --- bad input and ordering --------------------------------------------------------------


def test_unknown_herb_is_refused_with_suggestions() -> None:
    with pytest.raises(UnknownHerb) as caught:
        check([HerbDose("当规", 9)])
    assert caught.value.field == "herbs.0.name"
    suggestions = caught.value.extra["suggestions"]
    assert suggestions[0] == {"name_zh": "当归", "pinyin": "Danggui"}


@pytest.mark.parametrize("dose", [0, -3, float("nan"), float("inf")])
def test_bad_dose_is_refused(dose: float) -> None:
    with pytest.raises(InvalidInput) as caught:
        check(["甘草", HerbDose("当归", dose)])
    assert caught.value.field == "herbs.1.dose_g"


def test_findings_come_most_severe_first_and_name_a_source() -> None:
    findings = check(
        [HerbDose("附子", 30), HerbDose("半夏", 9), HerbDose("甘草", 6), HerbDose("炙甘草", 6)],
        drugs=["digoxin"],
        pregnant=True,
    )
    order = {BLOCK: 0, WARN: 1, INFO: 2}
    assert [order[f.severity] for f in findings] == sorted(order[f.severity] for f in findings)
    assert {f.rule for f in findings} >= {
        "eighteen_incompatible",
        "toxic_dose",
        "duplicate_herb",
        "herb_drug_interaction",
        "pregnancy_caution",
    }
    assert all(f.source for f in findings)


REFERENCE_ROWS_COVERED = {
    "incompatibilities.csv": len(PAIRS),
    "pregnancy.csv": len(PREGNANCY),
    "herb_drug_interactions.csv": len(INTERACTIONS),
    "herbs.csv (dose ranges)": len(DOSED),
    "processed_forms.csv": len(PROCESSED),
    "drug_names.csv": len(DRUGS),
}


def test_coverage_of_the_reference_rows() -> None:
    assert REFERENCE_ROWS_COVERED == {
        "incompatibilities.csv": 90,
        "pregnancy.csv": 104,
        "herb_drug_interactions.csv": 29,
        "herbs.csv (dose ranges)": 251,
        "processed_forms.csv": 16,
        "drug_names.csv": 116,
    }
