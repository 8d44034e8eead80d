"""Imported by the parallel import's fork server (``fhir.parallel_import.PRELOAD``):
build once what every worker needs, so each forked worker starts with it instead of
building its own. Here: the UCUM unit grammar (about half a second of CPU)."""

from medalliance.domains.results import units

units.dimension_of("mg/dL")
