"""JSON API of herb recommendation: suggestions for symptoms, and the symptom vocabulary.

No patient data is read or written here (the query is a list of symptom names), so the
routes need a permission but no access-policy decision or audit row.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from medalliance.access.permissions import Permission
from medalliance.api.deps import require
from medalliance.domains.recommender import safety, service
from medalliance.domains.recommender.schemas import RecommendationRead, SymptomRead
from medalliance.kernel.actor import Actor

router = APIRouter(prefix="/api/tcm", tags=["tcm herb recommendation"])

Recommender = Annotated[Actor, Depends(require(Permission.TCM_RECOMMEND))]


@router.get("/recommendations", response_model=RecommendationRead)
def recommendations(
    actor: Recommender,
    symptoms: Annotated[
        str,
        Query(
            max_length=1000,
            description="Symptom names separated by spaces or commas, e.g. 咳嗽 头痛",
        ),
    ],
    k: Annotated[int, Query(ge=service.MIN_K, le=service.MAX_K)] = 10,
    herbs: Annotated[
        str,
        Query(
            max_length=2000,
            description="Herbs already in the prescription: not suggested again, and "
            "checked together with each suggestion",
        ),
    ] = "",
) -> RecommendationRead:
    """The k best herbs for the symptoms that pass the safety check, best first.

    Symptom names outside the vocabulary are listed in ``unknown_symptoms`` and ignored;
    if none is known the answer is 422."""
    result = service.recommend(
        symptoms=service.parse_names(symptoms),
        k=k,
        safety=safety.default_checker(),
        current_herbs=service.parse_names(herbs),
    )
    return RecommendationRead.of(result)


@router.get("/symptoms", response_model=list[SymptomRead])
def symptoms_lookup(
    actor: Recommender,
    q: Annotated[str, Query(max_length=50, description="Part of a name, or pinyin")] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[SymptomRead]:
    """Symptoms of the recommender's vocabulary matching ``q`` (咳 or kesou), most
    frequent first; for the symptom picker."""
    return [SymptomRead.of(e) for e in service.search_symptoms(q, limit=limit)]
