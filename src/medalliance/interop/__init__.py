"""Interfaces to member systems: HL7 v2 (and FHIR, MQTT as they land)."""
