"""FHIR R4 (4.0.1) over the platform: the boundary, not the storage.

Mappers (``fhir.mappers``) translate between FHIR resources and the domain services; the
registry decides what the CapabilityStatement advertises, so it says only what works.
"""
