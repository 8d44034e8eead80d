"""What each role may do. Routes declare a permission; deny by default."""

from __future__ import annotations

from enum import StrEnum

from medalliance.kernel.roles import Role


class Permission(StrEnum):
    REGISTRY_READ = "registry:read"  # institutions, departments, practitioners, beds
    REGISTRY_MANAGE = "registry:manage"  # create/update registry entries (scoped)
    ALLIANCE_MANAGE = "alliance:manage"  # alliances and member institutions
    BEDS_UPDATE = "beds:update"  # change a bed's status
    USERS_MANAGE = "users:manage"  # accounts (scoped to own institution unless alliance admin)
    AUDIT_READ = "audit:read"
    JOBS_MANAGE = "jobs:manage"
    PATIENT_READ = "patient:read"
    PATIENT_WRITE = "patient:write"
    BREAK_GLASS = "access:break-glass"
    BREAK_GLASS_REVIEW = "access:break-glass-review"
    DEVICE_INGEST = "device:ingest"
    MPI_REVIEW = "mpi:review"  # the MPI review queue, link and unlink
    PRESCRIBE = "prescription:write"  # write, sign and cancel prescriptions (clinicians)
    MONITORING_THRESHOLDS = "monitoring:thresholds"  # per-patient alert thresholds
    # Results: an HL7 v2 interface posts for its own institution only (MSH-4).
    HL7_INGEST = "interop:hl7v2-ingest"
    RESULTS_CATALOGUE_MANAGE = "results:catalogue-manage"  # recognised items, lab EQA
    TCM_RECOMMEND = "tcm:recommend"  # herb suggestions from symptoms (prescribers, pharmacists)


_CLINICAL = {
    Permission.REGISTRY_READ,
    Permission.PATIENT_READ,
    Permission.PATIENT_WRITE,
    Permission.BREAK_GLASS,
}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ALLIANCE_ADMIN: frozenset(
        {
            Permission.REGISTRY_READ,
            Permission.REGISTRY_MANAGE,
            Permission.ALLIANCE_MANAGE,
            Permission.BEDS_UPDATE,
            Permission.USERS_MANAGE,
            Permission.JOBS_MANAGE,
            Permission.RESULTS_CATALOGUE_MANAGE,
        }
    ),
    Role.INSTITUTION_ADMIN: frozenset(
        {
            Permission.REGISTRY_READ,
            Permission.REGISTRY_MANAGE,
            Permission.BEDS_UPDATE,
            Permission.USERS_MANAGE,
        }
    ),
    Role.CLINICIAN: frozenset(
        _CLINICAL
        | {
            Permission.MPI_REVIEW,
            Permission.PRESCRIBE,
            Permission.MONITORING_THRESHOLDS,
            Permission.TCM_RECOMMEND,
        }
    ),
    Role.NURSE: frozenset(_CLINICAL | {Permission.BEDS_UPDATE, Permission.MPI_REVIEW}),
    Role.PHARMACIST: frozenset(_CLINICAL | {Permission.TCM_RECOMMEND}),
    Role.CARE_MANAGER: frozenset(_CLINICAL),
    # Researchers work on de-identified exports (analytics), never on identified records.
    Role.RESEARCHER: frozenset({Permission.REGISTRY_READ}),
    # Separation of duties (MLPS 2.0, WORKFLOWS.md §6): auditors read the trail, not records.
    Role.AUDITOR: frozenset(
        {Permission.REGISTRY_READ, Permission.AUDIT_READ, Permission.BREAK_GLASS_REVIEW}
    ),
    Role.DEVICE_GATEWAY: frozenset({Permission.DEVICE_INGEST}),
    Role.INTERFACE_GATEWAY: frozenset({Permission.HL7_INGEST}),
}


def permissions_for(role: Role) -> frozenset[str]:
    return frozenset(str(p) for p in ROLE_PERMISSIONS[role])
