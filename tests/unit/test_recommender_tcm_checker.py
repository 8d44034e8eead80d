"""The recommender's suggestions pass through the TCM domain's reference rules."""

from __future__ import annotations

from medalliance.domains.recommender import service
from medalliance.domains.recommender.safety import NOT_CONNECTED, Severity, default_checker
from medalliance.domains.recommender.tcm_checker import NOT_IN_CATALOGUE_SOURCE
from medalliance.domains.tcm.catalogue import catalogue


def _blocking_partner(herb: str) -> str | None:
    """A herb that the Pharmacopoeia says must not be combined with ``herb``."""
    for pair in catalogue().pairs.values():
        if pair.chp2020_stated and herb in (pair.herb_a, pair.herb_b):
            return pair.herb_b if herb == pair.herb_a else pair.herb_a
    return None


def test_a_herb_incompatible_with_the_prescription_is_withheld_with_its_source() -> None:
    unchecked = service.recommend(symptoms=["咳嗽"], k=50, safety=NOT_CONNECTED)
    target, partner = next(
        (s.herb, p)
        for s in unchecked.suggestions
        if (p := _blocking_partner(s.herb)) is not None and p != s.herb
    )
    checked = service.recommend(
        symptoms=["咳嗽"], k=50, safety=default_checker(), current_herbs=[partner]
    )
    assert target not in [s.herb for s in checked.suggestions]
    withheld = {w.herb: w for w in checked.withheld}
    assert target in withheld
    finding = withheld[target].findings[0]
    assert finding.severity is Severity.BLOCK
    assert set(finding.herbs) == {target, partner}
    assert "ChP2020" in finding.source


def test_a_herb_outside_the_catalogue_is_shown_with_a_warning_not_passed_silently() -> None:
    names = [
        s.herb for s in service.recommend(symptoms=["咳嗽"], k=50, safety=NOT_CONNECTED).suggestions
    ]
    outside = next(n for n in names if catalogue().resolve(n) is None)
    findings = default_checker().check([outside])
    assert [(f.herbs, f.severity, f.source) for f in findings] == [
        ((outside,), Severity.WARN, NOT_IN_CATALOGUE_SOURCE)
    ]
