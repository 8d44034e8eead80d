"""The TCM safety check as one pure function.

    from medalliance.domains.tcm.safety import check, HerbDose

    findings = check(
        [HerbDose("附子", 9), HerbDose("半夏", 9), "甘草"],   # a bare name: no dose rules
        drugs=["warfarin", "地高辛"],
        pregnant=False,
        allergies=["penicillin"],
    )
    for f in findings:
        f.rule, f.severity, f.herbs, f.drugs, f.message_zh, f.message_en, f.source

``check`` reads only the reference data shipped in the package (no database, no
clock), so a herb recommender can call it on every candidate. An unknown herb name
raises ``UnknownHerb`` (an ``InvalidInput`` with ``suggestions``); a dose that is not
a positive number raises ``InvalidInput`` naming the herb. Findings come most severe
first. The rule data has not been clinically reviewed (``NOT_REVIEWED``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from medalliance.domains.tcm.catalogue import Catalogue, catalogue, drug_term
from medalliance.domains.tcm.entries import Drug
from medalliance.domains.tcm.safety import rules
from medalliance.domains.tcm.safety.rules import (
    BLOCK,
    INFO,
    RULES,
    SEVERITY_ORDER,
    WARN,
    AllergyEntry,
    DrugInUse,
    Finding,
    PrescribedHerb,
)
from medalliance.kernel.errors import InvalidInput

__all__ = [
    "BLOCK",
    "INFO",
    "NOT_REVIEWED",
    "RULES",
    "WARN",
    "AllergyEntry",
    "DrugInUse",
    "Finding",
    "HerbDose",
    "UnknownHerb",
    "check",
    "check_resolved",
    "resolve_drug",
    "resolve_herbs",
]

NOT_REVIEWED = {
    "zh": "规则数据未经临床审核，仅供参考；每条提示注明其来源。",
    "en": "The rule data has not been clinically reviewed; each finding names its source.",
}


@dataclass(frozen=True, slots=True)
class HerbDose:
    name: str
    dose_g: float | None = None


class UnknownHerb(InvalidInput):
    code = "unknown-herb"
    title = "Unknown herb"


def resolve_herbs(
    herbs: Sequence[str | HerbDose], *, field: str = "herbs", cat: Catalogue | None = None
) -> list[PrescribedHerb]:
    """Resolve written names against the reference data; validate doses."""
    cat = cat or catalogue()
    resolved = []
    for index, item in enumerate(herbs):
        entry = HerbDose(item) if isinstance(item, str) else item
        herb = cat.resolve(entry.name)
        if herb is None:
            raise UnknownHerb(
                f"Unknown herb {entry.name!r} at {field}.{index}.name: it is not in the "
                "reference data. Did you mean one of the suggestions?",
                field=f"{field}.{index}.name",
                suggestions=cat.suggestions(entry.name),
            )
        dose = entry.dose_g
        if dose is not None and (
            isinstance(dose, bool)
            or not isinstance(dose, int | float)
            or not math.isfinite(dose)
            or dose <= 0
        ):
            raise InvalidInput(
                f"{field}.{index}.dose_g must be a number of grams above 0 (got {dose!r}).",
                field=f"{field}.{index}.dose_g",
            )
        resolved.append(
            PrescribedHerb(
                written=entry.name.strip(),
                herb=herb,
                lineage=cat.lineage(herb),
                dose_g=None if dose is None else float(dose),
            )
        )
    return resolved


def resolve_drug(written: str, origin: str = "request") -> DrugInUse:
    drug, terms = _drug_terms(written.strip())
    return DrugInUse(written=written.strip(), drug=drug, terms=terms, origin=origin)


@lru_cache(maxsize=4096)
def _drug_terms(written: str) -> tuple[Drug | None, frozenset[str]]:
    """The dictionary entry a drug name stands for (by English generic name, Chinese
    name or synonym; "苯磺酸氨氯地平片" and "warfarin sodium 3 mg" are found by the
    longest name they contain), and the names and classes it matches rows on."""
    cat = catalogue()
    term = drug_term(written)
    drug = cat.drug_index.get(term)
    if drug is None:
        best = ""
        for name, candidate in cat.drug_index.items():
            if len(name) > len(best) and rules._mentions(written, name):
                best, drug = name, candidate
    terms = {term}
    if drug is not None:
        terms |= {drug_term(n) for n in (drug.name_en, *drug.synonyms, *drug.classes)}
    return drug, frozenset(terms)


def check(
    herbs: Sequence[str | HerbDose],
    *,
    drugs: Iterable[str | DrugInUse] = (),
    pregnant: bool | None = None,
    allergies: Iterable[str | AllergyEntry] = (),
) -> list[Finding]:
    """Every finding for these herbs (names, optionally with grams per day), against
    these Western drugs, pregnancy status (None: unknown, no pregnancy findings) and
    recorded allergies. Pure: reads only the shipped reference data."""
    cat = catalogue()
    return check_resolved(
        resolve_herbs(herbs, cat=cat),
        drugs=[d if isinstance(d, DrugInUse) else resolve_drug(d) for d in drugs],
        pregnant=pregnant,
        allergies=[
            a if isinstance(a, AllergyEntry) else AllergyEntry(a, "request") for a in allergies
        ],
        cat=cat,
    )


def check_resolved(
    herbs: Sequence[PrescribedHerb],
    *,
    drugs: Sequence[DrugInUse] = (),
    pregnant: bool | None = None,
    allergies: Sequence[AllergyEntry] = (),
    cat: Catalogue | None = None,
) -> list[Finding]:
    cat = cat or catalogue()
    findings = [
        *rules.incompatible_pairs(herbs, cat),
        *rules.pregnancy(herbs, pregnant, cat),
        *rules.dose_limits(herbs, cat),
        *rules.duplicates(herbs, cat),
        *rules.herb_drug(herbs, drugs, cat),
        *rules.allergies(herbs, drugs, allergies, cat),
    ]
    findings.sort(key=lambda f: (SEVERITY_ORDER[f.severity], RULES.index(f.rule)))
    return findings
