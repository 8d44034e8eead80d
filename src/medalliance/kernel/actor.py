"""Who is acting: every service call carries one."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from medalliance.kernel.roles import Role


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: uuid.UUID | None
    username: str
    role: Role | None
    institution_id: uuid.UUID | None = None
    practitioner_id: uuid.UUID | None = None
    request_id: str | None = None
    client_address: str | None = None
    permissions: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_authenticated(self) -> bool:
        return self.user_id is not None

    def can(self, permission: str) -> bool:
        return permission in self.permissions


SYSTEM_ACTOR = Actor(user_id=None, username="system", role=None)
ANONYMOUS = Actor(user_id=None, username="anonymous", role=None)
