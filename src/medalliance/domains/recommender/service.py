"""Use cases: recommend herbs for named symptoms (through the safety hook) and look up
the symptom vocabulary. Pure functions over the shipped model; no database, no HTTP."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from medalliance.domains.recommender import dataset
from medalliance.domains.recommender.model import HerbModel, load_shipped
from medalliance.domains.recommender.safety import SafetyChecker, SafetyFinding, Severity
from medalliance.kernel.errors import InvalidInput

MIN_K, MAX_K = 1, 50
SEPARATORS = re.compile(r"[\s,，、;；]+")


@dataclass(frozen=True, slots=True)
class Suggestion:
    rank: int
    herb: str
    score: float
    findings: tuple[SafetyFinding, ...]  # warnings; blocked herbs are withheld instead


@dataclass(frozen=True, slots=True)
class Withheld:
    herb: str
    findings: tuple[SafetyFinding, ...]


@dataclass(frozen=True, slots=True)
class Recommendation:
    symptoms: tuple[str, ...]  # the recognised symptoms the ranking is based on
    unknown_symptoms: tuple[str, ...]  # not in the vocabulary: reported, never guessed
    suggestions: tuple[Suggestion, ...]
    withheld: tuple[Withheld, ...]
    safety_checker: str
    safety_checked: bool


@dataclass(frozen=True, slots=True)
class SymptomEntry:
    name: str
    pinyin: str
    prescriptions: int  # how many shipped prescriptions mention it


@cache
def shipped_model() -> HerbModel:
    return load_shipped()


def parse_names(text: str) -> list[str]:
    """Names separated by spaces (or commas, 、, ;), duplicates dropped, order kept."""
    return list(dict.fromkeys(part for part in SEPARATORS.split(text) if part))


def resolve(names: Sequence[str]) -> tuple[list[int], list[str], list[str]]:
    """(ids, known names, unknown names) for the given symptom names, exact match."""
    index = dataset.symptom_vocabulary().index
    ids, known, unknown = [], [], []
    for name in dict.fromkeys(names):
        if name in index:
            ids.append(index[name])
            known.append(name)
        else:
            unknown.append(name)
    return ids, known, unknown


def _validate(names: Sequence[str], k: int) -> None:
    if not MIN_K <= k <= MAX_K:
        raise InvalidInput(f"k must be between {MIN_K} and {MAX_K}, got {k}.", field="k")
    if not [n for n in names if n.strip()]:
        raise InvalidInput("Give at least one symptom.", field="symptoms")


def recommend(
    *,
    symptoms: Sequence[str],
    k: int,
    safety: SafetyChecker,
    current_herbs: Sequence[str] = (),
    model: HerbModel | None = None,
) -> Recommendation:
    """The k best herbs for the symptoms that pass ``safety``.

    Candidates are taken in score order; each is checked together with the herbs
    already in the prescription (``current_herbs``) and those already accepted. A
    blocking finding that names the candidate withholds it and the next one is tried.
    Herbs already in the prescription are not suggested again.
    """
    names = [n.strip() for n in symptoms if n.strip()]
    _validate(names, k)
    ids, known, unknown = resolve(names)
    if not ids:
        raise InvalidInput(
            "None of the symptoms is in the vocabulary: " + " ".join(unknown) + ".",
            field="symptoms",
            unknown_symptoms=unknown,
        )
    herb_names = dataset.herb_vocabulary().names
    scores = (model or shipped_model()).score_one(ids)
    order = np.argsort(-scores, kind="stable")
    present = set(current_herbs)
    accepted: list[Suggestion] = []
    withheld: list[Withheld] = []
    for h in order:
        if len(accepted) == k:
            break
        herb = herb_names[int(h)]
        if herb in present:
            continue
        prescription = [*current_herbs, *(s.herb for s in accepted), herb]
        findings = tuple(f for f in safety.check(prescription) if herb in f.herbs)
        if any(f.severity is Severity.BLOCK for f in findings):
            withheld.append(Withheld(herb, findings))
            continue
        accepted.append(Suggestion(len(accepted) + 1, herb, float(scores[h]), findings))
    return Recommendation(
        symptoms=tuple(known),
        unknown_symptoms=tuple(unknown),
        suggestions=tuple(accepted),
        withheld=tuple(withheld),
        safety_checker=safety.name,
        safety_checked=safety.performs_checks,
    )


@cache
def _symptom_entries() -> tuple[SymptomEntry, ...]:
    from pypinyin import lazy_pinyin

    counts = np.zeros(dataset.symptom_vocabulary().size, dtype=np.int64)
    for symptom_set in dataset.load_prescriptions().symptoms:
        counts[list(symptom_set)] += 1
    return tuple(
        SymptomEntry(name, "".join(lazy_pinyin(name)), int(counts[i]))
        for i, name in enumerate(dataset.symptom_vocabulary().names)
    )


def search_symptoms(query: str, *, limit: int = 20) -> list[SymptomEntry]:
    """Symptoms whose name contains ``query``, or whose toneless pinyin starts with it
    (``kesou`` → 咳嗽); the most frequent first. An empty query lists the most frequent."""
    needle = query.strip().lower().replace(" ", "")
    matches = [
        e
        for e in _symptom_entries()
        if not needle or needle in e.name or e.pinyin.startswith(needle)
    ]
    matches.sort(key=lambda e: (-e.prescriptions, e.name))
    return matches[:limit]
