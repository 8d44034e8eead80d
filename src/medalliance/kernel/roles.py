"""Roles of the platform's accounts (the permission map lives in access/permissions.py)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ALLIANCE_ADMIN = "alliance_admin"
    INSTITUTION_ADMIN = "institution_admin"
    CLINICIAN = "clinician"
    NURSE = "nurse"
    PHARMACIST = "pharmacist"
    CARE_MANAGER = "care_manager"
    RESEARCHER = "researcher"
    AUDITOR = "auditor"
    DEVICE_GATEWAY = "device_gateway"
    # A member's LIS/RIS interface engine posting HL7 v2 results for its own institution.
    INTERFACE_GATEWAY = "interface_gateway"
