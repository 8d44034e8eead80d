"""The reference catalogue: every name the data uses resolves, processed forms have
parents, lookups by characters, pinyin, initials and Latin."""

from __future__ import annotations

import csv
from importlib import resources

import pytest

from medalliance.domains.tcm.catalogue import catalogue


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("medalliance.domains.tcm.reference").joinpath(name).read_text("utf-8")
    return list(csv.DictReader(text.splitlines()))


def test_every_name_in_the_reference_files_resolves() -> None:
    cat = catalogue()
    names = {r["name_zh"] for r in _rows("herbs.csv")}
    names |= {r[k] for r in _rows("incompatibilities.csv") for k in ("herb_a_zh", "herb_b_zh")}
    names |= {r["name_zh"] for r in _rows("pregnancy.csv")}
    names |= {
        r[k] for r in _rows("formula_herbs.csv") for k in ("herb_as_written", "herb_canonical_zh")
    }
    names |= {r["name_zh"] for r in _rows("processed_forms.csv")}
    assert not [n for n in names if cat.resolve(n) is None]
    assert len(cat.formulas) == 112
    assert sum(len(f.herbs) for f in cat.formulas.values()) == 728


def test_formula_written_names_resolve_to_the_datas_canonical_herb() -> None:
    cat = catalogue()
    processed = {r["name_zh"]: r["parent_zh"] for r in _rows("processed_forms.csv")}
    for row in _rows("formula_herbs.csv"):
        resolved = cat.resolve(row["herb_as_written"])
        assert cat.root(resolved) == cat.root(row["herb_canonical_zh"]), row  # type: ignore[arg-type]
        if row["herb_as_written"] in processed:
            assert cat.herbs[row["herb_as_written"]].parent == processed[row["herb_as_written"]]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("dg", "当归"),
        ("DG", "当归"),
        ("当归", "当归"),
        ("Danggui", "当归"),
        ("dang gui", "当归"),
        ("angelicae sinensis", "当归"),
        ("ginseng radix", "人参"),
        ("fabanxia", "法半夏"),
        ("nüzhenzi", "女贞子"),
    ],
)
def test_herb_search(q: str, expected: str) -> None:
    assert catalogue().search_herbs(q)[0].name_zh == expected


def test_formula_lookup_by_name_alias_pinyin_and_initials() -> None:
    cat = catalogue()
    assert cat.formula("F041").name_zh == "四君子汤"  # type: ignore[union-attr]
    assert cat.formula("地黄丸").name_zh == "六味地黄丸"  # type: ignore[union-attr]
    assert cat.search_formulas("sjzt")[0].name_zh == "四君子汤"
    assert cat.search_formulas("si jun zi")[0].name_zh == "四君子汤"
    assert cat.formula("no such formula") is None


def test_dose_basis_is_chp2020_where_present_else_textbook() -> None:
    cat = catalogue()
    zisu = cat.herbs["紫苏"].dose
    badou = cat.herbs["巴豆"].dose  # ChP: external use only → the textbook's oral dose
    assert zisu is not None and (zisu.basis, zisu.max_g) == ("ChP2020", 10.0)
    assert badou is not None and (badou.basis, badou.max_g) == ("textbook", 0.3)


def test_every_shipped_reference_file_has_its_provenance() -> None:
    folder = resources.files("medalliance.domains.tcm.reference")
    provenance = folder.joinpath("PROVENANCE.md").read_text("utf-8")
    shipped = [
        f.name
        for f in folder.iterdir()
        if f.name.endswith((".csv", ".md")) and f.name != "PROVENANCE.md"
    ]
    assert len(shipped) == 9
    assert all(f"`{name}`" in provenance for name in shipped)
