"""Domain errors. Adapters (JSON API, FHIR, web) translate them; services never see HTTP."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a use case raises on purpose."""

    code = "domain-error"
    title = "Request could not be completed"
    audited = False  # set when the raiser already wrote the audit row

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra


class NotAuthenticated(DomainError):
    code = "not-authenticated"
    title = "Authentication required"


class InvalidCredentials(NotAuthenticated):
    code = "invalid-credentials"
    title = "Invalid credentials"


class AccountLocked(NotAuthenticated):
    code = "account-locked"
    title = "Account locked"


class PermissionDenied(DomainError):
    code = "permission-denied"
    title = "Permission denied"


class NotFound(DomainError):
    code = "not-found"
    title = "Not found"


class Conflict(DomainError):
    code = "conflict"
    title = "Conflict"


class InvalidInput(DomainError):
    code = "invalid-input"
    title = "Invalid input"


class ConfigurationError(Exception):
    """The platform is configured in a way that is unsafe or unusable."""
