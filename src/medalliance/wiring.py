"""Import the modules that register job handlers, schedules, policy providers and
models, so the app, the worker and Alembic all see the same set."""

from __future__ import annotations

import importlib

MODULES = (
    "medalliance.domains.alliance.models",
    "medalliance.access.models",
    "medalliance.audit.models",
    "medalliance.jobs.models",
    "medalliance.jobs.notifications",
    "medalliance.access.jobs",
    "medalliance.audit.jobs",
    "medalliance.domains.patients.models",
    "medalliance.domains.patients.mpi.models",
    "medalliance.domains.patients.providers",
    "medalliance.domains.records.models",
    "medalliance.domains.records.providers",
    "medalliance.domains.tcm.models",
    "medalliance.domains.tcm.providers",
    "medalliance.domains.monitoring.models",
    "medalliance.domains.monitoring.providers",
    "medalliance.domains.monitoring.jobs",
    "medalliance.domains.results.models",
    "medalliance.domains.results.providers",
    "medalliance.fhir.models",
    "medalliance.web.models",
)


def load_all() -> None:
    for name in MODULES:
        importlib.import_module(name)
