"""results: lab panel reports (FHIR DiagnosticReport of a laboratory) and their members

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 16:26:14.066000

A panel (a LOINC panel code such as 58410-2, its status and times, the performing
member, a conclusion) groups the lab results it reports, in order. Until now a lab
DiagnosticReport had no domain counterpart and an import counted it as not stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import medalliance.db.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "result_panels",
        sa.Column("patient_record_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("encounter_id", sa.Uuid(), nullable=True),
        sa.Column("practitioner_id", sa.Uuid(), nullable=True),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("code_system", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "preliminary",
                "final",
                "corrected",
                name="result_status",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("effective_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("issued_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("conclusion", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("recorded_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["encounter_id"],
            ["encounters.id"],
            name=op.f("fk_result_panels_encounter_id_encounters"),
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_result_panels_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_record_id"],
            ["patient_records.id"],
            name=op.f("fk_result_panels_patient_record_id_patient_records"),
        ),
        sa.ForeignKeyConstraint(
            ["practitioner_id"],
            ["practitioners.id"],
            name=op.f("fk_result_panels_practitioner_id_practitioners"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_result_panels")),
    )
    with op.batch_alter_table("result_panels", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_result_panels_institution_id"), ["institution_id"], unique=False
        )
        batch_op.create_index(
            "ix_result_panels_record_effective", ["patient_record_id", "effective_at"], unique=False
        )

    op.create_table(
        "result_panel_members",
        sa.Column("panel_id", sa.Uuid(), nullable=False),
        sa.Column("result_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["panel_id"],
            ["result_panels.id"],
            name=op.f("fk_result_panel_members_panel_id_result_panels"),
        ),
        sa.ForeignKeyConstraint(
            ["result_id"], ["results.id"], name=op.f("fk_result_panel_members_result_id_results")
        ),
        sa.PrimaryKeyConstraint("panel_id", "result_id", name=op.f("pk_result_panel_members")),
    )
    with op.batch_alter_table("result_panel_members", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_result_panel_members_result_id"), ["result_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("result_panel_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_result_panel_members_result_id"))

    op.drop_table("result_panel_members")
    with op.batch_alter_table("result_panels", schema=None) as batch_op:
        batch_op.drop_index("ix_result_panels_record_effective")
        batch_op.drop_index(batch_op.f("ix_result_panels_institution_id"))

    op.drop_table("result_panels")
