"""audit: append events to the chain in one statement on PostgreSQL

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 16:30:00.000000

A PL/pgSQL function locks the chain head, numbers and hashes the events with the
chain's existing rule, inserts them and moves the head: one round trip per
transaction instead of three. The hashing rule does not change, so every row written
before verifies as it did. Nothing changes on SQLite (no network round trips there).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

import medalliance.db.types  # noqa: F401 - like every revision
from medalliance.audit import ddl as audit_ddl

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    audit_ddl.install_append_function(op.get_bind())


def downgrade() -> None:
    audit_ddl.remove_append_function(op.get_bind())
