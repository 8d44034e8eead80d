"""Shared building blocks with no knowledge of any domain: ids, clock, errors, actor."""
