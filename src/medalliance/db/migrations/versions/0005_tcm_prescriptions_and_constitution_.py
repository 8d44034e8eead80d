"""tcm: prescriptions (herbal and Western lines, stored safety findings), constitution assessments

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-23 13:31:25.837298
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import medalliance.db.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tcm_constitution_assessments",
        sa.Column("patient_record_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("recorded_by", sa.Uuid(), nullable=True),
        sa.Column("assessed_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sex", sa.String(length=8), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("summary", sa.String(length=200), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_tcm_constitution_assessments_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_record_id"],
            ["patient_records.id"],
            name=op.f("fk_tcm_constitution_assessments_patient_record_id_patient_records"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tcm_constitution_assessments")),
    )
    with op.batch_alter_table("tcm_constitution_assessments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tcm_constitution_assessments_patient_record_id"),
            ["patient_record_id"],
            unique=False,
        )

    op.create_table(
        "tcm_prescriptions",
        sa.Column("patient_record_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("encounter_id", sa.Uuid(), nullable=False),
        sa.Column("recorded_by", sa.Uuid(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "signed",
                "cancelled",
                name="prescription_status",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("formula_id", sa.String(length=16), nullable=True),
        sa.Column("formula_name", sa.String(length=100), nullable=True),
        sa.Column("dose_count", sa.Integer(), nullable=True),
        sa.Column(
            "herbal_form",
            sa.Enum("decoction", "granules", name="herbal_form", native_enum=False, length=32),
            nullable=True,
        ),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("checked_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("check_context", sa.JSON(), nullable=False),
        sa.Column("override_reason", sa.Text(), nullable=True),
        sa.Column("signed_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("signed_by", sa.Uuid(), nullable=True),
        sa.Column("cancelled_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["encounter_id"],
            ["encounters.id"],
            name=op.f("fk_tcm_prescriptions_encounter_id_encounters"),
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_tcm_prescriptions_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_record_id"],
            ["patient_records.id"],
            name=op.f("fk_tcm_prescriptions_patient_record_id_patient_records"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tcm_prescriptions")),
    )
    with op.batch_alter_table("tcm_prescriptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tcm_prescriptions_encounter_id"), ["encounter_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_tcm_prescriptions_patient_record_id"),
            ["patient_record_id"],
            unique=False,
        )

    op.create_table(
        "tcm_prescription_drugs",
        sa.Column("prescription_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("drug", sa.String(length=200), nullable=False),
        sa.Column("dose", sa.String(length=100), nullable=False),
        sa.Column("route", sa.String(length=50), nullable=False),
        sa.Column("frequency", sa.String(length=50), nullable=False),
        sa.Column("duration_days", sa.Integer(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["prescription_id"],
            ["tcm_prescriptions.id"],
            name=op.f("fk_tcm_prescription_drugs_prescription_id_tcm_prescriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tcm_prescription_drugs")),
    )
    with op.batch_alter_table("tcm_prescription_drugs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tcm_prescription_drugs_prescription_id"),
            ["prescription_id"],
            unique=False,
        )

    op.create_table(
        "tcm_prescription_herbs",
        sa.Column("prescription_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("herb", sa.String(length=50), nullable=False),
        sa.Column("dose_g", sa.Float(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["prescription_id"],
            ["tcm_prescriptions.id"],
            name=op.f("fk_tcm_prescription_herbs_prescription_id_tcm_prescriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tcm_prescription_herbs")),
    )
    with op.batch_alter_table("tcm_prescription_herbs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tcm_prescription_herbs_prescription_id"),
            ["prescription_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("tcm_prescription_herbs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tcm_prescription_herbs_prescription_id"))

    op.drop_table("tcm_prescription_herbs")
    with op.batch_alter_table("tcm_prescription_drugs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tcm_prescription_drugs_prescription_id"))

    op.drop_table("tcm_prescription_drugs")
    with op.batch_alter_table("tcm_prescriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tcm_prescriptions_patient_record_id"))
        batch_op.drop_index(batch_op.f("ix_tcm_prescriptions_encounter_id"))

    op.drop_table("tcm_prescriptions")
    with op.batch_alter_table("tcm_constitution_assessments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tcm_constitution_assessments_patient_record_id"))

    op.drop_table("tcm_constitution_assessments")
