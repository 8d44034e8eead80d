"""Administration: member institutions, departments, beds (status), practitioners and
accounts (create, role, unlock, disable), through the alliance and access services
with their permissions and audit (the same use cases as /api/institutions …, /api/users)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from medalliance.access import accounts
from medalliance.access.permissions import Permission
from medalliance.access.schemas import UserCreate, UserUpdate
from medalliance.api.deps import DbSession
from medalliance.api.problems import status_for
from medalliance.domains.alliance import schemas
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.alliance.models import (
    BedStatus,
    Discipline,
    InstitutionType,
    PractitionerTitle,
    Tier,
)
from medalliance.kernel.errors import DomainError, InvalidInput, PermissionDenied
from medalliance.kernel.pagination import PageRequest
from medalliance.kernel.roles import Role
from medalliance.web import i18n
from medalliance.web.forms import FormErrors, validate
from medalliance.web.labels import ROLE_LABELS
from medalliance.web.pages.clinical_forms import PostedForm, attempt, text
from medalliance.web.render import flash, redirect, render
from medalliance.web.session import WebUser, require_permission

router = APIRouter(prefix="/admin")
RegistryReader = Annotated[WebUser, Depends(require_permission(Permission.REGISTRY_READ))]
AllianceAdmin = Annotated[WebUser, Depends(require_permission(Permission.ALLIANCE_MANAGE))]
RegistryManager = Annotated[WebUser, Depends(require_permission(Permission.REGISTRY_MANAGE))]
BedKeeper = Annotated[WebUser, Depends(require_permission(Permission.BEDS_UPDATE))]
UsersManager = Annotated[WebUser, Depends(require_permission(Permission.USERS_MANAGE))]
N_ = i18n.N_
Model = TypeVar("Model", bound=BaseModel)
PAGE_SIZE = 50

LABELS: dict[str, dict[str, str]] = {
    "tier": {Tier.LEAD: N_("Lead"), Tier.SECONDARY: N_("Secondary"), Tier.PRIMARY: N_("Primary")},
    "type": {
        InstitutionType.TCM: N_("TCM hospital"),
        InstitutionType.GENERAL: N_("General hospital"),
        InstitutionType.INTEGRATED: N_("Integrated hospital"),
        InstitutionType.SPECIALISED: N_("Specialised hospital"),
        InstitutionType.COMMUNITY_HEALTH_CENTRE: N_("Community health centre"),
    },
    "discipline": {
        Discipline.WESTERN: N_("Western medicine"),
        Discipline.TCM: N_("TCM"),
        Discipline.INTEGRATED: N_("Integrated"),
    },
    "title": {
        PractitionerTitle.CHIEF_PHYSICIAN: N_("Chief physician"),
        PractitionerTitle.ASSOCIATE_CHIEF_PHYSICIAN: N_("Associate chief physician"),
        PractitionerTitle.ATTENDING_PHYSICIAN: N_("Attending physician"),
        PractitionerTitle.RESIDENT_PHYSICIAN: N_("Resident physician"),
        PractitionerTitle.GENERAL_PRACTITIONER: N_("General practitioner"),
        PractitionerTitle.CHIEF_NURSE: N_("Chief nurse"),
        PractitionerTitle.SUPERVISOR_NURSE: N_("Supervisor nurse"),
        PractitionerTitle.NURSE: N_("Nurse"),
        PractitionerTitle.CHIEF_PHARMACIST: N_("Chief pharmacist"),
        PractitionerTitle.PHARMACIST: N_("Pharmacist"),
        PractitionerTitle.TECHNICIAN: N_("Technician"),
        PractitionerTitle.OTHER: N_("Other"),
    },
    "bed": {
        BedStatus.FREE: N_("Free"),
        BedStatus.OCCUPIED: N_("Occupied"),
        BedStatus.CLEANING: N_("Cleaning"),
        BedStatus.CLOSED: N_("Closed"),
    },
    "role": ROLE_LABELS,
}
# Roles an account page offers (machine accounts are made where their gateway is).
HUMAN_ROLES = [r for r in Role if r not in (Role.DEVICE_GATEWAY, Role.INTERFACE_GATEWAY)]


# The registry's refusals about active and deactivated entries, by the ``reason`` the
# service gives (its English sentence names codes, so it cannot be a msgid itself).
REFUSALS: dict[str, str] = {
    "institution-inactive": N_(
        "Institution %(registry_code)s is deactivated: nothing new can be assigned to it."
    ),
    "department-inactive": N_(
        "Department %(registry_code)s is deactivated: nothing new can be assigned to it."
    ),
    "already-active": N_("It is already active."),
    "already-deactivated": N_("It is already deactivated."),
    "leads-active-members": N_(
        "This institution still leads active members (%(members)s); give them another "
        "lead institution first."
    ),
    "lead-inactive": N_(
        "Its lead institution %(registry_code)s is deactivated; reactivate it or choose another "
        "lead first."
    ),
    "occupied-beds": N_(
        "This department has occupied beds (%(occupied)s); discharge or transfer the "
        "patients first."
    ),
}


def refusal(exc: DomainError) -> str:
    """A service's refusal in the user's language."""
    msgid = REFUSALS.get(str(exc.extra.get("reason", "")))
    if msgid is None:
        return i18n.gettext(exc.detail)
    return i18n.gettext(msgid, **{k: str(v) for k, v in exc.extra.items() if k != "reason"})


def _form_dict(form: FormData, names: tuple[str, ...], prefix: str = "") -> dict[str, str]:
    return {name: text(form, prefix + name) for name in names}


def _prefixed(errors: FormErrors, prefix: str) -> FormErrors:
    """Errors of one of several forms on a page, named as that form names its fields."""
    out = FormErrors()
    for key, message in errors.items():
        out.add(prefix + key, message)
    return out


def _run(
    session: Session,
    errors: FormErrors,
    model: type[Model],
    values: dict[str, Any],
    use_case: Callable[[Model], object],
) -> tuple[bool, int]:
    """Validate with the domain's schema, then run the use case in a savepoint; the
    refusal lands in ``errors`` beside its field. (ok, HTTP status for the re-shown form)."""
    data = validate(model, values, errors)
    if data is None:
        return False, 422
    try:
        attempt(session, lambda: use_case(data))
    except PermissionDenied:
        raise
    except ValidationError as exc:
        errors.add_validation(exc)
        return False, 422
    except DomainError as exc:
        errors.add(exc.field, refusal(exc))
        return False, status_for(exc)
    return True, 200


def _save_edit(
    session: Session,
    form: FormData,
    fields: tuple[str, ...],
    current: dict[str, str],
    model: type[Model],
    use_case: Callable[[Model], object],
) -> tuple[bool, int, FormErrors, dict[str, Any]]:
    """An edit form: what changed against ``current``, validated and saved through the
    use case. (ok, HTTP status for the re-shown form, the errors, the changes)."""
    errors = FormErrors()
    changes = _changes(form, fields, current, errors)
    if errors:
        return False, 422, errors, changes
    if not changes:
        return True, 200, errors, changes
    ok, status = _run(session, errors, model, changes, use_case)
    return ok, status, errors, changes


def _done(request: Request, url: str, message: str) -> Response:
    response = redirect(request, url)
    flash(response, message, kind="success")
    return response


# --- institutions -------------------------------------------------------------------


@router.get("")
def admin_home(request: Request, user: RegistryReader) -> Response:
    if user.can(Permission.USERS_MANAGE) and not user.can(Permission.REGISTRY_MANAGE):
        return redirect(request, "/admin/accounts")
    return redirect(request, "/admin/institutions")


def _institutions_page(
    request: Request,
    session: Session,
    user: WebUser,
    *,
    errors: FormErrors | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    page = alliance_service.list_institutions(
        session, user.actor, include_inactive=True, page=PageRequest(limit=500, offset=0)
    )
    return render(
        request,
        "admin/institutions.html",
        status_code,
        institutions=page.items,
        labels=LABELS,
        errors=errors if errors is not None else FormErrors(),
        values=values or {},
        may_create=user.can(Permission.ALLIANCE_MANAGE),
        active_institutions=[i for i in page.items if i.active],
    )


@router.get("/institutions")
def institutions(request: Request, session: DbSession, user: RegistryReader) -> Response:
    return _institutions_page(request, session, user)


INSTITUTION_FIELDS = (
    "code",
    "name_zh",
    "name_en",
    "tier",
    "type",
    "district",
    "lead_institution_code",
)


@router.post("/institutions")
def create_institution(
    request: Request, session: DbSession, user: AllianceAdmin, form: PostedForm
) -> Response:
    values = _form_dict(form, INSTITUTION_FIELDS)
    errors = FormErrors()
    ok, status = _run(
        session,
        errors,
        schemas.InstitutionCreate,
        values,
        lambda data: alliance_service.create_institution(
            session=session, actor=user.actor, data=data
        ),
    )
    if not ok:
        return _institutions_page(
            request, session, user, errors=errors, values=values, status_code=status
        )
    return _done(request, f"/admin/institutions/{values['code']}", N_("Institution created."))


# --- one institution: departments and practitioners ----------------------------------


def _institution_page(
    request: Request,
    session: Session,
    user: WebUser,
    code: str,
    *,
    errors: FormErrors | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    institution = alliance_service.get_institution(session, user.actor, code)
    departments = alliance_service.list_departments(session, user.actor, code)
    practitioners = alliance_service.list_practitioners(
        session,
        user.actor,
        institution_code=code,
        department_id=None,
        page=PageRequest(limit=500, offset=0),
    )
    may_manage = _may_manage(user, institution.id)
    return render(
        request,
        "admin/institution.html",
        status_code,
        institution=institution,
        departments=departments,
        # Only an active department is offered for a new practitioner.
        assignable_departments=[d for d in departments if d.active],
        department_names={d.id: d for d in departments},
        practitioners=practitioners.items,
        labels=LABELS,
        errors=errors if errors is not None else FormErrors(),
        values=values or {},
        may_manage=may_manage,
    )


def _may_manage(user: WebUser, institution_id: uuid.UUID) -> bool:
    """Alliance administrators manage every member, institution administrators their own
    (the service decides again; this only chooses what the page offers)."""
    return user.can(Permission.REGISTRY_MANAGE) and (
        user.can(Permission.ALLIANCE_MANAGE) or user.actor.institution_id == institution_id
    )


@router.get("/institutions/{code}")
def institution(request: Request, code: str, session: DbSession, user: RegistryReader) -> Response:
    return _institution_page(request, session, user, code)


def _institution_form(
    request: Request,
    session: Session,
    user: WebUser,
    code: str,
    form: FormData,
    prefix: str,
    create: tuple[type[Model], tuple[str, ...], Callable[[Model], object]],
    done: str,
) -> Response:
    """One of the institution page's forms (fields named ``<prefix><field>``): created,
    or the page again with the errors beside that form's fields."""
    model, fields, use_case = create
    values = _form_dict(form, fields, prefix)
    errors = FormErrors()
    body = (
        {**values, "institution_code": code} if "institution_code" in model.model_fields else values
    )
    ok, status = _run(session, errors, model, body, use_case)
    if not ok:
        return _institution_page(
            request,
            session,
            user,
            code,
            errors=_prefixed(errors, prefix),
            values={prefix + k: v for k, v in values.items()},
            status_code=status,
        )
    return _done(request, f"/admin/institutions/{code}", done)


@router.post("/institutions/{code}/departments")
def create_department(
    request: Request, code: str, session: DbSession, user: RegistryManager, form: PostedForm
) -> Response:
    def use_case(data: schemas.DepartmentCreate) -> object:
        return alliance_service.create_department(
            session=session, actor=user.actor, institution_code=code, data=data
        )

    fields = ("code", "name_zh", "name_en", "discipline")
    create = (schemas.DepartmentCreate, fields, use_case)
    return _institution_form(
        request, session, user, code, form, "dept.", create, N_("Department created.")
    )


PRACTITIONER_FIELDS = (
    "name",
    "name_en",
    "title",
    "discipline",
    "department_id",
    "specialty",
    "licence_number",
)


@router.post("/institutions/{code}/practitioners")
def create_practitioner(
    request: Request, code: str, session: DbSession, user: RegistryManager, form: PostedForm
) -> Response:
    def use_case(data: schemas.PractitionerCreate) -> object:
        return alliance_service.create_practitioner(session=session, actor=user.actor, data=data)

    create = (schemas.PractitionerCreate, PRACTITIONER_FIELDS, use_case)
    return _institution_form(
        request, session, user, code, form, "prac.", create, N_("Practitioner added.")
    )


# --- edit, deactivate, reactivate ---------------------------------------------------

INSTITUTION_EDIT_FIELDS: tuple[str, ...] = (
    "name_zh",
    "name_en",
    "tier",
    "type",
    "district",
    "address",
    "lead_institution_code",
)
# Only an alliance administrator may change these (the service says so too).
STRUCTURAL_FIELDS = frozenset({"tier", "type", "lead_institution_code"})
REQUIRED_EDIT_FIELDS = frozenset({"name_zh", "name_en", "tier", "type", "discipline"})
STATUS_DONE = {
    ("institution", "deactivate"): N_("Institution deactivated."),
    ("institution", "reactivate"): N_("Institution reactivated."),
    ("department", "deactivate"): N_("Department deactivated."),
    ("department", "reactivate"): N_("Department reactivated."),
}


def _changes(
    form: FormData, fields: tuple[str, ...], current: dict[str, Any], errors: FormErrors
) -> dict[str, Any]:
    """The fields the form changed: an emptied optional field is cleared (None), an
    emptied required one is an error, an unchanged one is left out (so the audit trail
    names only real changes, and a structural field nobody touched needs no right)."""
    changes: dict[str, Any] = {}
    for name in fields:
        if name not in form:
            continue
        value = text(form, name)
        if not value and name in REQUIRED_EDIT_FIELDS:
            errors.add(name, N_("This field is required."))
            continue
        new: str | None = value or None
        if new != current.get(name):
            changes[name] = new
    return changes


def _institution_current(session: Session, institution: Any) -> dict[str, Any]:
    lead = (
        None
        if institution.lead_institution_id is None
        else alliance_service.institution_by_id(session, institution.lead_institution_id)
    )
    return {
        "name_zh": institution.name_zh,
        "name_en": institution.name_en,
        "tier": str(institution.tier),
        "type": str(institution.type),
        "district": institution.district,
        "address": institution.address,
        "lead_institution_code": None if lead is None else lead.code,
    }


def _institution_edit_page(
    request: Request,
    session: Session,
    user: WebUser,
    code: str,
    *,
    errors: FormErrors | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    institution = alliance_service.get_institution(session, user.actor, code)
    if not _may_manage(user, institution.id):
        raise PermissionDenied("You can only manage your own institution.")
    current = _institution_current(session, institution)
    return render(
        request,
        "admin/institution_edit.html",
        status_code,
        institution=institution,
        labels=LABELS,
        errors=errors if errors is not None else FormErrors(),
        values={**current, **(values or {})},
        may_restructure=user.can(Permission.ALLIANCE_MANAGE),
        active_institutions=[
            i for i in _active_institutions(session, user) if i.id != institution.id
        ],
    )


@router.get("/institutions/{code}/edit")
def edit_institution_page(
    request: Request, code: str, session: DbSession, user: RegistryManager
) -> Response:
    return _institution_edit_page(request, session, user, code)


@router.post("/institutions/{code}/edit")
def edit_institution(
    request: Request, code: str, session: DbSession, user: RegistryManager, form: PostedForm
) -> Response:
    institution = alliance_service.get_institution(session, user.actor, code)
    fields = INSTITUTION_EDIT_FIELDS
    if not user.can(Permission.ALLIANCE_MANAGE):
        fields = tuple(f for f in fields if f not in STRUCTURAL_FIELDS)
    ok, status, errors, changes = _save_edit(
        session,
        form,
        fields,
        _institution_current(session, institution),
        schemas.InstitutionUpdate,
        lambda data: alliance_service.update_institution(
            session=session, actor=user.actor, code=code, data=data
        ),
    )
    if not ok:
        shown = {name: text(form, name) for name in fields if name in form}
        return _institution_edit_page(
            request, session, user, code, errors=errors, values=shown, status_code=status
        )
    message = N_("Institution saved.") if changes else N_("Nothing was changed.")
    return _done(request, f"/admin/institutions/{code}", message)


def _status_action(form: FormData) -> bool | None:
    """deactivate → False, reactivate → True, anything else → None."""
    return {"deactivate": False, "reactivate": True}.get(text(form, "action"))


@router.post("/institutions/{code}/status")
def institution_status(
    request: Request, code: str, session: DbSession, user: AllianceAdmin, form: PostedForm
) -> Response:
    """Deactivate or reactivate a member institution (alliance administrators)."""
    active = _status_action(form)
    errors = FormErrors()
    if active is None:
        errors.add("active", N_("Choose one of the options."))
        return _institution_edit_page(request, session, user, code, errors=errors, status_code=422)
    try:
        attempt(
            session,
            lambda: alliance_service.set_institution_active(
                session=session, actor=user.actor, code=code, active=active
            ),
        )
    except PermissionDenied:
        raise
    except DomainError as exc:
        errors.add("active", refusal(exc))
        return _institution_edit_page(
            request, session, user, code, errors=errors, status_code=status_for(exc)
        )
    action = "reactivate" if active else "deactivate"
    return _done(request, f"/admin/institutions/{code}", STATUS_DONE[("institution", action)])


DEPARTMENT_EDIT_FIELDS = ("name_zh", "name_en", "discipline")


def _department_edit_page(
    request: Request,
    session: Session,
    user: WebUser,
    department_id: uuid.UUID,
    *,
    errors: FormErrors | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    department = alliance_service.get_department(session, user.actor, department_id)
    if not _may_manage(user, department.institution_id):
        raise PermissionDenied("You can only manage your own institution.")
    institution = alliance_service.institution_by_id(session, department.institution_id)
    current = {name: str(getattr(department, name)) for name in DEPARTMENT_EDIT_FIELDS}
    return render(
        request,
        "admin/department_edit.html",
        status_code,
        department=department,
        institution=institution,
        labels=LABELS,
        errors=errors if errors is not None else FormErrors(),
        values={**current, **(values or {})},
    )


@router.get("/departments/{department_id}/edit")
def edit_department_page(
    request: Request, department_id: uuid.UUID, session: DbSession, user: RegistryManager
) -> Response:
    return _department_edit_page(request, session, user, department_id)


@router.post("/departments/{department_id}/edit")
def edit_department(
    request: Request,
    department_id: uuid.UUID,
    session: DbSession,
    user: RegistryManager,
    form: PostedForm,
) -> Response:
    department = alliance_service.get_department(session, user.actor, department_id)
    current = {name: str(getattr(department, name)) for name in DEPARTMENT_EDIT_FIELDS}
    ok, status, errors, changes = _save_edit(
        session,
        form,
        DEPARTMENT_EDIT_FIELDS,
        current,
        schemas.DepartmentUpdate,
        lambda data: alliance_service.update_department(
            session=session, actor=user.actor, department_id=department_id, data=data
        ),
    )
    if not ok:
        shown = {name: text(form, name) for name in DEPARTMENT_EDIT_FIELDS if name in form}
        return _department_edit_page(
            request, session, user, department_id, errors=errors, values=shown, status_code=status
        )
    code = _institution_code(session, department.institution_id)
    message = N_("Department saved.") if changes else N_("Nothing was changed.")
    return _done(request, f"/admin/institutions/{code}", message)


@router.post("/departments/{department_id}/status")
def department_status(
    request: Request,
    department_id: uuid.UUID,
    session: DbSession,
    user: RegistryManager,
    form: PostedForm,
) -> Response:
    """Deactivate or reactivate a department (its institution's administrators too)."""
    active = _status_action(form)
    errors = FormErrors()
    if active is None:
        errors.add("active", N_("Choose one of the options."))
        return _department_edit_page(
            request, session, user, department_id, errors=errors, status_code=422
        )
    try:
        department = attempt(
            session,
            lambda: alliance_service.set_department_active(
                session=session, actor=user.actor, department_id=department_id, active=active
            ),
        )
    except PermissionDenied:
        raise
    except DomainError as exc:
        errors.add("active", refusal(exc))
        return _department_edit_page(
            request, session, user, department_id, errors=errors, status_code=status_for(exc)
        )
    code = _institution_code(session, department.institution_id)
    action = "reactivate" if active else "deactivate"
    return _done(request, f"/admin/institutions/{code}", STATUS_DONE[("department", action)])


def _institution_code(session: Session, institution_id: uuid.UUID) -> str:
    return alliance_service.institution_codes(session, [institution_id]).get(institution_id, "")


# --- beds -------------------------------------------------------------------------


def _beds_page(
    request: Request,
    session: Session,
    user: WebUser,
    department_id: uuid.UUID,
    *,
    errors: FormErrors | None = None,
    status_code: int = 200,
) -> Response:
    department = alliance_service.get_department(session, user.actor, department_id)
    beds = alliance_service.list_beds(session, user.actor, department_id)
    institution = alliance_service.institution_by_id(session, department.institution_id)
    own = (
        user.can(Permission.ALLIANCE_MANAGE)
        or user.actor.institution_id == department.institution_id
    )
    return render(
        request,
        "admin/beds.html",
        status_code,
        department=department,
        institution=institution,
        beds=beds,
        labels=LABELS,
        statuses=list(BedStatus),
        errors=errors if errors is not None else FormErrors(),
        may_update=user.can(Permission.BEDS_UPDATE) and own,
        may_create=user.can(Permission.REGISTRY_MANAGE) and own and department.active,
        may_edit=user.can(Permission.REGISTRY_MANAGE) and own,
    )


@router.get("/departments/{department_id}/beds")
def beds(
    request: Request, department_id: uuid.UUID, session: DbSession, user: RegistryReader
) -> Response:
    return _beds_page(request, session, user, department_id)


@router.post("/departments/{department_id}/beds")
def create_bed(
    request: Request,
    department_id: uuid.UUID,
    session: DbSession,
    user: RegistryManager,
    form: PostedForm,
) -> Response:
    errors = FormErrors()
    ok, status = _run(
        session,
        errors,
        schemas.BedCreate,
        _form_dict(form, ("code", "status")),
        lambda data: alliance_service.create_bed(
            session=session, actor=user.actor, department_id=department_id, data=data
        ),
    )
    if not ok:
        return _beds_page(request, session, user, department_id, errors=errors, status_code=status)
    return _done(request, f"/admin/departments/{department_id}/beds", N_("Bed added."))


@router.post("/beds/{bed_id}/status")
def set_bed_status(
    request: Request, bed_id: uuid.UUID, session: DbSession, user: BedKeeper, form: PostedForm
) -> Response:
    department_id = _uuid(text(form, "department_id"))
    if department_id is None:
        raise InvalidInput(N_("Change a bed from its department's page."))
    errors = FormErrors()
    ok, status = _run(
        session,
        errors,
        schemas.BedStatusUpdate,
        _form_dict(form, ("status", "expected_version")),
        lambda data: alliance_service.set_bed_status(
            session=session, actor=user.actor, bed_id=bed_id, data=data
        ),
    )
    if not ok:
        keyed = FormErrors()
        keyed.add(f"bed-{bed_id}", next(iter(errors.values()), ""))
        return _beds_page(request, session, user, department_id, errors=keyed, status_code=status)
    return _done(request, f"/admin/departments/{department_id}/beds", N_("Bed status changed."))


def _uuid(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None


# --- accounts ---------------------------------------------------------------------


def _accounts_page(
    request: Request,
    session: Session,
    user: WebUser,
    offset: int = 0,
    *,
    errors: FormErrors | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    page = accounts.list_users(
        session,
        user.actor,
        institution_code=None,
        role=None,
        page=PageRequest(limit=PAGE_SIZE, offset=offset),
    )
    institutions = alliance_service.institutions_by_id(
        session, list({u.institution_id for u in page.items if u.institution_id})
    )
    return render(
        request,
        "admin/accounts.html",
        status_code,
        users=page.items,
        total=page.total,
        offset=offset,
        limit=PAGE_SIZE,
        institutions=institutions,
        roles=HUMAN_ROLES,
        labels=LABELS,
        errors=errors if errors is not None else FormErrors(),
        values=values or {},
        is_alliance_admin=user.role is Role.ALLIANCE_ADMIN,
        me=user.actor.user_id,
        active_institutions=_active_institutions(session, user)
        if user.role is Role.ALLIANCE_ADMIN
        else [],
    )


def _active_institutions(session: Session, user: WebUser) -> list[Any]:
    """The institutions a form may offer for something new: the active ones."""
    return alliance_service.list_institutions(
        session, user.actor, page=PageRequest(limit=500, offset=0)
    ).items


@router.get("/accounts")
def accounts_page(
    request: Request,
    session: DbSession,
    user: UsersManager,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    return _accounts_page(request, session, user, offset)


ACCOUNT_FIELDS = ("username", "display_name", "password", "role", "institution_code")


@router.post("/accounts")
def create_account(
    request: Request, session: DbSession, user: UsersManager, form: PostedForm
) -> Response:
    values = _form_dict(form, ACCOUNT_FIELDS)
    if user.role is not Role.ALLIANCE_ADMIN:
        # An institution administrator creates accounts of their own institution only.
        values["institution_code"] = _own_code(session, user)
    errors = FormErrors()
    ok, status = _run(
        session,
        errors,
        UserCreate,
        values,
        lambda data: accounts.create_user(session=session, actor=user.actor, data=data),
    )
    if not ok:
        values.pop("password", None)  # never sent back into the page
        return _accounts_page(
            request, session, user, errors=errors, values=values, status_code=status
        )
    return _done(request, "/admin/accounts", N_("Account created."))


def _own_code(session: Session, user: WebUser) -> str:
    if user.actor.institution_id is None:
        return ""
    return alliance_service.institution_codes(session, [user.actor.institution_id]).get(
        user.actor.institution_id, ""
    )


ACCOUNT_ACTIONS: dict[str, str] = {
    "role": N_("Role changed."),
    "unlock": N_("Account unlocked."),
    "disable": N_("Account disabled."),
    "enable": N_("Account enabled."),
}


@router.post("/accounts/{user_id}")
def update_account(
    request: Request, user_id: uuid.UUID, session: DbSession, user: UsersManager, form: PostedForm
) -> Response:
    """One change at a time: the role, unlock, disable or enable."""
    action = text(form, "action")
    errors = FormErrors()
    if action not in ACCOUNT_ACTIONS:
        errors.add(f"user-{user_id}", N_("Choose one of the options."))
        return _accounts_page(request, session, user, errors=errors, status_code=422)
    changes: dict[str, dict[str, Any]] = {
        "role": {"role": text(form, "role")},
        "unlock": {"unlock": True},
        "disable": {"active": False},
        "enable": {"active": True},
    }
    body = changes[action]
    ok, status = _run(
        session,
        errors,
        UserUpdate,
        body,
        lambda data: accounts.update_user(
            session=session, actor=user.actor, user_id=user_id, data=data
        ),
    )
    if not ok:
        keyed = FormErrors()
        keyed.add(f"user-{user_id}", next(iter(errors.values()), ""))
        return _accounts_page(request, session, user, errors=keyed, status_code=status)
    return _done(request, "/admin/accounts", ACCOUNT_ACTIONS[action])
