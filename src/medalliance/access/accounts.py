"""Account management. Institution admins manage their own institution's accounts;
alliance admins manage all. Only alliance admins create admins and auditors
(separation of duties)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.access import login, passwords
from medalliance.access.models import User
from medalliance.access.permissions import Permission
from medalliance.access.schemas import UserCreate, UserUpdate
from medalliance.audit import service as audit
from medalliance.domains.alliance import service as alliance_service
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from medalliance.kernel.pagination import PageRequest, PageResult
from medalliance.kernel.roles import Role

ALLIANCE_ONLY_ROLES = {Role.ALLIANCE_ADMIN, Role.AUDITOR}
ROLES_WITHOUT_PRACTITIONER = {
    Role.DEVICE_GATEWAY,
    Role.INTERFACE_GATEWAY,
    Role.AUDITOR,
    Role.ALLIANCE_ADMIN,
}


def _require_scope(actor: Actor, institution_id: uuid.UUID | None, role: Role | None) -> None:
    if not actor.can(Permission.USERS_MANAGE):
        raise PermissionDenied(f"Role {actor.role} may not manage accounts.")
    if actor.role is Role.ALLIANCE_ADMIN:
        return
    if institution_id is None or institution_id != actor.institution_id:
        raise PermissionDenied("You can only manage accounts of your own institution.")
    if role in ALLIANCE_ONLY_ROLES:
        raise PermissionDenied(f"Only an alliance administrator may grant the role {role}.")


def create_user(*, session: Session, actor: Actor, data: UserCreate) -> User:
    institution_id: uuid.UUID | None = None
    if data.institution_code is not None:
        institution = alliance_service.find_institution(session, data.institution_code)
        if institution is None:
            raise InvalidInput(
                f"No institution with code {data.institution_code!r}.", field="institution_code"
            )
        if not institution.active:
            raise InvalidInput(
                f"Institution {data.institution_code!r} is deactivated: nothing new can be "
                "assigned to it.",
                field="institution_code",
                reason="institution-inactive",
                registry_code=data.institution_code,
            )
        institution_id = institution.id
    elif data.role is not Role.ALLIANCE_ADMIN and data.role is not Role.AUDITOR:
        raise InvalidInput(
            f"A {data.role} account belongs to an institution.", field="institution_code"
        )
    _require_scope(actor, institution_id, data.role)
    if data.practitioner_id is not None:
        _check_practitioner(session, data.practitioner_id, institution_id)
    if session.scalar(select(User.id).where(User.username == data.username)) is not None:
        raise Conflict(f"The username {data.username!r} is taken.", field="username")
    user = create_account(
        session,
        username=data.username,
        password=data.password,
        role=data.role,
        display_name=data.display_name or data.username,
        institution_id=institution_id,
        practitioner_id=data.practitioner_id,
    )
    audit.record(
        session,
        actor,
        action="create",
        resource_type="User",
        resource_id=user.id,
        detail={"username": user.username, "role": str(user.role)},
    )
    return user


def create_account(
    session: Session,
    *,
    username: str,
    password: str,
    role: Role,
    display_name: str,
    institution_id: uuid.UUID | None,
    practitioner_id: uuid.UUID | None,
) -> User:
    """The bare insert, shared by the API, the CLI and the demo seed."""
    now = utcnow()
    user = User(
        username=username,
        display_name=display_name,
        password_hash=passwords.hash_password(password),
        role=role,
        institution_id=institution_id,
        practitioner_id=practitioner_id,
        active=True,
        failed_logins=0,
        password_changed_at=now,
    )
    session.add(user)
    session.flush()
    return user


def _check_practitioner(
    session: Session, practitioner_id: uuid.UUID, institution_id: uuid.UUID | None
) -> None:
    from medalliance.domains.alliance.models import Practitioner

    practitioner = session.get(Practitioner, practitioner_id)
    if practitioner is None or practitioner.institution_id != institution_id:
        raise InvalidInput(
            "The practitioner does not work at the account's institution.", field="practitioner_id"
        )


def get_user(session: Session, actor: Actor, user_id: uuid.UUID) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"No user {user_id}.")
    _require_scope(actor, user.institution_id, None)
    audit.record(session, actor, action="read", resource_type="User", resource_id=user.id)
    return user


def list_users(
    session: Session,
    actor: Actor,
    *,
    institution_code: str | None,
    role: Role | None,
    page: PageRequest,
) -> PageResult[User]:
    if not actor.can(Permission.USERS_MANAGE):
        raise PermissionDenied(f"Role {actor.role} may not manage accounts.")
    query = select(User)
    if actor.role is not Role.ALLIANCE_ADMIN:
        query = query.where(User.institution_id == actor.institution_id)  # scope filter
    if institution_code is not None:
        institution = alliance_service.find_institution(session, institution_code)
        query = query.where(User.institution_id == (institution.id if institution else None))
    if role is not None:
        query = query.where(User.role == role)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(User.username).limit(page.limit).offset(page.offset)
    ).all()
    audit.record(
        session, actor, action="search", resource_type="User", detail={"returned": len(rows)}
    )
    return PageResult(items=list(rows), total=total)


def update_user(*, session: Session, actor: Actor, user_id: uuid.UUID, data: UserUpdate) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"No user {user_id}.")
    changes = data.model_dump(exclude_unset=True)
    _require_scope(actor, user.institution_id, changes.get("role"))
    if user.role in ALLIANCE_ONLY_ROLES:
        _require_scope(actor, user.institution_id, user.role)
    if user.id == actor.user_id and ("role" in changes or changes.get("active") is False):
        raise PermissionDenied("You cannot change your own role or deactivate yourself.")
    if "practitioner_id" in changes and changes["practitioner_id"] is not None:
        _check_practitioner(session, changes["practitioner_id"], user.institution_id)
    if "password" in changes:
        user.password_hash = passwords.hash_password(changes.pop("password"))
        user.password_changed_at = utcnow()
        changes["password"] = "changed"  # noqa: S105 - audit marker, not a secret
    if changes.pop("unlock", None):
        user.locked_until, user.failed_logins = None, 0
        changes["unlock"] = True
    for key in ("display_name", "role", "active", "practitioner_id"):
        if key in changes:
            setattr(user, key, changes[key])
    if {"password", "role"} & changes.keys() or changes.get("active") is False:
        login.revoke_all(session, user.id)  # old sessions must not outlive the change
    session.flush()
    audit.record(
        session,
        actor,
        action="update",
        resource_type="User",
        resource_id=user.id,
        detail={k: str(v) for k, v in changes.items()},
    )
    return user
