"""API shapes of herb recommendations and the symptom vocabulary."""

from __future__ import annotations

from pydantic import BaseModel, Field

from medalliance.domains.recommender.safety import SafetyFinding, Severity
from medalliance.domains.recommender.service import Recommendation, SymptomEntry


class FindingRead(BaseModel):
    herbs: list[str]
    severity: Severity
    message: str
    source: str

    @classmethod
    def of(cls, finding: SafetyFinding) -> FindingRead:
        return cls(
            herbs=list(finding.herbs),
            severity=finding.severity,
            message=finding.message,
            source=finding.source,
        )


class SuggestionRead(BaseModel):
    rank: int
    herb: str = Field(description="Chinese herb name, as in the SMGCN vocabulary")
    score: float = Field(description="Blended estimate of P(herb in the prescription)")
    findings: list[FindingRead] = Field(description="Safety warnings shown with the suggestion")


class WithheldRead(BaseModel):
    herb: str
    findings: list[FindingRead] = Field(description="The blocking findings")


class SafetyRead(BaseModel):
    checker: str
    checked: bool = Field(description="False while no safety check is connected")


class RecommendationRead(BaseModel):
    symptoms: list[str] = Field(description="Recognised symptoms the ranking is based on")
    unknown_symptoms: list[str] = Field(description="Not in the vocabulary: ignored, not guessed")
    suggestions: list[SuggestionRead]
    withheld: list[WithheldRead]
    safety: SafetyRead

    @classmethod
    def of(cls, result: Recommendation) -> RecommendationRead:
        return cls(
            symptoms=list(result.symptoms),
            unknown_symptoms=list(result.unknown_symptoms),
            suggestions=[
                SuggestionRead(
                    rank=s.rank,
                    herb=s.herb,
                    score=round(s.score, 6),
                    findings=[FindingRead.of(f) for f in s.findings],
                )
                for s in result.suggestions
            ],
            withheld=[
                WithheldRead(herb=w.herb, findings=[FindingRead.of(f) for f in w.findings])
                for w in result.withheld
            ],
            safety=SafetyRead(checker=result.safety_checker, checked=result.safety_checked),
        )


class SymptomRead(BaseModel):
    name: str
    pinyin: str
    prescriptions: int = Field(description="Shipped prescriptions that mention the symptom")

    @classmethod
    def of(cls, entry: SymptomEntry) -> SymptomRead:
        return cls(name=entry.name, pinyin=entry.pinyin, prescriptions=entry.prescriptions)
