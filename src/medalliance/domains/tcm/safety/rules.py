"""The safety rules: pure functions from a resolved prescription and the reference
data to findings. No I/O, no clock, no database.

Severities. Where the reference data grades a row, the grade decides; where it does
not, the mapping below is ours (MedAlliance's), stated here and in the README:

* eighteen_incompatible / nineteen_antagonism — the data has no severity column.
  ``block`` when ChP2020 itself states 不宜同用 for the pair (chp2020_stated = yes: the
  pharmacopoeia is the legal standard); ``warn`` for the 3 pairs that rest on the
  classical verse only.
* pregnancy_contraindicated / pregnancy_caution — from the row's ``level``:
  contraindicated (禁用/忌用) → ``block``; caution (慎用) → ``warn``.
* toxic_dose — a herb graded toxic (toxicity column) above its dose range: 大毒 and
  有毒 → ``block``, 小毒 → ``warn``. dose_above_range — a non-toxic herb above its
  range → ``warn`` (the ranges are usual doses, not legal limits).
* herb_drug_interaction — from the row's ``severity``: major → ``block``,
  moderate → ``warn``. The one mixed row ("major (warfarin …); moderate overall") is
  major for warfarin and moderate for the other drugs it names.
* duplicate_herb → ``warn`` (no grade in the data; the dose is counted twice).
* allergy → ``block``: the patient's own record says they react to this substance.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from medalliance.domains.tcm.catalogue import TOXICITY_GRADES, Catalogue, drug_term
from medalliance.domains.tcm.entries import Drug

BLOCK = "block"
WARN = "warn"
INFO = "info"
SEVERITY_ORDER = {BLOCK: 0, WARN: 1, INFO: 2}

RULES = (
    "eighteen_incompatible",
    "nineteen_antagonism",
    "pregnancy_contraindicated",
    "pregnancy_caution",
    "dose_above_range",
    "toxic_dose",
    "duplicate_herb",
    "herb_drug_interaction",
    "allergy",
)

RULE_NAMES_ZH = {"eighteen_incompatible": "十八反", "nineteen_antagonism": "十九畏"}


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    severity: str
    herbs: tuple[str, ...]
    drugs: tuple[str, ...]
    message_zh: str
    message_en: str
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "herbs": list(self.herbs),
            "drugs": list(self.drugs),
            "message_zh": self.message_zh,
            "message_en": self.message_en,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class PrescribedHerb:
    """A herb line after resolution: as written, the herb it is, and its lineage."""

    written: str
    herb: str
    lineage: tuple[str, ...]
    dose_g: float | None


@dataclass(frozen=True, slots=True)
class DrugInUse:
    written: str
    drug: Drug | None  # None when the dictionary does not know the name
    terms: frozenset[str]
    origin: str  # "request", "prescription", or the record entry it came from

    @property
    def label(self) -> str:
        return self.written


@dataclass(frozen=True, slots=True)
class AllergyEntry:
    substance: str
    origin: str


def _fmt(value: float) -> str:
    return f"{value:g}"


# --- incompatible pairs -------------------------------------------------------------


def incompatible_pairs(herbs: Sequence[PrescribedHerb], cat: Catalogue) -> list[Finding]:
    findings = []
    for first, second in combinations(herbs, 2):
        pair = None
        # Own names first: 制川乌 + 半夏 matches its own row before 川乌's.
        for a in first.lineage:
            for b in second.lineage:
                pair = cat.pairs.get(frozenset((a, b)))
                if pair is not None:
                    break
            if pair is not None:
                break
        if pair is None:
            continue
        set_zh = RULE_NAMES_ZH[pair.rule]
        set_en = (
            "eighteen incompatibilities"
            if pair.rule == "eighteen_incompatible"
            else ("nineteen antagonisms")
        )
        basis_zh = "《中国药典》2020年版注明不宜同用" if pair.chp2020_stated else "仅见于古代歌诀"
        basis_en = (
            "ChP2020 states they should not be used together"
            if pair.chp2020_stated
            else "classical verse only, not stated in ChP2020"
        )
        findings.append(
            Finding(
                rule=pair.rule,
                severity=BLOCK if pair.chp2020_stated else WARN,
                herbs=(first.written, second.written),
                drugs=(),
                message_zh=(
                    f"{first.written}与{second.written}属{set_zh}"
                    f"（{pair.herb_a}—{pair.herb_b}，「{pair.verse}」），{basis_zh}。"
                ),
                message_en=(
                    f"{first.written} and {second.written} are a pair of the {set_en} "
                    f"({pair.herb_a}–{pair.herb_b}, verse 「{pair.verse}」); {basis_en}."
                ),
                source=pair.source,
            )
        )
    return findings


# --- pregnancy ------------------------------------------------------------------------


def pregnancy(
    herbs: Sequence[PrescribedHerb], pregnant: bool | None, cat: Catalogue
) -> list[Finding]:
    if not pregnant:
        return []
    findings = []
    for item in herbs:
        entry = next((cat.pregnancy[n] for n in item.lineage if n in cat.pregnancy), None)
        if entry is None:
            continue
        contraindicated = entry.level == "contraindicated"
        via = "" if entry.herb == item.herb else f"（按{entry.herb}）"
        via_en = "" if entry.herb == item.herb else f" (as {entry.herb})"
        conflict_zh = "；药典与教材分级不一致" if entry.conflict else ""
        conflict_en = "; ChP2020 and the textbook grade it differently" if entry.conflict else ""
        findings.append(
            Finding(
                rule="pregnancy_contraindicated" if contraindicated else "pregnancy_caution",
                severity=BLOCK if contraindicated else WARN,
                herbs=(item.written,),
                drugs=(),
                message_zh=(
                    f"孕妇{'禁用' if contraindicated else '慎用'}：{item.written}{via}"
                    f"（依据：{entry.level_basis}；「{entry.wording}」{conflict_zh}）。"
                ),
                message_en=(
                    f"{item.written}{via_en} is "
                    f"{'contraindicated' if contraindicated else 'to be used with caution'} "
                    f"in pregnancy (basis: {entry.level_basis}{conflict_en})."
                ),
                source=entry.source,
            )
        )
    return findings


# --- dose -----------------------------------------------------------------------------


def dose_limits(herbs: Sequence[PrescribedHerb], cat: Catalogue) -> list[Finding]:
    findings = []
    for item in herbs:
        if item.dose_g is None:
            continue
        dose, toxicity, data_herb = cat.dose_of(item.herb)
        if dose is None or item.dose_g <= dose.max_g:
            continue
        toxic = toxicity in TOXICITY_GRADES
        via_zh = "" if data_herb == item.herb else f"（按{data_herb}的剂量）"
        via_en = "" if data_herb == item.herb else f" (the range of {data_herb})"
        range_zh = f"{_fmt(dose.min_g)}～{_fmt(dose.max_g)} g（{dose.basis}：{dose.text}）"
        range_en = f"{_fmt(dose.min_g)}–{_fmt(dose.max_g)} g ({dose.basis})"
        if toxic:
            findings.append(
                Finding(
                    rule="toxic_dose",
                    severity=WARN if toxicity == "小毒" else BLOCK,
                    herbs=(item.written,),
                    drugs=(),
                    message_zh=(
                        f"{item.written}为{toxicity}之品，{_fmt(item.dose_g)} g "
                        f"超过用量{range_zh}{via_zh}。"
                    ),
                    message_en=(
                        f"{item.written} is toxic ({toxicity}); {_fmt(item.dose_g)} g exceeds "
                        f"{range_en}{via_en}."
                    ),
                    source=dose.source,
                )
            )
        else:
            findings.append(
                Finding(
                    rule="dose_above_range",
                    severity=WARN,
                    herbs=(item.written,),
                    drugs=(),
                    message_zh=(
                        f"{item.written} {_fmt(item.dose_g)} g 超过常用量{range_zh}{via_zh}。"
                    ),
                    message_en=(
                        f"{item.written} {_fmt(item.dose_g)} g is above {range_en}{via_en}."
                    ),
                    source=dose.source,
                )
            )
    return findings


# --- duplicates -----------------------------------------------------------------------


def duplicates(herbs: Sequence[PrescribedHerb], cat: Catalogue) -> list[Finding]:
    groups: dict[str, list[PrescribedHerb]] = {}
    for item in herbs:
        groups.setdefault(item.lineage[-1], []).append(item)
    findings = []
    for root, items in groups.items():
        if len(items) < 2:
            continue
        names = tuple(i.written for i in items)
        processed = sorted({i.herb for i in items if i.herb != root})
        sources = [cat.herbs[h].parent_source for h in processed if cat.herbs[h].parent_source]
        findings.append(
            Finding(
                rule="duplicate_herb",
                severity=WARN,
                herbs=names,
                drugs=(),
                message_zh=f"重复用药：{'、'.join(names)}均为{root}（含炮制品）。",
                message_en=(
                    f"Duplicate herb: {', '.join(names)} are all {root} "
                    "(a herb and its processed form count as one)."
                ),
                source="; ".join(sources)
                or "the same herb written twice (reference names resolved by the catalogue)",
            )
        )
    return findings


# --- herb–drug interactions --------------------------------------------------------------

_GRADE = re.compile(r"\b(major|moderate|minor)\b[^(;]*(?:\(([^)]*)\))?", re.IGNORECASE)
_LEVEL = {"major": BLOCK, "moderate": WARN, "minor": INFO}


def interaction_severity(
    severity: str, drug_terms: frozenset[str], row_terms: frozenset[str]
) -> str:
    """Map the row's grade to block/warn/info. A grade qualified by one of the row's
    drugs ("major (warfarin, per Ge 2014)") applies to that drug only; the others get
    the general grade ("moderate overall", or an unqualified one)."""
    general = None
    for segment in severity.split(";"):
        match = _GRADE.search(segment)
        if match is None:
            continue
        level = _LEVEL[match.group(1).lower()]
        qualifier = match.group(2) or ""
        target = drug_term(qualifier.split(",")[0]) if qualifier else ""
        if target in row_terms:
            if target in drug_terms:
                return level
            continue
        if general is None:
            general = level
    return general or WARN


def herb_drug(
    herbs: Sequence[PrescribedHerb], drugs: Sequence[DrugInUse], cat: Catalogue
) -> list[Finding]:
    findings = []
    for item in herbs:
        rows = next(
            (cat.interactions_by_herb[n] for n in item.lineage if n in cat.interactions_by_herb),
            (),
        )
        for row in rows:
            for drug in drugs:
                if not (row.terms & drug.terms):
                    continue
                where_zh = "" if drug.origin in ("request", "") else f"（{drug.origin}）"
                where_en = "" if drug.origin in ("request", "") else f" ({drug.origin})"
                findings.append(
                    Finding(
                        rule="herb_drug_interaction",
                        severity=interaction_severity(row.severity, drug.terms, row.terms),
                        herbs=(item.written,),
                        drugs=(drug.written,),
                        message_zh=(
                            f"{item.written}与{drug.written}{where_zh}可能相互作用"
                            f"（{row.drug_or_class}）：{row.effect}。处理：{row.management}。"
                        ),
                        message_en=(
                            f"{item.written} with {drug.written}{where_en} "
                            f"({row.drug_or_class}): {row.effect}. Mechanism: {row.mechanism}. "
                            f"Management: {row.management}. Grade: {row.severity}; "
                            f"confidence: {row.confidence}."
                        ),
                        source=row.source,
                    )
                )
    return findings


# --- allergies --------------------------------------------------------------------------


def _mentions(text: str, name: str) -> bool:
    if not name:
        return False
    if re.search(r"[A-Za-z]", name):
        return re.search(rf"(?<![a-z]){re.escape(name.lower())}(?![a-z])", text.lower()) is not None
    return name in text


def allergies(
    herbs: Sequence[PrescribedHerb],
    drugs: Sequence[DrugInUse],
    recorded: Sequence[AllergyEntry],
    cat: Catalogue,
) -> list[Finding]:
    findings = []
    for allergy in recorded:
        for item in herbs:
            names = {item.written, *item.lineage}
            for name in list(names):
                herb = cat.herbs.get(name)
                if herb is not None:
                    names.update(herb.aliases)
                    if herb.latin:
                        names.add(herb.latin)
            if any(_mentions(allergy.substance, n) for n in names):
                findings.append(_allergy_finding(allergy, herbs=(item.written,), drugs=()))
        for drug in drugs:
            names = {drug.written}
            if drug.drug is not None:
                names |= {drug.drug.name_en, drug.drug.name_zh, *drug.drug.synonyms}
            if any(_mentions(allergy.substance, n) for n in names) or _mentions(
                drug.written, allergy.substance
            ):
                findings.append(_allergy_finding(allergy, herbs=(), drugs=(drug.written,)))
    return findings


def _allergy_finding(
    allergy: AllergyEntry, *, herbs: tuple[str, ...], drugs: tuple[str, ...]
) -> Finding:
    what = "、".join(herbs + drugs)
    return Finding(
        rule="allergy",
        severity=BLOCK,
        herbs=herbs,
        drugs=drugs,
        message_zh=f"患者有过敏记录：{allergy.substance}；处方含{what}。",
        message_en=f"Recorded allergy to {allergy.substance}; the prescription contains {what}.",
        source=allergy.origin,
    )
