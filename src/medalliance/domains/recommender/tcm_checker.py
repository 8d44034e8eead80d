"""The TCM domain's safety check as the recommender's ``SafetyChecker``.

Every candidate is checked together with the herbs already chosen, by the same pure
rules the prescription editor runs (``domains/tcm/safety``: 十八反, 十九畏, toxicity,
duplicates; pregnancy, drugs and allergies are patient context the editor's own check
adds). The SMGCN vocabulary is larger than the reference catalogue: a herb the
catalogue does not know cannot be checked, so it is shown with a warning that says so
instead of passing silently. Names are never matched by substring (淡竹叶 is not 竹叶).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from medalliance.domains.recommender.safety import SafetyChecker, SafetyFinding, Severity
from medalliance.domains.tcm.catalogue import catalogue
from medalliance.domains.tcm.safety import check

NOT_IN_CATALOGUE_SOURCE = "MedAlliance TCM reference catalogue (domains/tcm/reference)"


@dataclass(frozen=True, slots=True)
class TcmReferenceChecker:
    name: str = "TCM reference rules (not clinically reviewed)"
    performs_checks: bool = True

    def check(self, herbs: Sequence[str]) -> Sequence[SafetyFinding]:
        cat = catalogue()
        known = [h for h in herbs if cat.resolve(h) is not None]
        findings = [
            SafetyFinding(
                herbs=(h,),
                severity=Severity.WARN,
                message=f"{h} is not in the reference catalogue: no safety rule checked it.",
                source=NOT_IN_CATALOGUE_SOURCE,
            )
            for h in herbs
            if cat.resolve(h) is None
        ]
        for finding in check(known):
            # The recommender acts on block and warn; "info" findings are shown as warnings.
            severity = Severity.BLOCK if finding.severity == "block" else Severity.WARN
            findings.append(
                SafetyFinding(
                    herbs=finding.herbs,
                    severity=severity,
                    message=f"{finding.message_en} / {finding.message_zh}",
                    source=finding.source,
                )
            )
        return findings


@lru_cache(maxsize=1)
def reference_checker() -> SafetyChecker:
    return TcmReferenceChecker()
