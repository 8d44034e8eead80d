"""Append-only, hash-chained audit trail written in the caller's transaction."""
