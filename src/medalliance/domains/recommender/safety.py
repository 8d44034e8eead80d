"""The hook that puts every suggestion through a safety check before it is shown.

The recommender does not know TCM safety rules (十八反, 十九畏, pregnancy cautions,
toxicity): the TCM domain does (``domains/tcm/safety``). It plugs in
here as a ``SafetyChecker``: given a list of herb names (the prescription as it would be
with the suggestion added) it returns its findings, each naming the herbs involved, a
severity and its source. ``service.recommend`` requires a checker, walks the ranking
and withholds every candidate that a blocking finding names; warnings travel with the
suggestion. Patient-specific checks (pregnancy, allergies) are a checker built for that
patient: the recommender only ever calls ``check``.

Herb names: the SMGCN vocabulary uses plain Chinese herb names (甘草, 半夏, 附子 …, see
``data/herb_mapping.txt``), so a checker keyed by the catalogue's Chinese name matches
them directly; processed forms (炙甘草, 法半夏) are separate entries in both. Checked
against ``../shared/reference/tcm/herbs.csv`` (251 herbs): 239 names are identical; of
the other 12 some have a near form here (败酱草/败酱, 益智仁/益智, 京大戟/大戟) and some
only look alike (淡竹叶 is not 竹叶), so aliases need a reviewed table, never substring
matching. Most of the 753 SMGCN herbs are not in that catalogue at all: a checker should
say so (a warning) rather than pass them silently.

``default_checker()`` is the TCM domain's reference rules (``tcm_checker.py``) unless a
checker was installed. ``NOT_CONNECTED`` finds nothing and says so (tests use it): every
response carries the checker's name and whether a real check ran, so an unchecked
suggestion is never presented as checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Severity(StrEnum):
    BLOCK = "block"  # the suggestion is withheld
    WARN = "warn"  # shown, with the finding beside it


@dataclass(frozen=True, slots=True)
class SafetyFinding:
    herbs: tuple[str, ...]  # the herbs the finding is about
    severity: Severity
    message: str
    source: str  # where the rule comes from (reference, edition, section)


class SafetyChecker(Protocol):
    @property
    def name(self) -> str:
        """Shown with every recommendation, so the reader knows what was checked."""
        ...

    @property
    def performs_checks(self) -> bool:
        """False only for the placeholder that checks nothing."""
        ...

    def check(self, herbs: Sequence[str]) -> Sequence[SafetyFinding]:
        """Findings for a prescription made of ``herbs`` (names from the vocabulary)."""
        ...


@dataclass(frozen=True, slots=True)
class _NotConnected:
    name: str = "none (the TCM safety check is not connected yet)"
    performs_checks: bool = False

    def check(self, herbs: Sequence[str]) -> Sequence[SafetyFinding]:
        return ()


NOT_CONNECTED: SafetyChecker = _NotConnected()
_installed: list[SafetyChecker] = []


def install(checker: SafetyChecker) -> None:
    """Make ``checker`` the one the API and the CLI use (called once at start-up)."""
    _installed[:] = [checker]


def default_checker() -> SafetyChecker:
    """The installed checker, else the TCM domain's reference rules."""
    if _installed:
        return _installed[0]
    from medalliance.domains.recommender.tcm_checker import reference_checker  # no cycle

    return reference_checker()
