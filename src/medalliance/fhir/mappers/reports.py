"""DiagnosticReport over two domain tables: a lab panel (``results.models.ResultPanel``,
written through ``results/panels.py``) and an imaging report (a ``Result`` of kind
imaging, ``mappers/results.py``). One resource type, one id space (uuids), one search:
each part applies the criteria to its own table and the two are merged in SQL
(``UNION ALL`` of ids and sort keys), so ``_count``, ``_offset``, ``_sort`` and totals
hold across both."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError
from sqlalchemy import ColumnElement, Select, false, func, literal, not_, or_, select, union_all

from medalliance.access import policy
from medalliance.domains.patients import service as patients_service
from medalliance.domains.results import panels as panels_service
from medalliance.domains.results.models import ResultPanel, ResultStatus
from medalliance.fhir import bulk, store, systems
from medalliance.fhir.mappers.common import (
    PatientDataMapper,
    aware,
    coding,
    codings_in,
    domain_validation,
    identifier_pairs,
    prune,
    status_of,
)
from medalliance.fhir.mappers.results import DiagnosticReportMapper as ImagingReportMapper
from medalliance.fhir.mappers.results import item_of
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
    Mapper,
    Written,
)
from medalliance.fhir.search import (
    Criterion,
    SearchParam,
    SearchRequest,
    date_param,
    reference_id,
    reference_param,
    token,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from medalliance.fhir.context import FhirContext

RTYPE = "DiagnosticReport"
# FHIR DiagnosticReport.status → the domain's (as for Observation: amended = corrected).
REPORT_STATUS = {
    "registered": ResultStatus.PRELIMINARY,
    "partial": ResultStatus.PRELIMINARY,
    "preliminary": ResultStatus.PRELIMINARY,
    "final": ResultStatus.FINAL,
    "amended": ResultStatus.CORRECTED,
    "corrected": ResultStatus.CORRECTED,
    "appended": ResultStatus.CORRECTED,
}
LAB = "LAB"


def _identifier_param() -> SearchParam:
    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        conditions = [
            ResultPanel.id.in_(store.ids_with_identifier(RTYPE, system or None, value))
            for system, value in (token(v) for v in c.values)
        ]
        return query.where(or_(*conditions) if conditions else false())

    return SearchParam("token", apply, "identifier (system|value)")


def _code_param() -> SearchParam:
    """code=[system|]code: the panel's LOINC (or local) code and the kept codings."""

    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        conditions: list[ColumnElement[bool]] = []
        for value in c.values:
            system, code = token(value)
            conditions.append(
                ResultPanel.id.in_(store.ids_with_coding(RTYPE, "code", system or None, code))
            )
            for sys_, domain in ((systems.LOINC, "LN"), (systems.RESULT_LOCAL, "L")):
                if system in (None, "", sys_):
                    conditions.append(
                        (ResultPanel.code == code) & (ResultPanel.code_system == domain)
                    )
        return query.where(or_(*conditions))

    return SearchParam("token", apply, "code ([system|]code): the panel's code")


def _status_param() -> SearchParam:
    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        wanted = {REPORT_STATUS.get(token(v)[1]) for v in c.values} - {None}
        clause = ResultPanel.status.in_(sorted(str(w) for w in wanted)) if wanted else false()
        return query.where(not_(clause) if c.modifier == "not" else clause)

    return SearchParam("token", apply, "registered | partial | preliminary | final | amended …")


def _category_param() -> SearchParam:
    """category: the kept categories, or LAB for a panel sent without one."""

    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        kept = select(FhirCoding.resource_id).where(
            FhirCoding.resource_type == RTYPE, FhirCoding.element == "category"
        )
        conditions = []
        for value in c.values:
            system, code = token(value)
            conditions.append(
                ResultPanel.id.in_(store.ids_with_coding(RTYPE, "category", system or None, code))
            )
            if code == LAB and system in (None, "", systems.V2_0074):
                conditions.append(ResultPanel.id.not_in(kept))
        clause = or_(*conditions) if conditions else false()
        return query.where(not_(clause) if c.modifier == "not" else clause)

    return SearchParam("token", apply, "category (LAB for lab panels, RAD for imaging)")


def _result_param() -> SearchParam:
    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        ids = [u for u in (reference_id(v, "Observation") for v in c.values) if u is not None]
        return query.where(
            ResultPanel.id.in_(panels_service.panels_with_result(ids)) if ids else false()
        )

    return SearchParam("reference", apply, "a result the report groups (Observation/<id>)")


class LabPanelMapper(PatientDataMapper):
    """A lab panel: the part of DiagnosticReport over ``ResultPanel``."""

    resource_type = RTYPE
    model = ResultPanel

    def search_params(self) -> dict[str, SearchParam]:
        return {
            **super().search_params(),
            "identifier": _identifier_param(),
            "code": _code_param(),
            "date": date_param(ResultPanel.effective_at, doc="effective (specimen time)"),
            "status": _status_param(),
            "category": _category_param(),
            "encounter": reference_param(ResultPanel.encounter_id, "Encounter"),
            "result": _result_param(),
        }

    def sort_columns(self) -> dict[str, Any]:
        return {"date": ResultPanel.effective_at, "status": ResultPanel.status}

    def clinical_date_column(self) -> Any:
        return ResultPanel.effective_at

    # A panel is never changed once written (record_panels only inserts): one version.
    immutable = True

    def last_updated_column(self) -> Any:
        return ResultPanel.created_at

    def lookups(self, ctx: FhirContext, rows: Sequence[Any]) -> Lookups:
        look = super().lookups(ctx, rows)
        self.annotate(ctx, rows, look)
        return look

    def annotate(self, ctx: FhirContext, rows: Sequence[Any], look: Lookups) -> None:
        # keyed as the rows name themselves (text ids in $everything on PostgreSQL)
        as_text = bool(rows) and isinstance(rows[0].id, str)
        found = panels_service.members_of(ctx.session, [uuid.UUID(str(r.id)) for r in rows])
        look.members.update({str(k) if as_text else k: v for k, v in found.items()})

    def render(self, rows: Sequence[Any], look: Lookups) -> list[dict[str, Any]]:
        out = []
        for r in rows:
            categories = look.codings.get((r.id, "category")) or [
                coding(systems.V2_0074, LAB, "Laboratory")
            ]
            system = systems.LOINC if r.code_system == "LN" else systems.RESULT_LOCAL
            performers = [{"reference": f"Organization/{r.institution_id}"}]
            if r.practitioner_id is not None:
                performers.append({"reference": f"Practitioner/{r.practitioner_id}"})
            out.append(
                prune(
                    {
                        "resourceType": RTYPE,
                        "id": str(r.id),
                        "meta": {
                            "versionId": FIRST_VERSION,
                            "lastUpdated": look.instants[r.created_at],
                        },
                        "identifier": look.identifiers.get(r.id),
                        "status": "amended" if str(r.status) == "corrected" else str(r.status),
                        "category": [{"coding": [c]} for c in categories],
                        "code": prune(
                            {
                                "coding": look.codings.get((r.id, "code"))
                                or [coding(system, r.code)],
                                "text": r.name,
                            }
                        ),
                        "subject": look.subject(r.patient_record_id),
                        "encounter": {"reference": f"Encounter/{r.encounter_id}"}
                        if r.encounter_id
                        else None,
                        "effectiveDateTime": look.instants[r.effective_at],
                        "issued": look.instants[r.issued_at],
                        "performer": performers,
                        "result": [
                            {"reference": f"Observation/{rid}"}
                            for rid in look.members.get(r.id, [])
                        ],
                        "conclusion": r.conclusion,
                        "conclusionCode": [
                            {"coding": [c]} for c in look.codings.get((r.id, "conclusionCode"), [])
                        ],
                    }
                )
            )
        return out

    # --- writes -------------------------------------------------------------------------

    def panel_in(self, ctx: FhirContext, resource: Any) -> tuple[uuid.UUID, Any]:
        """(the patient, the domain's PanelIn) for one DiagnosticReport, or a 4xx naming
        the element. Shared by create and the bundle's per-patient batches."""
        categories = [c for concept in resource.category or [] for c in codings_in(concept)]
        if resource.imagingStudy or resource.media or any(c[1] == "RAD" for c in categories):
            raise invalid(
                "DiagnosticReport.category",
                "an imaging report is not accepted by create: it arrives through HL7 v2 or "
                "the JSON API (a lab panel is)",
            )
        if resource.presentedForm:
            raise invalid(
                "DiagnosticReport.presentedForm",
                "a lab panel's attached report (presentedForm) is not stored here: send the "
                "text as conclusion",
            )
        person = self.subject_of(ctx, resource, "subject")
        code, code_system, name = item_of(resource.code, "DiagnosticReport.code")
        effective = (
            aware(resource.effectiveDateTime)
            or aware(resource.effectivePeriod.start if resource.effectivePeriod else None)
            or aware(resource.issued)
        )
        if effective is None:
            raise invalid(
                "DiagnosticReport.effective[x]", "DiagnosticReport.effective[x] is required here"
            )
        practitioner = None
        for i, ref in enumerate(resource.performer or []):
            target = str(ref.reference or "")
            path = f"DiagnosticReport.performer[{i}]"
            if "Practitioner/" in target and "PractitionerRole" not in target:
                practitioner = practitioner or ctx.resolve_optional(ref, path, "Practitioner")
            elif target:
                ctx.resolve_optional(ref, path, "Organization", "Practitioner", "PractitionerRole")
        results = [
            found
            for i, ref in enumerate(resource.result or [])
            if (found := ctx.resolve_optional(ref, f"DiagnosticReport.result[{i}]", "Observation"))
        ]
        encounter = ctx.resolve_optional(
            resource.encounter, "DiagnosticReport.encounter", "Encounter"
        )
        try:
            data = panels_service.PanelIn(
                code=code,
                code_system=code_system,
                name=name,
                status=status_of(REPORT_STATUS, resource.status, "DiagnosticReport.status"),
                effective_at=effective,
                issued_at=aware(resource.issued),
                conclusion=resource.conclusion,
                encounter_id=encounter,
                practitioner_id=practitioner,
                result_ids=results,
            )
        except ValidationError as exc:
            raise domain_validation(RTYPE, exc) from exc
        return person, data

    def create(self, ctx: FhirContext, resource: Any) -> Written:
        return bulk.one(self.create_many, ctx, resource)

    def create_many(self, ctx: FhirContext, resources: list[Any]) -> list[Written]:
        """Panels grouped by patient: one ``record_panels`` per patient."""
        prepared = bulk.each(resources, lambda r: self.panel_in(ctx, r))
        ids: list[Any] = [None] * len(resources)
        for person, positions in bulk.by_key([p for p, _ in prepared]).items():
            with bulk.domain_batch(positions):
                panels = panels_service.record_panels(
                    session=ctx.session,
                    actor=ctx.actor,
                    person_id=person,
                    data=[prepared[i][1] for i in positions],
                    source="fhir",
                )
            for i, panel in zip(positions, panels, strict=True):
                ids[i] = panel.id
        pairs = [identifier_pairs(r.identifier) for r in resources]
        with bulk.domain_batch(range(len(resources))):
            store.add_identifiers_many(ctx.session, RTYPE, list(zip(ids, pairs, strict=True)))
        codings = store.CodingRows(RTYPE)
        for panel_id, resource in zip(ids, resources, strict=True):
            codings.add(panel_id, "code", codings_in(resource.code))
            for element, concepts in (
                ("category", resource.category),
                ("conclusionCode", resource.conclusionCode),
            ):
                codings.add(
                    panel_id,
                    element,
                    [c for concept in concepts or [] for c in codings_in(concept)],
                )
        codings.write(ctx.session)
        return [Written(RTYPE, i) for i in ids]


def _member_results(ctx: FhirContext, rows: list[Any]) -> list[Any]:
    """``_include=DiagnosticReport:result``: the lab panels' member results (Observations),
    in each report's order, that the access policy lets the actor read: decided per
    member institution as a read of each would be (withheld ones are left out, not
    refused), and audited as one search of Observations."""
    from medalliance.domains.results.models import Result, ResultKind

    panels = [r.id for r in rows if isinstance(r, ResultPanel)]
    members = panels_service.members_of(ctx.session, panels)
    ordered = list(dict.fromkeys(rid for p in panels for rid in members.get(p, [])))
    if not ordered:
        return []
    found = {
        r.id: r
        for r in ctx.session.scalars(
            select(Result).where(Result.id.in_(ordered), Result.kind == ResultKind.LAB)
        )
    }
    facts: dict[uuid.UUID, Any] = {}
    decided: dict[tuple[uuid.UUID, uuid.UUID], bool] = {}
    kept = []
    for rid in ordered:
        row = found.get(rid)
        if row is None:
            continue
        key = (row.patient_record_id, row.institution_id)
        if key not in decided:
            if row.patient_record_id not in facts:
                facts[row.patient_record_id] = patients_service.facts_of_record(
                    ctx.session, row.patient_record_id
                )
            decided[key] = policy.decide(
                ctx.session,
                ctx.actor,
                facts[row.patient_record_id],
                policy.AccessAction.READ,
                owner_institution_id=row.institution_id,
            ).allowed
        if decided[key]:
            kept.append(row)
    observations = ctx.registry["Observation"]
    included = SearchRequest(
        criteria=[Criterion("_id", None, tuple(str(r.id) for r in kept))], count=len(kept)
    )
    observations.audit_search(ctx, included, len(kept))
    return kept


class DiagnosticReportMapper(Mapper):
    """DiagnosticReport: lab panels (read, search, create) and imaging reports (read,
    search) behind one resource type."""

    resource_type = RTYPE
    model = ImagingReportMapper.model  # the imaging part's helpers look the model up here
    # both parts are never changed once written: one version each
    immutable = True
    interactions = (READ, VREAD, SEARCH, CREATE, HISTORY)
    patient_param: ClassVar[str | None] = "patient"
    includes: ClassVar[dict[str, Include]] = {
        **ImagingReportMapper.includes,
        "DiagnosticReport:result": Include("Observation", "id", load=_member_results),
    }
    revincludes = (*ImagingReportMapper.revincludes, "DiagnosticReport:result")

    def __init__(self) -> None:
        self.panels = LabPanelMapper()
        self.imaging = ImagingReportMapper()
        self.parts: tuple[PatientDataMapper, ...] = (self.panels, self.imaging)
        self.params = {**self.imaging.params, **self.panels.params}
        self.sorts = {k: v for k, v in self.panels.sorts.items() if k in self.imaging.sorts}

    def compartment_parts(self) -> tuple[Mapper, ...]:
        return self.parts

    def _part_of(self, row: Any) -> PatientDataMapper:
        return self.panels if isinstance(row, ResultPanel) else self.imaging

    def exists(self, session: Session, rid: uuid.UUID) -> bool:
        return any(part.exists(session, rid) for part in self.parts)

    def get_row(self, ctx: FhirContext, rid: str) -> Any:
        try:
            as_uuid = uuid.UUID(rid)
        except ValueError:
            as_uuid = None
        panel = None if as_uuid is None else ctx.session.get(ResultPanel, as_uuid)
        return panel if panel is not None else self.imaging.get_row(ctx, rid)

    def check_read(self, ctx: FhirContext, row: Any) -> None:
        self._part_of(row).check_read(ctx, row)

    def to_fhir(self, ctx: FhirContext, rows: list[Any]) -> list[dict[str, Any]]:
        by_id: dict[str, dict[str, Any]] = {}
        for part in self.parts:
            mine = [r for r in rows if self._part_of(r) is part]
            if mine:
                by_id.update((res["id"], res) for res in part.to_fhir(ctx, mine))
        return [by_id[str(r.id)] for r in rows]

    def create(self, ctx: FhirContext, resource: Any) -> Written:
        return self.panels.create(ctx, resource)

    def create_many(self, ctx: FhirContext, resources: list[Any]) -> list[Written]:
        return self.panels.create_many(ctx, resources)

    def scope(self, ctx: FhirContext, query: Select[Any], req: SearchRequest) -> Select[Any]:
        raise NotImplementedError("searched through its parts")  # pragma: no cover

    def _part_query(
        self, ctx: FhirContext, part: PatientDataMapper, index: int, req: SearchRequest
    ) -> Select[Any]:
        """The part's scoped query reduced to (id, part, sort keys); a criterion the part
        does not know (a panel's encounter for an imaging report) matches nothing."""
        query = part.scope(ctx, select(part.model), req)
        for criterion in req.criteria:
            param = part.params.get(criterion.name)
            query = query.where(false()) if param is None else param.apply(ctx, query, criterion)
        keys = [part.sorts[name].label(f"k{i}") for i, (name, _) in enumerate(req.sort)]
        return query.with_only_columns(
            part.model.id.label("id"), literal(index).label("part"), *keys
        )

    def search(
        self, ctx: FhirContext, req: SearchRequest, *, count: bool = True
    ) -> tuple[list[Any], int]:
        merged = union_all(
            *(self._part_query(ctx, part, i, req) for i, part in enumerate(self.parts))
        ).subquery()
        total = ctx.session.scalar(select(func.count()).select_from(merged)) or 0 if count else -1
        if req.summary_count:
            self.imaging.audit_search(ctx, req, 0)
            return [], total
        order = [
            merged.c[f"k{i}"].desc() if desc else merged.c[f"k{i}"].asc()
            for i, (_, desc) in enumerate(req.sort)
        ]
        picked = list(
            ctx.session.execute(
                select(merged.c.id, merged.c.part)
                .order_by(*order, merged.c.id.asc())
                .limit(req.count)
                .offset(req.offset)
            )
        )
        loaded: dict[uuid.UUID, Any] = {}
        for i, part in enumerate(self.parts):
            ids = [rid for rid, p in picked if p == i]
            if ids:
                loaded.update(
                    (row.id, row)
                    for row in ctx.session.scalars(select(part.model).where(part.model.id.in_(ids)))
                )
        rows = [loaded[rid] for rid, _ in picked]
        self.imaging.audit_search(ctx, req, len(rows))
        return rows, (len(rows) if total < 0 else total)
