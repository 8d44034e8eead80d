"""Display names of coded values (msgids, translated in templates with ``_()``)."""

from __future__ import annotations

from medalliance.domains.patients.identity import Sex
from medalliance.kernel.roles import Role
from medalliance.web.i18n import N_

ROLE_LABELS: dict[str, str] = {
    Role.ALLIANCE_ADMIN: N_("Alliance administrator"),
    Role.INSTITUTION_ADMIN: N_("Institution administrator"),
    Role.CLINICIAN: N_("Clinician"),
    Role.NURSE: N_("Nurse"),
    Role.PHARMACIST: N_("Pharmacist"),
    Role.CARE_MANAGER: N_("Care manager"),
    Role.RESEARCHER: N_("Researcher"),
    Role.AUDITOR: N_("Auditor"),
    Role.DEVICE_GATEWAY: N_("Device gateway"),
    Role.INTERFACE_GATEWAY: N_("Interface gateway"),
}

SEX_LABELS: dict[str, str] = {
    Sex.MALE: N_("Male"),
    Sex.FEMALE: N_("Female"),
    Sex.UNKNOWN: N_("Unknown"),
}

PREGNANCY_LABELS: dict[str, str] = {
    "unknown": N_("Unknown"),
    "pregnant": N_("Pregnant"),
    "not_pregnant": N_("Not pregnant"),
}

ACCESS_BASIS_LABELS: dict[str, str] = {
    "same-institution": N_("Registered at your institution"),
    "consent-and-care-relationship": N_("Sharing consent and a care relationship"),
    "break-the-glass": N_("Emergency access (break-the-glass)"),
}

# Sentences the services raise that pages show as they are (translated when known).
DOMAIN_MESSAGES = (
    N_("Invalid username or password."),
    N_("This is a machine account; it cannot use the web pages."),
    N_("Type a name, pinyin, initials, ID number or phone."),
    N_("State the emergency: a reason of at least 4 characters is required to break the glass."),
)
