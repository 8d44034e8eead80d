"""The TCM reference data, loaded once from the CSV files shipped in ``reference/``
(see reference/PROVENANCE.md) into immutable in-memory structures.

Every herb name the data uses is known: the 251 monographs of herbs.csv, and the
names that only the rule files or the formula compositions use (藜芦, 制川乌 …).
Written names resolve to a herb: ChP2020 monograph titles and the formula files'
"as written" names are aliases; processed forms (法半夏, 炙甘草 …) are herbs of their
own whose parent is the raw herb, as processed_forms.csv records with the file and
note of the reference data that says so.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from functools import cache
from importlib import resources
from types import MappingProxyType

from pypinyin import Style, lazy_pinyin
from rapidfuzz import fuzz, process

from medalliance.domains.tcm.entries import (
    DoseRange,
    Drug,
    Formula,
    FormulaHerb,
    Herb,
    IncompatiblePair,
    Interaction,
    PregnancyEntry,
    initials_of,
)

REFERENCE_PACKAGE = "medalliance.domains.tcm.reference"
TOXICITY_GRADES = ("小毒", "有毒", "大毒")  # mild, toxic, highly toxic (ChP/textbook wording)


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files(REFERENCE_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def compact_pinyin(text: str) -> str:
    """Lower-case toneless pinyin without spaces or apostrophes (ü written v)."""
    return re.sub(r"[\s'’-]", "", text.lower().replace("ü", "v"))


def _pinyin_of(name: str) -> str:
    return "".join(lazy_pinyin(name, style=Style.NORMAL)).capitalize()


def drug_term(text: str) -> str:
    """Normal form for comparing drug and class names: lower case, β for beta,
    no trailing plural s ("ACE inhibitors" = "ace inhibitor")."""
    term = re.sub(r"\s+", " ", text.strip().lower())
    term = re.sub(r"^beta[- ]", "β-", term)
    if term.endswith("s") and len(term) > 3 and not term.endswith("ss"):
        term = term[:-1]
    return term


def _split_terms(text: str) -> list[str]:
    """ "warfarin (vitamin K antagonists)" → warfarin, vitamin K antagonists."""
    inner = re.findall(r"\(([^)]*)\)", text)
    outer = re.sub(r"\([^)]*\)", "", text)
    parts: list[str] = []
    for chunk in [outer, *inner]:
        parts.extend(re.split(r",| / |/", chunk))
    return [p.strip() for p in parts if p.strip()]


def _split_herbs(text: str) -> list[str]:
    """ "石膏 / 龙骨 / 牡蛎 / 赭石 (mineral medicinals)" → the four herbs."""
    return [p.strip() for p in re.sub(r"\([^)]*\)", "", text).split("/") if p.strip()]


class Catalogue:
    """Immutable lookups over the reference data; build it with ``catalogue()``."""

    def __init__(self) -> None:
        herbs: dict[str, Herb] = {}
        aliases: dict[str, str] = {}
        extra_pinyin: dict[str, str] = {}
        extra_latin: dict[str, str] = {}

        herb_rows = _rows("herbs.csv")
        for r in herb_rows:
            herbs[r["name_zh"]] = _herb_from_row(r)
            title = r["chp2020_title"]
            # A ChP monograph under another title (紫苏叶, 地黄, 赭石 …) names the same herb.
            if title and title != r["name_zh"]:
                aliases[title] = r["name_zh"]

        incompat_rows = _rows("incompatibilities.csv")
        pregnancy_rows = _rows("pregnancy.csv")
        interaction_rows = _rows("herb_drug_interactions.csv")
        for r in incompat_rows:
            for side in ("a", "b"):
                extra_pinyin.setdefault(r[f"herb_{side}_zh"], r[f"herb_{side}_pinyin"])
                extra_latin.setdefault(r[f"herb_{side}_zh"], r[f"herb_{side}_latin"])
        for r in pregnancy_rows:
            extra_pinyin.setdefault(r["name_zh"], r["pinyin"])
            extra_latin.setdefault(r["name_zh"], r["latin"])
        for r in interaction_rows:
            names = _split_herbs(r["herb_zh"])
            if len(names) == 1:
                extra_pinyin.setdefault(names[0], r["herb_pinyin"])
                extra_latin.setdefault(names[0], r["herb_latin"])

        formula_herb_rows = _rows("formula_herbs.csv")
        for r in formula_herb_rows:
            written, canonical = r["herb_as_written"], r["herb_canonical_zh"]
            if written != canonical and written not in herbs:
                aliases.setdefault(written, canonical)

        # Processed forms are herbs with a parent (they take the place of an alias).
        for r in _rows("processed_forms.csv"):
            name = r["name_zh"]
            aliases.pop(name, None)
            herbs[name] = Herb(
                name_zh=name,
                pinyin=extra_pinyin.get(name) or _pinyin_of(name),
                latin=extra_latin.get(name, ""),
                parent=r["parent_zh"],
                parent_source=f"processed_forms.csv: {r['source']}",
            )

        def ensure(name: str) -> None:
            if name in herbs or name in aliases:
                return
            herbs[name] = Herb(
                name_zh=name,
                pinyin=extra_pinyin.get(name) or _pinyin_of(name),
                latin=extra_latin.get(name, ""),
            )

        for r in formula_herb_rows:
            ensure(r["herb_canonical_zh"])
        for name in [*extra_pinyin, *(r["parent_zh"] for r in _rows("processed_forms.csv"))]:
            ensure(name)
        for r in interaction_rows:
            for name in _split_herbs(r["herb_zh"]):
                ensure(name)

        by_target: dict[str, list[str]] = {}
        for alias, target in aliases.items():
            by_target.setdefault(target, []).append(alias)
        for target, names in by_target.items():
            if target in herbs:
                herbs[target] = replace(herbs[target], aliases=tuple(sorted(names)))

        self.herbs: Mapping[str, Herb] = MappingProxyType(herbs)
        self.aliases: Mapping[str, str] = MappingProxyType(aliases)

        self.pairs: Mapping[frozenset[str], IncompatiblePair] = MappingProxyType(
            {frozenset((p.herb_a, p.herb_b)): p for p in (self._pair(r) for r in incompat_rows)}
        )
        self.pregnancy: Mapping[str, PregnancyEntry] = MappingProxyType(
            {e.herb: e for e in (self._pregnancy(r) for r in pregnancy_rows)}
        )
        interactions = tuple(self._interaction(i, r) for i, r in enumerate(interaction_rows))
        self.interactions: tuple[Interaction, ...] = interactions
        by_herb: dict[str, list[Interaction]] = {}
        for item in interactions:
            for herb in item.herbs:
                by_herb.setdefault(herb, []).append(item)
        self.interactions_by_herb: Mapping[str, tuple[Interaction, ...]] = MappingProxyType(
            {k: tuple(v) for k, v in by_herb.items()}
        )

        drugs = tuple(
            Drug(
                name_en=r["drug_en"],
                name_zh=r["drug_zh"],
                synonyms=tuple(s for s in r["synonyms"].split(";") if s),
                classes=tuple(c for c in r["classes"].split(";") if c),
            )
            for r in _rows("drug_names.csv")
        )
        self.drugs: tuple[Drug, ...] = drugs
        drug_index: dict[str, Drug] = {}
        for d in drugs:
            for name in (d.name_en, d.name_zh, *d.synonyms):
                drug_index[drug_term(name)] = d
        self.drug_index: Mapping[str, Drug] = MappingProxyType(drug_index)

        rows_by_formula: dict[str, list[dict[str, str]]] = {}
        for r in formula_herb_rows:
            rows_by_formula.setdefault(r["formula_id"], []).append(r)
        formulas = tuple(
            self._formula(r, rows_by_formula.get(r["formula_id"], []))
            for r in _rows("formulas.csv")
        )
        self.formulas: Mapping[str, Formula] = MappingProxyType({f.formula_id: f for f in formulas})
        formula_names: dict[str, str] = {}
        for f in formulas:
            formula_names[f.name_zh] = f.formula_id
            if f.alt_name:
                formula_names.setdefault(f.alt_name, f.formula_id)
        self.formula_names: Mapping[str, str] = MappingProxyType(formula_names)

        self._search_keys = tuple(
            (h.name_zh, _herb_keys(h)) for h in sorted(herbs.values(), key=_herb_order)
        )
        self._suggest_names = (*herbs, *aliases)
        self._suggest_pinyin = tuple(
            compact_pinyin(herbs[aliases.get(n, n)].pinyin) for n in self._suggest_names
        )

    # --- resolution -----------------------------------------------------------------

    def resolve(self, name: str) -> str | None:
        """The herb a written name stands for, or None if the data does not know it."""
        name = name.strip()
        if name in self.herbs:
            return name
        return self.aliases.get(name)

    def lineage(self, name: str) -> tuple[str, ...]:
        """The herb and its parents (法半夏 → 法半夏, 半夏): the names rules match on."""
        chain = [name]
        seen = {name}
        parent = self.herbs[name].parent
        while parent is not None and parent not in seen:
            chain.append(parent)
            seen.add(parent)
            parent = self.herbs[parent].parent if parent in self.herbs else None
        return tuple(chain)

    def root(self, name: str) -> str:
        return self.lineage(name)[-1]

    def dose_of(self, name: str) -> tuple[DoseRange | None, str | None, str]:
        """The dose range and toxicity that apply to a herb: its own, else its parent's
        (a processed form has no monograph of its own in the data). Returns the herb
        whose data applies as the third item."""
        for candidate in self.lineage(name):
            herb = self.herbs.get(candidate)
            if herb is not None and (herb.dose is not None or herb.toxicity is not None):
                return herb.dose, herb.toxicity, candidate
        return None, None, name

    def suggestions(self, name: str, limit: int = 5) -> list[dict[str, str]]:
        """The closest known names by characters and by pinyin (homophones: 当规 → 当归)."""
        query = name.strip()
        scores: dict[str, float] = {}
        for match, score, _index in process.extract(
            query, self._suggest_names, scorer=fuzz.ratio, limit=limit * 2
        ):
            scores[match] = max(scores.get(match, 0.0), score)
        spoken = compact_pinyin("".join(lazy_pinyin(query, style=Style.NORMAL)))
        if spoken:
            for _match, score, index in process.extract(
                spoken, self._suggest_pinyin, scorer=fuzz.ratio, limit=limit * 2
            ):
                written = self._suggest_names[index]
                scores[written] = max(scores.get(written, 0.0), score)
        # One suggestion per herb, under its own name (not 全当归, 川当归 … for 当归).
        by_herb: dict[str, float] = {}
        for written, score in scores.items():
            herb_name = self.aliases.get(written, written)
            by_herb[herb_name] = max(by_herb.get(herb_name, 0.0), score)
        best = sorted(by_herb.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return [{"name_zh": name, "pinyin": self.herbs[name].pinyin} for name, _ in best]

    # --- search ---------------------------------------------------------------------

    def search_herbs(self, q: str, limit: int = 20) -> list[Herb]:
        """By characters, pinyin, pinyin initials ("dg" → 当归), Latin or English name;
        exact matches first, then prefixes, then substrings."""
        needle = q.strip().lower()
        if not needle:
            return []
        spoken = compact_pinyin(needle)
        ranked: list[tuple[int, int, str]] = []
        for order, (name, keys) in enumerate(self._search_keys):
            rank = _rank(needle, spoken, keys)
            if rank is not None:
                ranked.append((rank, order, name))
        ranked.sort()
        return [self.herbs[name] for _, _, name in ranked[:limit]]

    def search_formulas(self, q: str, limit: int = 20) -> list[Formula]:
        needle = q.strip().lower()
        if not needle:
            return []
        spoken = compact_pinyin(needle)
        ranked: list[tuple[int, str]] = []
        for f in self.formulas.values():
            keys = (
                (f.name_zh, f.alt_name),
                (compact_pinyin(f.pinyin),),
                (initials_of(f.name_zh),),
                (f.name_en.lower(),),
            )
            rank = _rank(needle, spoken, keys)
            if rank is not None:
                ranked.append((rank, f.formula_id))
        ranked.sort()
        return [self.formulas[fid] for _, fid in ranked[:limit]]

    def formula(self, key: str) -> Formula | None:
        """By id (F001) or name (麻黄汤, or its alternative name)."""
        key = key.strip()
        if key in self.formulas:
            return self.formulas[key]
        fid = self.formula_names.get(key)
        return None if fid is None else self.formulas[fid]

    # --- rows -----------------------------------------------------------------------

    def _named(self, written: str) -> str:
        return self.resolve(written) or written

    def _pair(self, r: Mapping[str, str]) -> IncompatiblePair:
        return IncompatiblePair(
            rule=r["rule"],
            herb_a=self._named(r["herb_a_zh"]),
            herb_b=self._named(r["herb_b_zh"]),
            verse=r["classical_verse"],
            chp2020_stated=r["chp2020_stated"] == "yes",
            chp2020_text=r["chp2020_attention_verbatim"],
            source=r["source"],
        )

    def _pregnancy(self, r: Mapping[str, str]) -> PregnancyEntry:
        return PregnancyEntry(
            herb=self._named(r["name_zh"]),
            written=r["name_zh"],
            level=r["level"],
            level_basis=r["level_basis"],
            wording=r["chp2020_attention_verbatim"] or r["textbook_text"],
            conflict=r["conflict"] == "yes",
            source=r["source"],
        )

    def _interaction(self, row: int, r: Mapping[str, str]) -> Interaction:
        terms = {drug_term(t) for t in _split_terms(r["drug_or_class"])}
        terms |= {drug_term(t) for t in _split_terms(r["drug_examples"])}
        return Interaction(
            row=row + 2,  # the CSV line (header is line 1)
            herbs=tuple(self._named(n) for n in _split_herbs(r["herb_zh"])),
            written_herbs=r["herb_zh"],
            drug_or_class=r["drug_or_class"],
            drug_examples=r["drug_examples"],
            terms=frozenset(terms),
            effect=r["effect"],
            mechanism=r["mechanism"],
            severity=r["severity"],
            management=r["management"],
            confidence=r["confidence"],
            source=r["source"],
        )

    def _formula(self, r: Mapping[str, str], herb_rows: list[dict[str, str]]) -> Formula:
        items = tuple(
            FormulaHerb(
                seq=int(h["seq"]),
                written=h["herb_as_written"],
                herb=self._named(h["herb_as_written"]),
                dose_min=_float(h["dose_min"]),
                dose_max=_float(h["dose_max"]),
                unit=h["unit"],
                dose_text=h["modern_dose_text"],
                processing=h["processing_and_classical_dose"],
            )
            for h in herb_rows
        )
        return Formula(
            formula_id=r["formula_id"],
            name_zh=r["name_zh"],
            alt_name=r["alt_name"],
            pinyin=r["pinyin"],
            name_en=r["name_en"],
            source_text=r["source_text"],
            category_zh=r["category_zh"],
            category_en=r["category_en"],
            functions_zh=r["functions_zh"],
            pattern_zh=r["pattern_zh"],
            pattern_en=r["pattern_en"],
            dose_basis=r["dose_basis"],
            herbs=tuple(sorted(items, key=lambda i: i.seq)),
            source=r["source"],
        )

    def iter_herbs(self) -> Iterator[Herb]:
        return iter(self.herbs.values())


def _herb_order(h: Herb) -> tuple[int, str, str]:
    # Monographs first in their book order, then the other names.
    return (0 if h.herb_id else 1, h.herb_id or "", h.name_zh)


def _herb_keys(h: Herb) -> tuple[tuple[str, ...], ...]:
    return (
        (h.name_zh, *h.aliases),
        (compact_pinyin(h.pinyin),),
        (h.initials,),
        (h.latin.lower(), h.english.lower()),
    )


def _rank(needle: str, spoken: str, keys: tuple[tuple[str, ...], ...]) -> int | None:
    """0 exact, 1 prefix, 2 substring (pinyin compared without spaces); None: no match."""
    best: int | None = None
    for group_index, group in enumerate(keys):
        probe = spoken if group_index in (1, 2) else needle
        for key in group:
            if not key or not probe:
                continue
            if key == probe:
                rank = 0
            elif key.startswith(probe):
                rank = 1
            elif len(probe) >= 2 and probe in key:
                rank = 2
            else:
                continue
            best = rank if best is None else min(best, rank)
    return best


def _herb_from_row(r: Mapping[str, str]) -> Herb:
    return Herb(
        name_zh=r["name_zh"],
        pinyin=r["pinyin"],
        herb_id=r["id"],
        latin=r["latin_pharmaceutical"],
        english=r["english_common"],
        category_zh=r["category_zh"],
        category_en=r["category_en"],
        nature=r["nature"],
        flavours=r["flavours"],
        meridians=r["meridians"],
        toxicity=r["toxicity"],
        dose=_dose_range(r),
    )


def _dose_range(r: Mapping[str, str]) -> DoseRange | None:
    """ChP2020 where it gives both bounds, the textbook otherwise (as the issue asks)."""
    chp_min, chp_max = _float(r["dose_chp2020_min_g"]), _float(r["dose_chp2020_max_g"])
    if chp_min is not None and chp_max is not None:
        return DoseRange(
            chp_min,
            chp_max,
            "ChP2020",
            r["dose_chp2020_text"],
            f"ChP2020 一部 {r['chp2020_entry']} via {r['source_chp2020']}".strip(),
        )
    tb_min, tb_max = _float(r["dose_textbook_min_g"]), _float(r["dose_textbook_max_g"])
    if tb_min is not None and tb_max is not None:
        return DoseRange(tb_min, tb_max, "textbook", r["dose_textbook_text"], r["source_textbook"])
    return None


@cache
def catalogue() -> Catalogue:
    """The one shared catalogue (built on first use, a few tenths of a second)."""
    return Catalogue()
