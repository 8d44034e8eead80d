"""records: encounters, integrated diagnoses, allergies, medications, notes, procedures

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 11:11:39.572360
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import medalliance.db.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "allergies",
        sa.Column("substance", sa.String(length=200), nullable=False),
        sa.Column("substance_code", sa.String(length=64), nullable=True),
        sa.Column(
            "category",
            sa.Enum(
                "medication",
                "herb",
                "food",
                "environment",
                name="allergy_category",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("reaction", sa.String(length=300), nullable=True),
        sa.Column(
            "severity",
            sa.Enum("mild", "moderate", "severe", name="severity", native_enum=False, length=32),
            nullable=True,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "resolved",
                "inactive",
                "entered-in-error",
                name="clinical_status",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("recorded_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("patient_record_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("recorded_by", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_allergies_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_record_id"],
            ["patient_records.id"],
            name=op.f("fk_allergies_patient_record_id_patient_records"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allergies")),
    )
    with op.batch_alter_table("allergies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_allergies_patient_record_id"), ["patient_record_id"], unique=False
        )

    op.create_table(
        "medication_statements",
        sa.Column("drug", sa.String(length=200), nullable=False),
        sa.Column("drug_code", sa.String(length=64), nullable=True),
        sa.Column("dose", sa.String(length=100), nullable=True),
        sa.Column("route", sa.String(length=50), nullable=True),
        sa.Column("frequency", sa.String(length=50), nullable=True),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "completed",
                "stopped",
                "entered-in-error",
                name="medication_status",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("recorded_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("patient_record_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("recorded_by", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_medication_statements_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_record_id"],
            ["patient_records.id"],
            name=op.f("fk_medication_statements_patient_record_id_patient_records"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_medication_statements")),
    )
    with op.batch_alter_table("medication_statements", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_medication_statements_patient_record_id"),
            ["patient_record_id"],
            unique=False,
        )

    op.create_table(
        "encounters",
        sa.Column("department_id", sa.Uuid(), nullable=True),
        sa.Column("practitioner_id", sa.Uuid(), nullable=True),
        sa.Column(
            "encounter_class",
            sa.Enum(
                "outpatient",
                "inpatient",
                "emergency",
                "telemedicine",
                name="encounter_class",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "planned",
                "in-progress",
                "finished",
                "cancelled",
                "entered-in-error",
                name="encounter_status",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("start", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("end", medalliance.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("patient_record_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("recorded_by", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
            name=op.f("fk_encounters_department_id_departments"),
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_encounters_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_record_id"],
            ["patient_records.id"],
            name=op.f("fk_encounters_patient_record_id_patient_records"),
        ),
        sa.ForeignKeyConstraint(
            ["practitioner_id"],
            ["practitioners.id"],
            name=op.f("fk_encounters_practitioner_id_practitioners"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_encounters")),
    )
    with op.batch_alter_table("encounters", schema=None) as batch_op:
        batch_op.create_index(
            "ix_encounters_institution_start", ["institution_id", "start"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_encounters_patient_record_id"), ["patient_record_id"], unique=False
        )

    op.create_table(
        "clinical_notes",
        sa.Column("encounter_id", sa.Uuid(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "progress",
                "admission",
                "discharge",
                "tcm_four_examinations",
                "other",
                name="note_kind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("tcm_exam", sa.JSON(), nullable=True),
        sa.Column("recorded_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("patient_record_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("recorded_by", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["encounter_id"],
            ["encounters.id"],
            name=op.f("fk_clinical_notes_encounter_id_encounters"),
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_clinical_notes_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_record_id"],
            ["patient_records.id"],
            name=op.f("fk_clinical_notes_patient_record_id_patient_records"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinical_notes")),
    )
    with op.batch_alter_table("clinical_notes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_clinical_notes_encounter_id"), ["encounter_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_clinical_notes_patient_record_id"), ["patient_record_id"], unique=False
        )

    op.create_table(
        "diagnoses",
        sa.Column("encounter_id", sa.Uuid(), nullable=False),
        sa.Column("primary", sa.Boolean(), nullable=False),
        sa.Column("western_code", sa.String(length=16), nullable=True),
        sa.Column("western_text", sa.String(length=300), nullable=True),
        sa.Column("tcm_disease_system", sa.String(length=16), nullable=True),
        sa.Column("tcm_disease_code", sa.String(length=32), nullable=True),
        sa.Column("tcm_disease_text", sa.String(length=300), nullable=True),
        sa.Column("tcm_pattern_system", sa.String(length=16), nullable=True),
        sa.Column("tcm_pattern_code", sa.String(length=32), nullable=True),
        sa.Column("tcm_pattern_text", sa.String(length=300), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "resolved",
                "inactive",
                "entered-in-error",
                name="clinical_status",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("recorded_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("patient_record_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("recorded_by", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["encounter_id"], ["encounters.id"], name=op.f("fk_diagnoses_encounter_id_encounters")
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_diagnoses_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_record_id"],
            ["patient_records.id"],
            name=op.f("fk_diagnoses_patient_record_id_patient_records"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_diagnoses")),
    )
    with op.batch_alter_table("diagnoses", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_diagnoses_encounter_id"), ["encounter_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_diagnoses_patient_record_id"), ["patient_record_id"], unique=False
        )

    op.create_table(
        "procedures",
        sa.Column("encounter_id", sa.Uuid(), nullable=False),
        sa.Column("code_system", sa.String(length=32), nullable=True),
        sa.Column("code", sa.String(length=32), nullable=True),
        sa.Column("text", sa.String(length=300), nullable=False),
        sa.Column("performed_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("patient_record_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("recorded_by", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["encounter_id"], ["encounters.id"], name=op.f("fk_procedures_encounter_id_encounters")
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_procedures_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_record_id"],
            ["patient_records.id"],
            name=op.f("fk_procedures_patient_record_id_patient_records"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_procedures")),
    )
    with op.batch_alter_table("procedures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_procedures_encounter_id"), ["encounter_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_procedures_patient_record_id"), ["patient_record_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("procedures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_procedures_patient_record_id"))
        batch_op.drop_index(batch_op.f("ix_procedures_encounter_id"))

    op.drop_table("procedures")
    with op.batch_alter_table("diagnoses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_diagnoses_patient_record_id"))
        batch_op.drop_index(batch_op.f("ix_diagnoses_encounter_id"))

    op.drop_table("diagnoses")
    with op.batch_alter_table("clinical_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clinical_notes_patient_record_id"))
        batch_op.drop_index(batch_op.f("ix_clinical_notes_encounter_id"))

    op.drop_table("clinical_notes")
    with op.batch_alter_table("encounters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_encounters_patient_record_id"))
        batch_op.drop_index("ix_encounters_institution_start")

    op.drop_table("encounters")
    with op.batch_alter_table("medication_statements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_medication_statements_patient_record_id"))

    op.drop_table("medication_statements")
    with op.batch_alter_table("allergies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_allergies_patient_record_id"))

    op.drop_table("allergies")
