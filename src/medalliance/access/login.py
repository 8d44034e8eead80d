"""Login with lockout, token issue, refresh rotation and logout.

``check_credentials`` is the password check alone (lockout, audit, messages);
``authenticate`` adds the API token pair on top of it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from medalliance.access import passwords, tokens
from medalliance.access.models import RefreshToken, User
from medalliance.access.permissions import permissions_for
from medalliance.audit import service as audit
from medalliance.config import Settings
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import AccountLocked, InvalidCredentials, NotAuthenticated
from medalliance.kernel.ids import new_id
from medalliance.kernel.roles import Role

INVALID_LOGIN = "Invalid username or password."


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"  # noqa: S105


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    """A failed login still changes state (failure counter, lock, audit row), so the
    use case returns its error instead of raising: the caller commits, then raises."""

    tokens: TokenPair | None = None
    error: NotAuthenticated | None = None

    def tokens_or_raise(self) -> TokenPair:
        if self.error is not None:
            raise self.error
        assert self.tokens is not None
        return self.tokens


@dataclass(frozen=True, slots=True)
class CredentialCheck:
    """The outcome of checking a password without issuing API tokens: the account, or
    the error (returned, not raised, for the same reason as ``LoginOutcome``)."""

    user: User | None = None
    error: NotAuthenticated | None = None
    role_refused: bool = False  # right password, but the role may not use this channel


def check_credentials(
    *,
    session: Session,
    actor: Actor,
    settings: Settings,
    username: str,
    password: str,
    channel: str = "api",
    refused_roles: frozenset[Role] = frozenset(),
) -> CredentialCheck:
    """Check a password; count failures and lock the account after too many; audit.

    Issues no credential: a caller with a session of its own (the web pages) uses this
    so that no API refresh token exists that nobody holds. A role in ``refused_roles``
    (machine accounts on the web pages) is refused after the password check, audited as
    a failed login, without counting towards the lock."""
    now = utcnow()
    user = session.scalar(select(User).where(User.username == username))
    if user is not None and user.locked_until is not None and user.locked_until > now:
        passwords.verify_password(None, password)  # same cost as a real check
        _audit_login(session, actor, username, user, "account locked", channel)
        return CredentialCheck(error=locked_error(user))
    ok = passwords.verify_password(None if user is None else user.password_hash, password)
    if user is None or not ok or not user.active:
        if user is not None and user.active:
            user.failed_logins += 1
            if user.failed_logins >= settings.lockout_threshold:
                user.locked_until = now + timedelta(minutes=settings.lockout_minutes)
                user.failed_logins = 0
        _audit_login(session, actor, username, user, "invalid credentials", channel)
        if user is not None and user.locked_until is not None and user.locked_until > now:
            return CredentialCheck(error=locked_error(user))
        return CredentialCheck(error=InvalidCredentials(INVALID_LOGIN))
    if user.role in refused_roles:
        _audit_login(session, actor, username, user, f"role refused on {channel}", channel)
        return CredentialCheck(
            error=NotAuthenticated(f"This account cannot log in through {channel}."),
            role_refused=True,
        )
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    audit.record(
        session,
        actor_for(user, actor),
        action="login",
        resource_type="User",
        resource_id=user.id,
        detail={"channel": channel},
    )
    return CredentialCheck(user=user)


def authenticate(
    *, session: Session, actor: Actor, settings: Settings, username: str, password: str
) -> LoginOutcome:
    """Log in to the API: check the password (lockout, audit), then issue a token pair."""
    check = check_credentials(
        session=session, actor=actor, settings=settings, username=username, password=password
    )
    if check.error is not None:
        return LoginOutcome(error=check.error)
    assert check.user is not None
    return LoginOutcome(tokens=_issue(session, check.user, settings, family_id=new_id()))


def locked_error(user: User) -> AccountLocked:
    assert user.locked_until is not None
    return AccountLocked(
        "This account is locked after repeated failed logins. Try again after "
        f"{user.locked_until:%Y-%m-%d %H:%M} UTC, or ask an administrator to unlock it.",
        locked_until=user.locked_until.isoformat(),
    )


def refresh(
    *, session: Session, actor: Actor, settings: Settings, refresh_token: str
) -> LoginOutcome:
    """Rotate a refresh token; presenting a used one revokes its whole family."""
    now = utcnow()
    row = session.scalar(
        select(RefreshToken)
        .where(RefreshToken.token_hash == tokens.hash_refresh_token(refresh_token))
        .with_for_update()
    )
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return LoginOutcome(
            error=NotAuthenticated("The refresh token is invalid or has expired; log in again.")
        )
    if row.used_at is not None:
        # A used token presented again means it leaked: revoke the whole family.
        _revoke_family(session, row.family_id)
        audit.record(
            session,
            actor,
            action="token.reuse-detected",
            resource_type="User",
            resource_id=row.user_id,
            outcome=audit.Outcome.DENIED,
        )
        return LoginOutcome(
            error=NotAuthenticated("The refresh token was already used; log in again.")
        )
    user = session.get(User, row.user_id)
    if user is not None and user.locked_until is not None and user.locked_until > now:
        return LoginOutcome(error=locked_error(user))
    if user is None or not user.active:
        return LoginOutcome(error=NotAuthenticated("The account is no longer active."))
    row.used_at = now
    return LoginOutcome(tokens=_issue(session, user, settings, family_id=row.family_id))


def logout(*, session: Session, actor: Actor, refresh_token: str) -> None:
    row = session.scalar(
        select(RefreshToken).where(
            RefreshToken.token_hash == tokens.hash_refresh_token(refresh_token)
        )
    )
    if row is not None and row.user_id == actor.user_id:
        _revoke_family(session, row.family_id)
        audit.record(session, actor, action="logout", resource_type="User", resource_id=row.user_id)


def _issue(session: Session, user: User, settings: Settings, *, family_id: uuid.UUID) -> TokenPair:
    now = utcnow()
    ttl = timedelta(minutes=settings.access_token_minutes)
    access = tokens.encode_access_token(
        tokens.AccessClaims(
            user_id=user.id,
            username=user.username,
            role=user.role,
            institution_id=user.institution_id,
            practitioner_id=user.practitioner_id,
            expires_at=now + ttl,
        ),
        secret=settings.secret_key,
        issued_at=now,
        ttl=ttl,
    )
    refresh_token, token_hash = tokens.new_refresh_token()
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id,
            token_hash=token_hash,
            issued_at=now,
            expires_at=now + timedelta(hours=settings.refresh_token_hours),
        )
    )
    return TokenPair(
        access_token=access, refresh_token=refresh_token, expires_in=int(ttl.total_seconds())
    )


def revoke_all(session: Session, user_id: uuid.UUID) -> None:
    """End every session of an account (password change, deactivation, new role)."""
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def _revoke_family(session: Session, family_id: uuid.UUID) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def actor_for(user: User, base: Actor) -> Actor:
    """The actor of a logged-in account, carrying the request facts of ``base`` (the
    anonymous actor the login request arrived as): the one place that builds it from
    the account row, for the API login and the web session alike."""
    return Actor(
        user_id=user.id,
        username=user.username,
        role=user.role,
        institution_id=user.institution_id,
        practitioner_id=user.practitioner_id,
        request_id=base.request_id,
        client_address=base.client_address,
        permissions=permissions_for(user.role),
    )


def _audit_login(
    session: Session, actor: Actor, username: str, user: User | None, why: str, channel: str
) -> None:
    audit.record(
        session,
        actor,
        action="login",
        resource_type="User",
        resource_id=None if user is None else user.id,
        outcome=audit.Outcome.FAILURE,
        detail={"username": username, "why": why, "channel": channel},
    )
