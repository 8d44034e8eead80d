"""Account factories. The password hash is computed once: Argon2 is slow on purpose."""

from __future__ import annotations

import factory

from medalliance.access.models import User
from medalliance.access.passwords import hash_password
from medalliance.kernel.roles import Role
from tests.factories.alliance import InstitutionFactory
from tests.factories.base import BaseFactory

DEFAULT_PASSWORD = "correct-horse-battery"
_HASH = hash_password(DEFAULT_PASSWORD)


class UserFactory(BaseFactory):
    class Meta:
        model = User

    institution = factory.SubFactory(InstitutionFactory)
    institution_id = factory.SelfAttribute("institution.id")
    username = factory.Sequence(lambda n: f"user{n:05d}")
    display_name = factory.SelfAttribute("username")
    password_hash = _HASH
    role = Role.CLINICIAN
    practitioner_id = None
    active = True
    failed_logins = 0

    @classmethod
    def _adjust_kwargs(cls, **kwargs: object) -> dict[str, object]:
        kwargs.pop("institution", None)
        return dict(kwargs)
