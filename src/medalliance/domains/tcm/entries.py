"""The rows of the TCM reference data as immutable records (built by the catalogue)."""

from __future__ import annotations

from dataclasses import dataclass

from pypinyin import Style, lazy_pinyin


def initials_of(name: str) -> str:
    """Pinyin initials of a name in characters (当归 → dg)."""
    return "".join(s[0] for s in lazy_pinyin(name, style=Style.FIRST_LETTER) if s).lower()


@dataclass(frozen=True, slots=True)
class DoseRange:
    """A daily oral dose range in grams and where it comes from."""

    min_g: float
    max_g: float
    basis: str  # "ChP2020" or "textbook"
    text: str
    source: str


@dataclass(frozen=True, slots=True)
class Herb:
    name_zh: str
    pinyin: str
    herb_id: str | None = None  # H001… for the 251 monographs of herbs.csv
    latin: str = ""
    english: str = ""
    category_zh: str = ""
    category_en: str = ""
    nature: str = ""
    flavours: str = ""
    meridians: str = ""
    toxicity: str | None = None  # "none", 小毒, 有毒, 大毒; None where the data has no entry
    dose: DoseRange | None = None
    parent: str | None = None  # the raw herb of a processed form
    parent_source: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def initials(self) -> str:
        return initials_of(self.name_zh)


@dataclass(frozen=True, slots=True)
class FormulaHerb:
    seq: int
    written: str
    herb: str  # the resolved herb name
    dose_min: float | None
    dose_max: float | None
    unit: str
    dose_text: str
    processing: str


@dataclass(frozen=True, slots=True)
class Formula:
    formula_id: str
    name_zh: str
    alt_name: str
    pinyin: str
    name_en: str
    source_text: str
    category_zh: str
    category_en: str
    functions_zh: str
    pattern_zh: str
    pattern_en: str
    dose_basis: str
    herbs: tuple[FormulaHerb, ...]
    source: str

    @property
    def is_daily_dose(self) -> bool:
        return self.dose_basis.startswith("decoction, daily dose")


@dataclass(frozen=True, slots=True)
class IncompatiblePair:
    rule: str  # eighteen_incompatible | nineteen_antagonism
    herb_a: str
    herb_b: str
    verse: str
    chp2020_stated: bool
    chp2020_text: str
    source: str


@dataclass(frozen=True, slots=True)
class PregnancyEntry:
    herb: str
    written: str
    level: str  # contraindicated | caution
    level_basis: str
    wording: str
    conflict: bool
    source: str


@dataclass(frozen=True, slots=True)
class Interaction:
    row: int
    herbs: tuple[str, ...]
    written_herbs: str
    drug_or_class: str
    drug_examples: str
    terms: frozenset[str]
    effect: str
    mechanism: str
    severity: str
    management: str
    confidence: str
    source: str


@dataclass(frozen=True, slots=True)
class Drug:
    name_en: str
    name_zh: str
    synonyms: tuple[str, ...]
    classes: tuple[str, ...]
