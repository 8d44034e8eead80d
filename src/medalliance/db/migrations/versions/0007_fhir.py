"""fhir: identifiers and extra codings the domain does not model

Revision ID: 0007
Revises: 0003
Create Date: 2026-11-23 13:25:56.079025
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import medalliance.db.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fhir_codings",
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column("element", sa.String(length=40), nullable=False),
        sa.Column("system", sa.String(length=255), nullable=True),
        sa.Column("code", sa.String(length=100), nullable=True),
        sa.Column("display", sa.String(length=500), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fhir_codings")),
    )
    with op.batch_alter_table("fhir_codings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fhir_codings_code", ["resource_type", "code", "system"], unique=False
        )
        batch_op.create_index(
            "ix_fhir_codings_resource", ["resource_type", "resource_id"], unique=False
        )

    op.create_table(
        "fhir_identifiers",
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column("system", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fhir_identifiers")),
        sa.UniqueConstraint(
            "resource_type",
            "system",
            "value",
            name=op.f("uq_fhir_identifiers_resource_type_system_value"),
        ),
    )
    with op.batch_alter_table("fhir_identifiers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fhir_identifiers_resource", ["resource_type", "resource_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("fhir_identifiers", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_identifiers_resource")

    op.drop_table("fhir_identifiers")
    with op.batch_alter_table("fhir_codings", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_codings_resource")
        batch_op.drop_index("ix_fhir_codings_code")

    op.drop_table("fhir_codings")
