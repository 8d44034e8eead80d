"""The nine-constitution questionnaire (中医体质分类与判定, ZYYXH/T157-2009) as pure
functions: the items are read from the shipped reference/constitution.md, scores
and the standard's judgement computed from the answers.

Items that several scales share (疲乏, 比别人容易患感冒 …) are asked once and have one
id: the code of the first biased scale that lists them and their number there
(``B1``, ``C5``). 平和质 reverse-scores its starred items. 湿热质 has a female-only
and a male-only item; each respondent answers one of them (6 items scored).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

from medalliance.domains.tcm.catalogue import REFERENCE_PACKAGE

BALANCED = "A"
SCALE_NAMES = {  # code → (中文, English), constitution.md §1
    "A": ("平和质", "Balanced"),
    "B": ("气虚质", "Qi deficiency"),
    "C": ("阳虚质", "Yang deficiency"),
    "D": ("阴虚质", "Yin deficiency"),
    "E": ("痰湿质", "Phlegm-dampness"),
    "F": ("湿热质", "Damp-heat"),
    "G": ("血瘀质", "Blood stasis"),
    "H": ("气郁质", "Qi stagnation"),
    "I": ("特禀质", "Inherited special"),
}
RESULT_ZH = {"yes": "是", "basically_yes": "基本是", "tendency": "倾向是", "no": "否"}


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    text: str
    sex: str | None  # "female" / "male" for the sex-specific 湿热质 items


@dataclass(frozen=True, slots=True)
class Scale:
    code: str
    name_zh: str
    name_en: str
    items: tuple[tuple[str, bool], ...]  # (item id, reverse-scored)


@dataclass(frozen=True, slots=True)
class Questionnaire:
    items: dict[str, Item]
    scales: tuple[Scale, ...]

    def required(self, sex: str) -> list[str]:
        """Item ids a respondent of this sex answers (both sex items when unknown)."""
        return [i.item_id for i in self.items.values() if i.sex is None or i.sex == sex]


@dataclass(frozen=True, slots=True)
class Assessment:
    scores: dict[str, float]  # transformed score 0–100 per scale code
    results: dict[str, str]  # yes / basically_yes / tendency / no
    summary_zh: str
    summary_en: str


_SCALE_LINE = re.compile(r"^\*\*(\S+质) \(([^)]*)\)\*\*: (.*)$")
_ITEM = re.compile(r"\((\d+)\) ([^(]+?(?:（[^）]*）[^(]*?)*)(?=\s*\(\d+\)|$)")


@cache
def questionnaire() -> Questionnaire:
    text = resources.files(REFERENCE_PACKAGE).joinpath("constitution.md").read_text("utf-8")
    code_of = {zh: code for code, (zh, _) in SCALE_NAMES.items()}
    items: dict[str, Item] = {}
    id_by_text: dict[str, str] = {}
    parsed: dict[str, list[tuple[str, bool]]] = {}
    for line in text.splitlines():
        match = _SCALE_LINE.match(line.strip())
        if match is None:
            continue
        code = code_of[match.group(1)]
        scale: list[tuple[str, bool]] = []
        for number, raw in _ITEM.findall(match.group(3)):
            wording = raw.strip()
            reverse = wording.endswith("*")
            wording = wording.rstrip("*").strip()
            sex = "female" if "限女性" in wording else "male" if "限男性" in wording else None
            item_id = id_by_text.get(wording)
            if item_id is None:
                item_id = f"{code}{number}"
                id_by_text[wording] = item_id
                items[item_id] = Item(item_id, wording, sex)
            scale.append((item_id, reverse))
        parsed[code] = scale
    scales = tuple(
        Scale(code, SCALE_NAMES[code][0], SCALE_NAMES[code][1], tuple(parsed[code]))
        for code in SCALE_NAMES
    )
    return Questionnaire(items=items, scales=scales)


def missing_items(answers: Mapping[str, int], sex: str) -> list[str]:
    """The items still to answer. With the sex unknown, either 湿热质 sex item will do."""
    q = questionnaire()
    sex_items = [i.item_id for i in q.items.values() if i.sex is not None]
    missing = [i for i in q.required(sex) if i not in answers and i not in sex_items]
    applicable = [i for i in sex_items if q.items[i].sex == sex] or sex_items
    if not any(i in answers for i in applicable):
        missing.extend(applicable)
    return missing


def transformed(raw: int, count: int) -> float:
    """转化分 = (原始分 − 条目数) / (条目数 × 4) × 100 (constitution.md §3)."""
    return (raw - count) / (count * 4) * 100


def biased_result(score: float) -> str:
    """≥ 40 是, 30–39 倾向是, < 30 否 (constitution.md §4)."""
    if score >= 40:
        return "yes"
    if score >= 30:
        return "tendency"
    return "no"


def balanced_result(balanced: float, others: list[float]) -> str:
    """平和质: ≥ 60 and all others < 30 是; ≥ 60 and all others < 40 基本是; else 否."""
    if balanced >= 60 and all(s < 30 for s in others):
        return "yes"
    if balanced >= 60 and all(s < 40 for s in others):
        return "basically_yes"
    return "no"


def assess(answers: Mapping[str, int], sex: str) -> Assessment:
    """Score a complete questionnaire (call ``missing_items`` first)."""
    q = questionnaire()
    scores: dict[str, float] = {}
    for scale in q.scales:
        values = []
        for item_id, reverse in scale.items:
            if q.items[item_id].sex is not None and item_id not in answers:
                continue  # the other sex's 湿热质 item
            value = answers[item_id]
            values.append(6 - value if reverse else value)
        scores[scale.code] = transformed(sum(values), len(values))
    # Biased types first: the balanced judgement depends on all of them (§4 note b).
    results = {code: biased_result(s) for code, s in scores.items() if code != BALANCED}
    results[BALANCED] = balanced_result(scores[BALANCED], [scores[c] for c in results])
    return Assessment(
        scores={c: round(s, 2) for c, s in scores.items()},
        results={c: results[c] for c in SCALE_NAMES},
        summary_zh=_summary_zh(results),
        summary_en=_summary_en(results),
    )


def _summary_zh(results: Mapping[str, str]) -> str:
    yes = [SCALE_NAMES[c][0] for c, r in results.items() if c != BALANCED and r == "yes"]
    tendency = [SCALE_NAMES[c][0] for c, r in results.items() if c != BALANCED and r == "tendency"]
    balanced = results[BALANCED]
    parts = []
    if balanced == "yes":
        parts.append("平和质")
    elif balanced == "basically_yes":
        parts.append("基本是平和质")
    if yes:
        parts.append("、".join(yes))
    if tendency:
        parts.append("有" + "、".join(tendency) + "倾向")
    return "，".join(parts) or "未判定为任何体质"


def _summary_en(results: Mapping[str, str]) -> str:
    yes = [SCALE_NAMES[c][1] for c, r in results.items() if c != BALANCED and r == "yes"]
    tendency = [SCALE_NAMES[c][1] for c, r in results.items() if c != BALANCED and r == "tendency"]
    balanced = results[BALANCED]
    parts = []
    if balanced == "yes":
        parts.append("Balanced")
    elif balanced == "basically_yes":
        parts.append("Basically balanced")
    if yes:
        parts.append(", ".join(yes))
    if tendency:
        parts.append("tendency to " + ", ".join(tendency))
    return "; ".join(parts) or "no type determined"
