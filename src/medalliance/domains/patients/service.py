"""Patient use cases: register, find, read, update, consent. Every read and write
passes the access policy and is audited."""

from __future__ import annotations

import contextlib
import uuid
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, or_, select
from sqlalchemy.orm import Session

from medalliance.access import policy
from medalliance.access.permissions import Permission
from medalliance.audit import service as audit
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.alliance.models import Alliance, Institution, SharingDefault
from medalliance.domains.patients import consent as consent_rules
from medalliance.domains.patients import golden, identity, names
from medalliance.domains.patients.identity import IdNumberError
from medalliance.domains.patients.models import (
    Consent,
    ConsentStatus,
    IdentifierSystem,
    PatientIdentifier,
    PatientRecord,
    Person,
    PregnancyStatus,
)
from medalliance.domains.patients.mpi import matching
from medalliance.domains.patients.mpi import service as mpi_service
from medalliance.domains.patients.schemas import (
    ConsentIn,
    ConsentRead,
    IdentifierRead,
    PatientCreate,
    PatientRead,
    PatientSummary,
    PatientUpdate,
    RegistrationResult,
    SourceRecordRead,
)
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import Conflict, InvalidInput, NotFound, PermissionDenied

RESOURCE = "Patient"


# --- facts for the access policy ------------------------------------------------------


def _facts_statement() -> Select[Any]:
    """The person, the members holding its records (first registration first), the
    latest recorded consent, and the sharing default of each record's alliance (the
    first record's one applies when no consent was recorded, as in
    ``consent.in_force``): one statement, built once (every read of patient data
    starts here)."""
    latest_consent = (
        select(Consent.status, Consent.excluded_institution_ids)
        .where(Consent.person_id == Person.id)
        .order_by(Consent.recorded_at.desc(), Consent.id.desc())
        .limit(1)
    )
    alliance_default = (
        select(Alliance.sharing_default)
        .join(Institution, Institution.alliance_id == Alliance.id)
        .where(Institution.id == PatientRecord.institution_id)
        .scalar_subquery()
    )
    return (
        select(
            Person.id,
            PatientRecord.institution_id,
            latest_consent.with_only_columns(Consent.status).scalar_subquery(),
            latest_consent.with_only_columns(Consent.excluded_institution_ids).scalar_subquery(),
            alliance_default,
        )
        .outerjoin(PatientRecord, PatientRecord.person_id == Person.id)
        .where(Person.id == bindparam("person_id", type_=Person.id.type))
        .order_by(PatientRecord.created_at)
    )


_FACTS = _facts_statement()


def facts(session: Session, person_id: uuid.UUID) -> policy.PatientFacts | None:
    rows = session.execute(_FACTS, {"person_id": person_id}).all()
    if not rows:
        return None
    _, _, consent_status, excluded, default = rows[0]
    if consent_status is None:  # none recorded: the alliance's default
        sharing = default is SharingDefault.OPT_OUT
        excluded_ids: frozenset[uuid.UUID] = frozenset()
    else:
        sharing = consent_status == ConsentStatus.GRANTED
        excluded_ids = frozenset(uuid.UUID(str(i)) for i in excluded or [])
    return policy.PatientFacts(
        patient_id=person_id,
        institution_ids=frozenset(r[1] for r in rows if r[1] is not None),
        sharing_consent=sharing,
        excluded_institution_ids=excluded_ids,
    )


def _facts_or_404(session: Session, person_id: uuid.UUID) -> policy.PatientFacts:
    found = facts(session, person_id)
    if found is None:
        raise NotFound(f"No patient with id {person_id}.")
    return found


# --- register -------------------------------------------------------------------------


def _resident_id(data: PatientCreate) -> identity.ResidentId | None:
    raw = data.id_number or next(
        (i.value for i in data.identifiers if i.system is IdentifierSystem.RESIDENT_ID), None
    )
    if raw is None:
        return None
    try:
        resident = identity.parse(raw)
        identity.check_agreement(resident, birth_date=data.birth_date, sex=data.sex)
    except IdNumberError as exc:
        raise InvalidInput(str(exc), field="id_number", reason=exc.reason) from exc
    return resident


def register(
    *,
    session: Session,
    actor: Actor,
    data: PatientCreate,
    idempotency_key: str | None = None,
) -> RegistrationResult:
    if not actor.can(Permission.PATIENT_WRITE):
        raise PermissionDenied(f"Role {actor.role} may not register patients.")
    institution = _registering_institution(session, actor, data.institution_code)
    key = None if idempotency_key is None else f"{institution.id}:{idempotency_key}"
    if key is not None:
        earlier = session.scalar(select(PatientRecord).where(PatientRecord.idempotency_key == key))
        if earlier is not None:
            return _result(session, actor, earlier, created=False)
    resident = _resident_id(data)
    if data.mrn and session.scalar(
        select(PatientRecord.id).where(
            PatientRecord.institution_id == institution.id, PatientRecord.mrn == data.mrn
        )
    ):
        raise Conflict(
            f"Medical record number {data.mrn!r} is already used at {institution.code}.",
            field="mrn",
        )
    pinyin = names.full_pinyin(data.family_name, data.given_name)
    record = PatientRecord(
        institution_id=institution.id,
        mrn=data.mrn,
        family_name=data.family_name,
        given_name=data.given_name,
        name=_full_name(data.family_name, data.given_name),
        name_pinyin=pinyin,
        name_initials=names.initials(pinyin),
        name_pinyin_compact=pinyin.replace(" ", ""),
        sex=data.sex,
        birth_date=data.birth_date,
        id_number=None if resident is None else resident.number,
        phones=list(dict.fromkeys(data.phones)),
        province=data.province,
        city=data.city,
        district=data.district,
        street=data.street,
        postcode=data.postcode,
        emergency_contact=None
        if data.emergency_contact is None
        else data.emergency_contact.model_dump(),
        pregnancy_status=data.pregnancy_status,
        pregnancy_recorded_at=utcnow(),
        idempotency_key=key,
        created_by=actor.user_id,
    )
    match = matching.match_new_record(session, record)
    person = session.get(Person, match.person_id) if match.person_id else None
    if person is None:
        person = golden.new_person(session, record)
    record.person_id = person.id
    record.link_method, record.link_score = match.method, match.score
    session.add(record)
    session.flush()
    _add_identifiers(session, record, data, institution.code)
    golden.refresh(session, person)
    queued = mpi_service.after_registration(session, actor, record, match)
    audit.record(
        session,
        actor,
        action="create",
        resource_type=RESOURCE,
        resource_id=record.id,
        patient_id=person.id,
        purpose_of_use=policy.PURPOSE_TREATMENT,
        detail={
            "institution": institution.code,
            "link_method": str(match.method),
            "review_candidates": queued,
        },
    )
    result = _result(session, actor, record, created=True)
    result.review_candidates = queued
    return result


def _full_name(family: str, given: str) -> str:
    return family + given if names.has_han(family + given) else f"{given} {family}"


def _registering_institution(session: Session, actor: Actor, code: str | None) -> Institution:
    if code is None:
        if actor.institution_id is None:
            raise InvalidInput("Name the registering institution.", field="institution_code")
        found = alliance_service.institution_by_id(session, actor.institution_id)
    else:
        found = alliance_service.find_institution(session, code)
    if found is None:
        raise InvalidInput(f"No institution with code {code!r}.", field="institution_code")
    if found.id != actor.institution_id:
        raise PermissionDenied("You can only register patients at your own institution.")
    return found


def _add_identifiers(
    session: Session, record: PatientRecord, data: PatientCreate, institution_code: str
) -> None:
    wanted: dict[tuple[IdentifierSystem, str], str | None] = {}
    if record.id_number:
        wanted[(IdentifierSystem.RESIDENT_ID, record.id_number)] = None
    if record.mrn:
        wanted[(IdentifierSystem.MRN, record.mrn)] = institution_code
    for phone in record.phones:
        wanted[(IdentifierSystem.PHONE, phone)] = None
    for ident in data.identifiers:
        if ident.system is IdentifierSystem.RESIDENT_ID:
            continue  # normalised above
        wanted.setdefault((ident.system, ident.value), ident.assigner)
    session.add_all(
        PatientIdentifier(record_id=record.id, system=system, value=value, assigner=assigner)
        for (system, value), assigner in wanted.items()
    )
    session.flush()


def _result(
    session: Session, actor: Actor, record: PatientRecord, *, created: bool
) -> RegistrationResult:
    person = session.get(Person, record.person_id)
    assert person is not None
    decision = policy.Decision(True, policy.Basis.SAME_INSTITUTION, "registered here")
    return RegistrationResult(
        patient=_read(session, person, decision),
        record_id=record.id,
        link_method=record.link_method,
        created=created,
    )


# --- read -----------------------------------------------------------------------------


def get(session: Session, actor: Actor, person_id: uuid.UUID) -> PatientRead:
    facts_ = _facts_or_404(session, person_id)
    decision = policy.enforce(
        session,
        actor,
        facts_,
        policy.AccessAction.READ,
        resource_type=RESOURCE,
        resource_id=person_id,
    )
    person = session.get(Person, person_id)
    assert person is not None
    return _read(session, person, decision)


def _read(session: Session, person: Person, decision: policy.Decision) -> PatientRead:
    records = golden.records_of(session, person.id)
    codes = alliance_service.institution_codes(session, [r.institution_id for r in records])
    identifiers: dict[uuid.UUID, list[IdentifierRead]] = {}
    for ident in session.scalars(
        select(PatientIdentifier).where(PatientIdentifier.record_id.in_([r.id for r in records]))
    ):
        identifiers.setdefault(ident.record_id, []).append(IdentifierRead.model_validate(ident))
    sources = []
    for rec in records:
        item = SourceRecordRead.model_validate(rec)
        item.institution_code = codes.get(rec.institution_id, "")
        item.identifiers = identifiers.get(rec.id, [])
        sources.append(item)
    newest = records[0] if records else None
    return PatientRead(
        id=person.id,
        name=person.name,
        family_name=person.family_name,
        given_name=person.given_name,
        name_pinyin=person.name_pinyin,
        name_initials=person.name_initials,
        sex=person.sex,
        birth_date=person.birth_date,
        id_number=person.id_number,
        phone=person.phone,
        province=person.province,
        city=person.city,
        district=person.district,
        pregnancy_status=newest.pregnancy_status if newest else PregnancyStatus.UNKNOWN,
        consent=consent_rules.in_force(session, person.id),
        access_basis=str(decision.basis),
        records=sources,
    )


def is_pregnant(session: Session, person_id: uuid.UUID) -> bool | None:
    """For the safety checks of other domains: the newest recorded status."""
    # One column, not the ORM record: the TCM and prescribing checks call this per check.
    status = session.scalar(
        select(PatientRecord.pregnancy_status)
        .where(PatientRecord.person_id == person_id)
        .order_by(PatientRecord.pregnancy_recorded_at.desc().nulls_last())
        .limit(1)
    )
    if status is None or status == "unknown":
        return None
    return bool(status == "pregnant")


# --- update ---------------------------------------------------------------------------


def update_record(
    *, session: Session, actor: Actor, record_id: uuid.UUID, data: PatientUpdate
) -> PatientRead:
    record = session.get(PatientRecord, record_id)
    if record is None:
        raise NotFound(f"No patient record {record_id}.")
    facts_ = _facts_or_404(session, record.person_id)
    policy.enforce(
        session,
        actor,
        facts_,
        policy.AccessAction.WRITE,
        resource_type=RESOURCE,
        resource_id=record.id,
        audit_action="update",
    )
    if record.institution_id != actor.institution_id:
        raise PermissionDenied("Only the institution that registered a record may change it.")
    changes = data.model_dump(exclude_unset=True)
    if changes.get("emergency_contact") is not None:
        changes["emergency_contact"] = data.emergency_contact.model_dump()  # type: ignore[union-attr]
    for key, value in changes.items():
        setattr(record, key, value)
    if {"family_name", "given_name"} & changes.keys():
        record.name = _full_name(record.family_name, record.given_name)
        record.name_pinyin = names.full_pinyin(record.family_name, record.given_name)
        record.name_initials = names.initials(record.name_pinyin)
        record.name_pinyin_compact = record.name_pinyin.replace(" ", "")
    if "pregnancy_status" in changes:
        record.pregnancy_recorded_at = utcnow()
    if "phones" in changes:
        _replace_phones(session, record)
    person = session.get(Person, record.person_id)
    assert person is not None
    golden.refresh(session, person)
    return _read(session, person, policy.Decision(True, policy.Basis.SAME_INSTITUTION, "update"))


def _replace_phones(session: Session, record: PatientRecord) -> None:
    for ident in session.scalars(
        select(PatientIdentifier).where(
            PatientIdentifier.record_id == record.id,
            PatientIdentifier.system == IdentifierSystem.PHONE,
        )
    ):
        session.delete(ident)
    session.flush()
    session.add_all(
        PatientIdentifier(record_id=record.id, system=IdentifierSystem.PHONE, value=phone)
        for phone in dict.fromkeys(record.phones)
    )


# --- consent --------------------------------------------------------------------------


def record_consent(
    *, session: Session, actor: Actor, person_id: uuid.UUID, data: ConsentIn
) -> ConsentRead:
    facts_ = _facts_or_404(session, person_id)
    policy.enforce(
        session,
        actor,
        facts_,
        policy.AccessAction.WRITE,
        resource_type="Consent",
        resource_id=person_id,
        audit_action="consent.record",
    )
    excluded: list[str] = []
    for code in data.excluded_institution_codes:
        institution = alliance_service.find_institution(session, code)
        if institution is None:
            raise InvalidInput(
                f"No institution with code {code!r}.", field="excluded_institution_codes"
            )
        excluded.append(str(institution.id))
    row = Consent(
        person_id=person_id,
        status=data.status,
        excluded_institution_ids=excluded,
        note=data.note,
        recorded_by=actor.user_id,
        recorded_at_institution_id=actor.institution_id,
        recorded_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return consent_rules.to_read(row)


def consent_history(session: Session, actor: Actor, person_id: uuid.UUID) -> list[ConsentRead]:
    facts_ = _facts_or_404(session, person_id)
    policy.enforce(
        session,
        actor,
        facts_,
        policy.AccessAction.READ,
        resource_type="Consent",
        resource_id=person_id,
    )
    return [consent_rules.to_read(c) for c in consent_rules.history(session, person_id)]


# --- search ---------------------------------------------------------------------------

SEARCH_CANDIDATES = 500


def search(
    session: Session, actor: Actor, q: str, *, limit: int, offset: int
) -> list[PatientSummary]:
    """Find people by name, pinyin, initials, identifier or phone.

    Hits are limited to people the actor may see: registered at the actor's
    institution, or sharing alliance-wide without excluding it.
    """
    if not actor.can(Permission.PATIENT_READ):
        raise PermissionDenied(f"Role {actor.role} may not search patients.")
    text = q.strip()
    if not text:
        raise InvalidInput("Type a name, pinyin, initials, ID number or phone.", field="q")
    # Check visibility (three queries a person) only until the page is full.
    visible: list[uuid.UUID] = []
    for pid in _candidate_person_ids(session, text):
        if _may_discover(session, actor, pid):
            visible.append(pid)
            if len(visible) >= offset + limit:
                break
    page = visible[offset : offset + limit]
    audit.record(
        session,
        actor,
        action="search",
        resource_type=RESOURCE,
        detail={"query": text, "returned": len(page)},
    )
    return [_summary(session, pid) for pid in page]


def _candidate_person_ids(session: Session, text: str) -> list[uuid.UUID]:
    conditions: list[ColumnElement[bool]] = []
    compact = text.replace(" ", "")
    ident_values = {compact, compact.upper()}
    with contextlib.suppress(IdNumberError):
        ident_values.add(identity.parse(compact).number)
    ident_records = select(PatientIdentifier.record_id).where(
        PatientIdentifier.value.in_(ident_values)
    )
    conditions.append(PatientRecord.id.in_(ident_records))
    if names.has_han(text):
        conditions.append(PatientRecord.name.startswith(compact, autoescape=True))
        pinyin = names.query_pinyin(compact)
        if pinyin:
            conditions.append(PatientRecord.name_pinyin == pinyin)  # homophones
    elif compact.isalpha():
        latin = names.normalise_latin(text)
        conditions.append(PatientRecord.name_pinyin.startswith(latin, autoescape=True))
        conditions.append(
            PatientRecord.name_pinyin_compact.startswith(latin.replace(" ", ""), autoescape=True)
        )
        conditions.append(PatientRecord.name_initials == latin.replace(" ", ""))
    rows = session.execute(
        select(PatientRecord.person_id)
        .where(or_(*conditions))
        .group_by(PatientRecord.person_id)
        .order_by(PatientRecord.person_id)
        .limit(SEARCH_CANDIDATES)
    ).all()
    return [row[0] for row in rows]


def _may_discover(session: Session, actor: Actor, person_id: uuid.UUID) -> bool:
    facts_ = facts(session, person_id)
    return facts_ is not None and policy.may_discover(session, actor, facts_)


def _summary(session: Session, person_id: uuid.UUID) -> PatientSummary:
    person = session.get(Person, person_id)
    assert person is not None
    records = golden.records_of(session, person_id)
    codes = alliance_service.institution_codes(session, [r.institution_id for r in records])
    return PatientSummary(
        id=person.id,
        name=person.name,
        name_pinyin=person.name_pinyin,
        sex=person.sex,
        birth_date=person.birth_date,
        age=_age(person.birth_date),
        id_number_masked=_mask(person.id_number, keep_start=6, keep_end=4),
        phone_masked=_mask(person.phone, keep_start=3, keep_end=4),
        institutions=sorted(
            {codes[r.institution_id] for r in records if r.institution_id in codes}
        ),
    )


def _age(born: date | None) -> int | None:
    if born is None:
        return None
    today = date.today()  # noqa: DTZ011
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _mask(value: str | None, *, keep_start: int, keep_end: int) -> str | None:
    if not value:
        return None
    if len(value) <= keep_start + keep_end:
        return "*" * len(value)
    return value[:keep_start] + "*" * (len(value) - keep_start - keep_end) + value[-keep_end:]


# --- for other domains ----------------------------------------------------------------


def local_record(
    session: Session, person_id: uuid.UUID, institution_id: uuid.UUID
) -> PatientRecord | None:
    """The person's source record at one institution (the newest, if several)."""
    return session.scalar(
        select(PatientRecord)
        .where(PatientRecord.person_id == person_id, PatientRecord.institution_id == institution_id)
        .order_by(PatientRecord.created_at.desc())
        .limit(1)
    )


def enforce_write(
    session: Session,
    actor: Actor,
    person_id: uuid.UUID,
    resource_type: str,
    *,
    audited: int = 1,
) -> policy.PatientFacts:
    """May the actor write a ``resource_type`` for the person? ``audited`` decisions
    (one per entry of a batch) from one read of the facts; a refusal raises, audited."""
    facts = _facts_or_404(session, person_id)
    policy.enforce(
        session,
        actor,
        facts,
        policy.AccessAction.WRITE,
        resource_type=resource_type,
        resource_id=person_id,
        audit_action="create",
        times=audited,
    )
    return facts


def local_record_for_write(
    session: Session,
    actor: Actor,
    person_id: uuid.UUID,
    resource_type: str,
    *,
    audited: int = 1,
) -> PatientRecord:
    """The actor's institution's record of the person, to write a ``resource_type``
    on, once the policy allowed the write (and audited a refusal). Clinical writes land
    on the writer's own record; a person not registered there yet is a conflict.
    ``audited`` decisions are recorded (one per entry of a batch) from one read of the
    facts."""
    enforce_write(session, actor, person_id, resource_type, audited=audited)
    assert actor.institution_id is not None  # the policy refuses writes without one
    record = local_record(session, person_id, actor.institution_id)
    if record is None:
        raise Conflict(
            "The patient is not registered at your institution yet: register them here first "
            "(the MPI links the registration to this person).",
            field="patient_id",
        )
    return record


def record_ids_of(session: Session, person_id: uuid.UUID) -> list[uuid.UUID]:
    return list(
        session.scalars(select(PatientRecord.id).where(PatientRecord.person_id == person_id))
    )


def record_ids_query(person_id: uuid.UUID | ColumnElement[uuid.UUID]) -> Select[uuid.UUID]:
    """``record_ids_of`` as a subquery to embed (one statement instead of two)."""
    return select(PatientRecord.id).where(PatientRecord.person_id == person_id)


def person_of_record(session: Session, record_id: uuid.UUID) -> uuid.UUID | None:
    return session.scalar(select(PatientRecord.person_id).where(PatientRecord.id == record_id))


def persons_of_records(
    session: Session, record_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[uuid.UUID, str]]:
    """record id -> (person id, the record's name), for many records in one query."""
    if not record_ids:
        return {}
    rows = session.execute(
        select(PatientRecord.id, PatientRecord.person_id, PatientRecord.name).where(
            PatientRecord.id.in_(record_ids)
        )
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def facts_or_404(session: Session, person_id: uuid.UUID) -> policy.PatientFacts:
    return _facts_or_404(session, person_id)


def facts_of_record(session: Session, record_id: uuid.UUID) -> policy.PatientFacts:
    """The policy facts of the person a source record belongs to (every clinical row
    points at a source record; the policy decides per person)."""
    person_id = person_of_record(session, record_id)
    if person_id is None:
        raise NotFound(f"No patient record {record_id}.")
    return _facts_or_404(session, person_id)


def find_local_record(
    session: Session,
    institution_id: uuid.UUID,
    *,
    mrn: str | None = None,
    id_number: str | None = None,
) -> PatientRecord | None:
    """A member's source record by its MRN, else by resident ID (for interfaces such as
    HL7 v2 that name the patient by the sender's identifiers)."""
    if mrn:
        found = session.scalar(
            select(PatientRecord).where(
                PatientRecord.institution_id == institution_id, PatientRecord.mrn == mrn
            )
        )
        if found is not None:
            return found
    if id_number:
        return session.scalar(
            select(PatientRecord)
            .where(
                PatientRecord.institution_id == institution_id,
                PatientRecord.id_number == id_number,
            )
            .order_by(PatientRecord.created_at.desc())
            .limit(1)
        )
    return None
