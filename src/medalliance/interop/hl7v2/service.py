"""Ingest one ORU^R01: check the sender, drop duplicates, resolve the patient through
the MPI, record every result through the results service, keep the raw message.

Who may post: an ``interface_gateway`` account (permission ``interop:hl7v2-ingest``)
of a member institution, for that institution only — MSH-4 must be its code. Such an
account holds no patient permission of its own; while storing its own institution's
message it acts as that institution's registration clerk (patient write at its own
institution only, every write audited under its name).

All or nothing: a message with any bad field gets AE/AR naming the segment and field,
and nothing of it is stored (a savepoint is rolled back); a duplicate MSH-10 from the
same sender gets the ACK again and stores nothing twice.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medalliance.access.permissions import Permission
from medalliance.audit import service as audit
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.patients import identity as patient_identity
from medalliance.domains.patients import service as patients_service
from medalliance.domains.patients.identity import IdNumberError
from medalliance.domains.patients.models import IdentifierSystem
from medalliance.domains.patients.schemas import IdentifierIn, PatientCreate
from medalliance.domains.results import service as results_service
from medalliance.domains.results.models import Hl7Message
from medalliance.interop.hl7v2 import ack, parser
from medalliance.interop.hl7v2.parser import Hl7Problem, ParsedOru, PatientIdentity
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import DomainError

MAX_MESSAGE_CHARS = 1_000_000
RESOURCE = "Hl7Message"
# Where a patients-service field came from in PID.
PID_FIELDS = {
    "family_name": 5,
    "given_name": 5,
    "sex": 8,
    "birth_date": 7,
    "id_number": 3,
    "identifiers": 3,
    "mrn": 3,
    "phones": 13,
    "postcode": 11,
    "province": 11,
    "city": 11,
    "street": 11,
}
LAB_SERVICE_FIELDS = {"unit": ("OBX", 6), "item_code": ("OBX", 3), "patient_id": ("PID", 3)}
IMAGING_SERVICE_FIELDS = {"item_code": ("OBR", 4), "patient_id": ("PID", 3)}


@dataclass(slots=True)
class Outcome:
    code: str  # AA | AE | AR
    ack: str
    http_status: int
    duplicate: bool = False
    problem: Hl7Problem | None = None
    message_id: uuid.UUID | None = None
    result_ids: list[uuid.UUID] = field(default_factory=list)


def ingest(session: Session, actor: Actor, raw: str) -> Outcome:
    raw = parser.normalise(raw)
    if len(raw) > MAX_MESSAGE_CHARS:
        too_big = Hl7Problem("MSH", 0, "the message is larger than 1 MB", "207", ack_code="AR")
        return _rejected(session, actor, parser.Header(), too_big, 413)
    try:
        parsed = parser.parse(raw)
    except Hl7Problem as problem:
        return _rejected(session, actor, parser.header_of(raw), problem)
    header = parsed.header
    sender = alliance_service.find_institution(session, parsed.sending_facility)
    if sender is None:
        unknown = Hl7Problem("MSH", 4, f"unknown sending institution {parsed.sending_facility!r}",
                             "204", ack_code="AR")  # fmt: skip
        return _rejected(session, actor, header, unknown)
    if not actor.can(Permission.HL7_INGEST) or actor.institution_id != sender.id:
        foreign = Hl7Problem("MSH", 4, "this account may post results only for its own "
                             "institution", "207", ack_code="AR")  # fmt: skip
        return _rejected(session, actor, header, foreign, 403, denied=True)
    earlier = _stored_message(session, sender.id, parsed.control_id)
    if earlier is not None:
        return _duplicate(session, actor, header, earlier)
    writer = dataclasses.replace(actor, permissions=actor.permissions | {Permission.PATIENT_WRITE})
    audit_mark = audit.pending_mark(session)
    savepoint = session.begin_nested()
    try:
        outcome = _store(session, writer, sender.id, parsed, raw, header)
        savepoint.commit()
        return outcome
    except Hl7Problem as problem:
        savepoint.rollback()
        audit.discard_since(session, audit_mark)  # writes undone; denials stay
        return _rejected(session, actor, header, problem)
    except IntegrityError:
        # Another request stored the same control id between our check and insert.
        savepoint.rollback()
        audit.discard_since(session, audit_mark)
        again = _stored_message(session, sender.id, parsed.control_id)
        if again is None:
            raise
        return _duplicate(session, actor, header, again)


def _stored_message(session: Session, sender_id: uuid.UUID, control_id: str) -> uuid.UUID | None:
    """The message this sender already sent with this MSH-10 control id, if any."""
    return session.scalar(
        select(Hl7Message.id).where(
            Hl7Message.sending_institution_id == sender_id,
            Hl7Message.control_id == control_id,
        )
    )


def _store(
    session: Session,
    writer: Actor,
    sender_id: uuid.UUID,
    parsed: ParsedOru,
    raw: str,
    header: parser.Header,
) -> Outcome:
    message = Hl7Message(
        sending_institution_id=sender_id,
        control_id=parsed.control_id,
        message_type=parsed.message_type[:32],
        raw=raw,
        received_at=utcnow(),
        received_by=writer.user_id,
    )
    session.add(message)
    session.flush()
    record_id, person_id, review = _resolve_patient(session, writer, sender_id, parsed.patient)
    ids: list[uuid.UUID] = []
    if parsed.labs:
        try:
            labs = results_service.record_lab_results(
                session=session,
                actor=writer,
                person_id=person_id,
                data=[lab.data for lab in parsed.labs],
                record_id=record_id,
                source="hl7v2",
                message_id=message.id,
            )
        except DomainError as exc:
            index = int(exc.extra.get("index", 0))
            sequence = parsed.labs[index].obx_sequence
            raise _located(exc, LAB_SERVICE_FIELDS, ("OBX", 5), sequence) from exc
        ids.extend(labs)
    for study in parsed.imaging:
        try:
            result = results_service.record_imaging_report(
                session=session,
                actor=writer,
                person_id=person_id,
                data=study.data,
                record_id=record_id,
                source="hl7v2",
                message_id=message.id,
            )
        except DomainError as exc:
            raise _located(exc, IMAGING_SERVICE_FIELDS, ("OBR", 4), study.obr_sequence) from exc
        ids.append(result.id)
    message.patient_record_id = record_id
    message.result_count = len(ids)
    session.flush()
    audit.record(
        session,
        writer,
        action="create",
        resource_type=RESOURCE,
        resource_id=message.id,
        patient_id=person_id,
        detail={
            "control_id": parsed.control_id,
            "results": len(ids),
            "review_candidates": review,
        },
    )
    return Outcome("AA", ack.build(header, "AA"), 200, message_id=message.id, result_ids=ids)


def _located(
    exc: DomainError, where: dict[str, tuple[str, int]], default: tuple[str, int], sequence: int
) -> Hl7Problem:
    segment, position = where.get(exc.field or "", default)
    if segment == "PID":
        sequence = 1
    return Hl7Problem(segment, position, exc.detail, "102", sequence)


def _resolve_patient(
    session: Session, writer: Actor, sender_id: uuid.UUID, who: PatientIdentity
) -> tuple[uuid.UUID, uuid.UUID, int]:
    """The sender's source record of the patient (by MRN, then resident ID), or a new
    one registered from PID through the patients service, so the MPI matches it like
    any registration (uncertain matches go to the review queue)."""
    resident: str | None = None
    if who.resident_id:
        try:
            resident = patient_identity.parse(who.resident_id).number
        except IdNumberError as exc:
            raise Hl7Problem("PID", 3, f"resident ID: {exc}", "102") from exc
    record = patients_service.find_local_record(session, sender_id, mrn=who.mrn, id_number=resident)
    if record is not None:
        return record.id, record.person_id, 0
    if not who.family_name or not who.given_name:
        raise Hl7Problem("PID", 5, "family and given name are needed to register the patient",
                         "101")  # fmt: skip
    if who.birth_date is None:
        raise Hl7Problem("PID", 7, "the birth date is needed to register the patient", "101")
    if who.sex is None:
        raise Hl7Problem("PID", 8, "the sex is needed to register the patient", "101")
    identifiers = []
    if who.passport:
        identifiers.append(IdentifierIn(system=IdentifierSystem.PASSPORT, value=who.passport))
    try:
        data = PatientCreate(
            mrn=who.mrn,
            family_name=who.family_name,
            given_name=who.given_name,
            sex=who.sex,  # validated by pydantic
            birth_date=who.birth_date,
            id_number=resident,
            identifiers=identifiers,
            phones=who.phones,
            province=who.province,
            city=who.city,
            street=who.street,
            postcode=who.postcode,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first.get("loc") else ""
        raise Hl7Problem("PID", PID_FIELDS.get(name, 3), str(first.get("msg")), "102") from exc
    try:
        registered = patients_service.register(session=session, actor=writer, data=data)
    except DomainError as exc:
        raise Hl7Problem("PID", PID_FIELDS.get(exc.field or "", 3), exc.detail, "102") from exc
    return registered.record_id, registered.patient.id, registered.review_candidates


def _rejected(
    session: Session,
    actor: Actor,
    header: parser.Header,
    problem: Hl7Problem,
    http_status: int | None = None,
    *,
    denied: bool = False,
) -> Outcome:
    audit.record(
        session,
        actor,
        action="denied" if denied else "reject",
        resource_type=RESOURCE,
        resource_id=header.control_id[:64] or None,
        outcome=audit.Outcome.DENIED if denied else audit.Outcome.FAILURE,
        reason=str(problem),
        detail={
            "ack": problem.ack_code,
            "location": problem.location,
            "sender": header.sending_facility,
        },
    )
    status = http_status or (422 if problem.ack_code == "AE" else 400)
    return Outcome(problem.ack_code, ack.build(header, problem.ack_code, problem), status,
                   problem=problem)  # fmt: skip


def _duplicate(
    session: Session, actor: Actor, header: parser.Header, message_id: uuid.UUID
) -> Outcome:
    audit.record(
        session,
        actor,
        action="duplicate",
        resource_type=RESOURCE,
        resource_id=message_id,
        detail={"control_id": header.control_id, "sender": header.sending_facility},
    )
    return Outcome("AA", ack.build(header, "AA"), 200, duplicate=True, message_id=message_id)
