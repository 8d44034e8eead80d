"""Identifier and code system URIs. Official URIs where one exists; otherwise the
project-local ``urn:medalliance:`` namespace (documented in the README), to be replaced
by an alliance's registered OIDs in one place: here."""

from __future__ import annotations

LOCAL = "urn:medalliance"

# identifiers
RESIDENT_ID = f"{LOCAL}:id:resident-id"  # 公民身份号码 (GB 11643); no official FHIR URI found
MRN_PREFIX = f"{LOCAL}:id:mrn:"  # + institution code: each member's 病案号
INSURANCE = f"{LOCAL}:id:insurance"
PASSPORT = f"{LOCAL}:id:passport"
INSTITUTION_CODE = f"{LOCAL}:id:institution"
DEPARTMENT_CODE_PREFIX = f"{LOCAL}:id:department:"  # + institution code
PRACTITIONER_LICENCE = f"{LOCAL}:id:practitioner-licence"
SOURCE_ID = f"{LOCAL}:id:source-id"  # the id a sender gave a resource (imports)

# code systems
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD11_MMS = "http://id.who.int/icd/release/11/mms"  # includes chapter 26, TM1
GBT15657 = "urn:oid:2.16.156.10011.2.3.3.14"  # proposed: the OID WS/T 500 uses for GB/T 15657
TCM_SYSTEM_URI = {"icd11": ICD11_MMS, "gbt15657": GBT15657}
TCM_SYSTEM_NAME = {v: k for k, v in TCM_SYSTEM_URI.items()}
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ORGANIZATION_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
INSTITUTION_TIER = f"{LOCAL}:cs:institution-tier"
INSTITUTION_TYPE = f"{LOCAL}:cs:institution-type"
DISCIPLINE = f"{LOCAL}:cs:discipline"
PRACTITIONER_TITLE = f"{LOCAL}:cs:practitioner-title"
TCM_ROLE = f"{LOCAL}:cs:diagnosis-role"  # western | tcm-disease | tcm-pattern
ALLERGY_HERB = f"{LOCAL}:cs:allergy-category"  # 'herb': a Chinese materia medica substance
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
LOCATION_PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_CATEGORY = "http://loinc.org"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
PURPOSE_OF_USE = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


def mrn_system(institution_code: str) -> str:
    return MRN_PREFIX + institution_code


# results
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
V2_0078 = "http://terminology.hl7.org/CodeSystem/v2-0078"  # abnormal flags (interpretation)
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"  # diagnostic service section
RESULT_LOCAL = f"{LOCAL}:cs:result-item"  # a member's local item code (item_system "L")

# prescriptions and devices
TCM_FORMULA = f"{LOCAL}:cs:tcm-formula"  # the formula catalogue id of domains/tcm
TCM_HERB = f"{LOCAL}:cs:tcm-herb"  # the reference herb a written herb name resolves to
HERBAL_FORM = f"{LOCAL}:cs:herbal-form"  # decoction | granules
RX_KIND = f"{LOCAL}:cs:prescription-kind"  # tcm-herbal
DEVICE_TYPE = f"{LOCAL}:cs:device-type"  # bp_monitor, glucometer … (domains/monitoring)
DEVICE_SERIAL = f"{LOCAL}:id:device-serial"
