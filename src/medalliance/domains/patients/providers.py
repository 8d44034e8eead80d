"""What the patients domain tells the access layer (imported by ``medalliance.wiring``)."""

from __future__ import annotations

from medalliance.access import policy
from medalliance.domains.patients import service

policy.register_patient_facts(service.facts)
