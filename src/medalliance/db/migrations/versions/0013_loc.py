"""loc: a department's phone, address and position (FHIR Location create keeps a
Location's telecom, address and position; a site an alliance refers patients to is
called and found by them)

Revision ID: 0013_loc
Revises: 0012_medreq
Create Date: 2026-11-23 20:55:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_loc"
down_revision: str | None = "0012_medreq"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("departments") as batch:
        batch.add_column(sa.Column("phone", sa.String(length=50), nullable=True))
        batch.add_column(sa.Column("address", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("latitude", sa.Float(), nullable=True))
        batch.add_column(sa.Column("longitude", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("departments") as batch:
        batch.drop_column("longitude")
        batch.drop_column("latitude")
        batch.drop_column("address")
        batch.drop_column("phone")
