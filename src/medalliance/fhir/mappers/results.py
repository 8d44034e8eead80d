"""Results: Observation (lab results, kind ``lab``) and DiagnosticReport (imaging reports,
kind ``imaging``), both over ``results.models.Result``. Writes go through
``results.service.record_lab_result``, so the policy, the audit trail, the UCUM unit
check and supersession apply exactly as for HL7 v2 and the JSON API."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError
from sqlalchemy import Select, false, not_, or_, select

from medalliance.domains.results import schemas as result_schemas
from medalliance.domains.results import service as results_service
from medalliance.domains.results.models import Result, ResultKind, ResultStatus
from medalliance.fhir import bulk, store, systems
from medalliance.fhir.mappers.common import (
    PatientDataMapper,
    aware,
    coding,
    codings_in,
    concept_text,
    domain_validation,
    identifier_pairs,
    identifier_param,
    prune,
    status_of,
)
from medalliance.fhir.mappers.records import _code_search
from medalliance.fhir.models import FhirCoding
from medalliance.fhir.outcome import invalid
from medalliance.fhir.registry import (
    CREATE,
    FIRST_VERSION,
    HISTORY,
    READ,
    SEARCH,
    VREAD,
    Include,
    Lookups,
    Written,
)
from medalliance.fhir.search import NOT, Criterion, SearchParam, SearchRequest, date_param, token

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from medalliance.fhir.context import FhirContext

# FHIR Observation.status → the domain's status (amended and corrected are one to us).
OBSERVATION_STATUS = {
    "preliminary": "preliminary",
    "final": "final",
    "amended": "corrected",
    "corrected": "corrected",
}
DOMAIN_SYSTEM = {"LN": systems.LOINC}


def _kept_category_ids(rtype: str) -> Any:
    return select(FhirCoding.resource_id).where(
        FhirCoding.resource_type == rtype, FhirCoding.element == "category"
    )


def _category_param(rtype: str, default: str) -> SearchParam:
    """category=[system|]code: the kept categories, or the default for rows without any."""

    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        conditions = []
        for value in c.values:
            system, code = token(value)
            conditions.append(
                Result.id.in_(store.ids_with_coding(rtype, "category", system or None, code))
            )
            if code == default and system in (None, "", systems.OBSERVATION_CATEGORY):
                conditions.append(Result.id.not_in(_kept_category_ids(rtype)))
        clause = or_(*conditions) if conditions else false()
        return query.where(not_(clause) if c.modifier == "not" else clause)

    return SearchParam("token", apply, f"category (default {default})", NOT)


class _ResultMapper(PatientDataMapper):
    kind: ClassVar[ResultKind]
    default_category: ClassVar[str]

    def exists(self, session: Session, rid: uuid.UUID) -> bool:
        row = session.get(Result, rid)
        return row is not None and row.kind is self.kind

    def get_row(self, ctx: FhirContext, rid: str) -> Any:
        row = super().get_row(ctx, rid)
        if row.kind is not self.kind:  # the other resource type's row
            from medalliance.fhir.outcome import FhirError

            raise FhirError(404, f"{self.resource_type}/{rid} is not known", code="not-found")
        return row

    def scope(self, ctx: FhirContext, query: Select[Any], req: SearchRequest) -> Select[Any]:
        return super().scope(ctx, query, req).where(Result.kind == self.kind)

    def compartment_filter(self) -> list[Any]:
        return [Result.kind == self.kind]

    # A result is never changed once written: a correction is a new result that
    # supersedes it (results.service._supersede sets only the old row's pointer, which
    # is not part of the FHIR answer). So every Observation has one version, written at
    # created_at.
    immutable = True
    interactions: ClassVar[tuple[str, ...]] = (READ, VREAD, SEARCH, HISTORY)

    def last_updated_column(self) -> Any:
        return Result.created_at

    def _meta(self, r: Any, look: Lookups) -> dict[str, Any]:
        return {"versionId": FIRST_VERSION, "lastUpdated": look.instants[r.created_at]}

    def search_params(self) -> dict[str, SearchParam]:
        rtype = self.resource_type
        return {
            **super().search_params(),
            "identifier": identifier_param(rtype),
            "code": _code_search(rtype, "code", {systems.LOINC: [Result.item_code]}),
            "date": date_param(Result.effective_at, doc="effective (specimen or study time)"),
            "status": token_param_status(),
            "category": _category_param(rtype, self.default_category),
        }

    def sort_columns(self) -> dict[str, Any]:
        return {"date": Result.effective_at, "status": Result.status}

    def clinical_date_column(self) -> Any:
        return Result.effective_at

    def _code(self, r: Result, kept: list[dict[str, Any]] | None) -> dict[str, Any]:
        return prune(
            {
                "coding": kept
                or [coding(DOMAIN_SYSTEM.get(r.item_system, systems.RESULT_LOCAL), r.item_code)],
                "text": r.item_name,
            }
        )

    def _categories(self, r: Result, kept: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        if kept:
            return [{"coding": [c]} for c in kept]
        return [{"coding": [coding(systems.OBSERVATION_CATEGORY, self.default_category)]}]


def token_param_status() -> SearchParam:
    """status: the FHIR codes (amended is answered as corrected)."""

    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        known = {str(s) for s in ResultStatus}
        wanted = {OBSERVATION_STATUS.get(token(v)[1], token(v)[1]) for v in c.values} & known
        clause = Result.status.in_(sorted(wanted)) if wanted else false()
        return query.where(not_(clause) if c.modifier == "not" else clause)

    return SearchParam("token", apply, "preliminary | final | corrected (amended)", NOT)


class ObservationMapper(_ResultMapper):
    """A lab result. Every Observation with a code and a value is stored as one: vital
    signs, survey scores and social history too (their category is kept and answered
    back), since the results domain accepts items outside its recognition catalogue."""

    resource_type = "Observation"
    model = Result
    kind = ResultKind.LAB
    default_category = "laboratory"
    interactions = (READ, VREAD, SEARCH, CREATE, HISTORY)
    includes: ClassVar[dict[str, Include]] = {
        "Observation:patient": Include("Patient", "person_id"),
        "Observation:subject": Include("Patient", "person_id"),
    }
    revincludes = ("Observation:patient", "Observation:subject")

    def render(self, rows: Sequence[Any], look: Lookups) -> list[dict[str, Any]]:
        side, kept, at = look.identifiers, look.codings, look.instants
        subject, organization = look.subject, look.references("Organization")
        out = []
        for r in rows:
            rid = r.id
            status = str(r.status)
            res: dict[str, Any] = {
                "resourceType": "Observation",
                "id": str(rid),
                "meta": {"versionId": FIRST_VERSION, "lastUpdated": at[r.created_at]},
            }
            identifiers = side.get(rid)
            if identifiers:
                res["identifier"] = identifiers
            res["status"] = "amended" if status == "corrected" else status
            res["category"] = self._categories(r, kept.get((rid, "category")))
            code = self._code(r, kept.get((rid, "code")))
            if code:
                res["code"] = code
            res["subject"] = subject(r.patient_record_id)
            if r.effective_at:
                res["effectiveDateTime"] = at[r.effective_at]
            if r.issued_at:
                res["issued"] = at[r.issued_at]
            res["performer"] = [organization[r.institution_id]]
            value_codes = kept.get((rid, "value"))
            if r.value_numeric is not None:
                quantity: dict[str, Any] = {"value": r.value_numeric}
                if r.unit:
                    quantity.update(unit=r.unit, system=systems.UCUM, code=r.unit)
                res["valueQuantity"] = quantity
            elif value_codes:
                res["valueCodeableConcept"] = prune({"coding": value_codes, "text": r.value_text})
            elif r.value_text:
                res["valueString"] = r.value_text
            if r.abnormal_flag:
                res["interpretation"] = [{"coding": [coding(systems.V2_0078, r.abnormal_flag)]}]
            if r.reference_range:
                res["referenceRange"] = [{"text": r.reference_range}]
            out.append(res)
        return out

    def create(self, ctx: FhirContext, resource: Any) -> Written:
        return bulk.one(self.create_many, ctx, resource)

    def create_many(self, ctx: FhirContext, resources: list[Any]) -> list[Written]:
        """Observations grouped by patient: one ``record_lab_results`` per patient (one
        policy read, one catalogue and accreditation query, one insert; still one
        audited write per result), and the side tables in one query."""
        prepared = bulk.each(resources, lambda r: self._lab_result_in(ctx, r))
        ids: list[Any] = [None] * len(resources)
        for person, positions in bulk.by_key([p for p, _ in prepared]).items():

            def key(i: int) -> tuple[str, Any]:
                return prepared[i][1].item_code, prepared[i][1].effective_at

            for wave in bulk.waves(positions, key):
                with bulk.domain_batch(wave):
                    written = results_service.record_lab_results(
                        session=ctx.session,
                        actor=ctx.actor,
                        person_id=person,
                        data=[prepared[i][1] for i in wave],
                        source="fhir",
                        audit_each=True,
                    )
                for i, result_id in zip(wave, written, strict=True):
                    ids[i] = result_id
        with bulk.domain_batch(range(len(resources))):
            store.add_identifiers_many(
                ctx.session,
                "Observation",
                [
                    (rid, identifier_pairs(r.identifier))
                    for rid, r in zip(ids, resources, strict=True)
                ],
            )
        codings = store.CodingRows("Observation")
        for rid, resource in zip(ids, resources, strict=True):
            codings.add(rid, "code", codings_in(resource.code))
            codings.add(
                rid,
                "category",
                [c for concept in resource.category or [] for c in codings_in(concept)],
            )
            if resource.valueCodeableConcept is not None:
                codings.add(rid, "value", codings_in(resource.valueCodeableConcept))
        codings.write(ctx.session)
        return [Written("Observation", rid) for rid in ids]

    def _lab_result_in(
        self, ctx: FhirContext, resource: Any
    ) -> tuple[uuid.UUID, result_schemas.LabResultIn]:
        person = self.subject_of(ctx, resource, "subject")
        code, code_system, name = item_of(resource.code, "Observation.code")
        effective = aware(resource.effectiveDateTime) or aware(
            resource.effectivePeriod.start if resource.effectivePeriod else None
        )
        effective = effective or aware(resource.effectiveInstant) or aware(resource.issued)
        if effective is None:
            raise invalid("Observation.effective[x]", "Observation.effective[x] is required here")
        value = _value_of(resource)
        interpretation = next(
            (c[1] for concept in resource.interpretation or [] for c in codings_in(concept)),
            None,
        )
        ranges = [r.text for r in resource.referenceRange or [] if r.text]
        try:
            data = result_schemas.LabResultIn(
                item_code=code,
                item_system=code_system,
                item_name=name,
                status=status_of(OBSERVATION_STATUS, resource.status, "Observation.status"),
                effective_at=effective,
                issued_at=aware(resource.issued),
                abnormal_flag=interpretation
                if interpretation in result_schemas.ABNORMAL_FLAGS
                else None,
                reference_range=ranges[0][:64] if ranges else None,
                **value,
            )
        except ValidationError as exc:
            raise domain_validation("Observation", exc) from exc
        return person, data


def item_of(concept: Any, path: str) -> tuple[str, str, str | None]:
    """A coded item (an Observation's or a panel's code): (code, "LN" for LOINC or "L"
    for the sender's local code, name); LOINC is preferred."""
    codes = codings_in(concept)
    loinc = next((c for c in codes if c[0] == systems.LOINC and c[1]), None)
    first = loinc or next((c for c in codes if c[1]), None)
    if first is None or first[1] is None:
        raise invalid(path, f"{path} needs a coding with a code")
    return first[1][:32], "LN" if loinc else "L", (concept_text(concept) or "")[:200] or None


def _value_of(resource: Any) -> dict[str, Any]:
    """value[x] onto the domain's numeric value + UCUM unit, or its text. Components
    (a blood pressure's systolic and diastolic) become one text value: the domain keeps
    one value per result."""
    q = resource.valueQuantity
    if q is not None and q.value is not None:
        unit = q.code if q.system in (None, systems.UCUM) and q.code else q.unit
        return {"value_numeric": float(q.value), "unit": (str(unit) if unit else None)}
    if resource.valueCodeableConcept is not None:
        return {"value_text": concept_text(resource.valueCodeableConcept)}
    for attr in ("valueString", "valueBoolean", "valueInteger", "valueDateTime", "valueTime"):
        raw = getattr(resource, attr, None)
        if raw is not None:
            return {"value_text": str(raw).lower() if attr == "valueBoolean" else str(raw)}
    parts = []
    for comp in resource.component or []:
        name = concept_text(comp.code) or "?"
        cq = comp.valueQuantity
        if cq is not None and cq.value is not None:
            parts.append(f"{name}: {cq.value} {cq.code or cq.unit or ''}".rstrip())
        elif comp.valueCodeableConcept is not None:
            parts.append(f"{name}: {concept_text(comp.valueCodeableConcept)}")
        elif comp.valueString is not None:
            parts.append(f"{name}: {comp.valueString}")
    if parts:
        return {"value_text": "; ".join(parts)[:2000]}
    raise invalid(
        "Observation.value[x]",
        "Observation.value[x] (or a component with a value) is required: the results "
        "domain stores a value for every result",
    )


class DiagnosticReportMapper(_ResultMapper):
    """An imaging report (modality, body site, report text, conclusion). Read and search
    only: a lab panel has no domain counterpart (results are grouped by nothing but the
    order reference), and imaging reports arrive through HL7 v2 or the JSON API."""

    resource_type = "DiagnosticReport"
    model = Result
    kind = ResultKind.IMAGING
    default_category = "RAD"
    includes: ClassVar[dict[str, Include]] = {
        "DiagnosticReport:patient": Include("Patient", "person_id"),
        "DiagnosticReport:subject": Include("Patient", "person_id"),
    }
    revincludes = ("DiagnosticReport:patient", "DiagnosticReport:subject")

    def _categories(self, r: Result, kept: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        return [{"coding": [coding(systems.V2_0074, "RAD", "Radiology")]}]

    def search_params(self) -> dict[str, SearchParam]:
        params = super().search_params()

        def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
            # every imaging report is RAD; any other category matches nothing
            hits = any(token(v)[1] == "RAD" for v in c.values)
            if c.modifier == "not":
                hits = not hits
            return query if hits else query.where(false())

        params["category"] = SearchParam("token", apply, "RAD (every imaging report)", NOT)
        return params

    def render(self, rows: Sequence[Any], look: Lookups) -> list[dict[str, Any]]:
        side, kept = look.identifiers, look.codings
        return [
            prune(
                {
                    "resourceType": "DiagnosticReport",
                    "id": str(r.id),
                    "meta": self._meta(r, look),
                    "identifier": side.get(r.id),
                    "status": "amended" if str(r.status) == "corrected" else str(r.status),
                    "category": self._categories(r, None),
                    "code": self._code(r, kept.get((r.id, "code"))),
                    "subject": look.subject(r.patient_record_id),
                    "effectiveDateTime": look.instants[r.effective_at],
                    "issued": look.instants[r.issued_at],
                    "performer": [{"reference": f"Organization/{r.institution_id}"}],
                    "conclusion": r.conclusion,
                    "presentedForm": [
                        prune(
                            {
                                "contentType": "text/plain; charset=utf-8",
                                "title": " ".join(x for x in (r.modality, r.body_site) if x),
                                "url": r.pacs_url,
                                "data": _b64(r.report_text) if r.report_text else None,
                            }
                        )
                    ],
                }
            )
            for r in rows
        ]


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode("utf-8")).decode("ascii")
