"""results: lab and imaging results, recognition catalogue, accreditation, decisions,
HL7 v2 messages

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 13:32:40.317998
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import medalliance.db.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recognition_items",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("code_system", sa.String(length=16), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("lab", "imaging", name="result_kind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("unit_property", sa.String(length=16), nullable=True),
        sa.Column("validity_days", sa.Integer(), nullable=True),
        sa.Column("validity_source", sa.String(length=300), nullable=True),
        sa.Column("price", sa.Numeric(precision=10, scale=2), nullable=True),
        sa.Column("price_source", sa.String(length=300), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recognition_items")),
        sa.UniqueConstraint("code", "version", name=op.f("uq_recognition_items_code_version")),
    )
    with op.batch_alter_table("recognition_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recognition_items_code"), ["code"], unique=False)

    op.create_table(
        "lab_accreditations",
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("item_code", sa.String(length=32), nullable=False),
        sa.Column("eqa_scheme", sa.String(length=200), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_lab_accreditations_institution_id_institutions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lab_accreditations")),
    )
    with op.batch_alter_table("lab_accreditations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_lab_accreditations_institution_item", ["institution_id", "item_code"], unique=False
        )

    op.create_table(
        "hl7_messages",
        sa.Column("sending_institution_id", sa.Uuid(), nullable=False),
        sa.Column("control_id", sa.String(length=199), nullable=False),
        sa.Column("message_type", sa.String(length=32), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("received_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_by", sa.Uuid(), nullable=True),
        sa.Column("patient_record_id", sa.Uuid(), nullable=True),
        sa.Column("result_count", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_record_id"],
            ["patient_records.id"],
            name=op.f("fk_hl7_messages_patient_record_id_patient_records"),
        ),
        sa.ForeignKeyConstraint(
            ["sending_institution_id"],
            ["institutions.id"],
            name=op.f("fk_hl7_messages_sending_institution_id_institutions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_messages")),
        sa.UniqueConstraint(
            "sending_institution_id",
            "control_id",
            name=op.f("uq_hl7_messages_sending_institution_id_control_id"),
        ),
    )
    op.create_table(
        "results",
        sa.Column("patient_record_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("lab", "imaging", name="result_kind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("item_code", sa.String(length=32), nullable=False),
        sa.Column("item_system", sa.String(length=16), nullable=False),
        sa.Column("item_name", sa.String(length=200), nullable=True),
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
        sa.Column("performing_lab", sa.String(length=200), nullable=True),
        sa.Column("order_ref", sa.String(length=64), nullable=True),
        sa.Column("value_numeric", sa.Float(), nullable=True),
        sa.Column("value_text", sa.Text(), nullable=True),
        sa.Column("unit", sa.String(length=32), nullable=True),
        sa.Column("reference_range", sa.String(length=64), nullable=True),
        sa.Column("abnormal_flag", sa.String(length=8), nullable=True),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("body_site", sa.String(length=100), nullable=True),
        sa.Column("report_text", sa.Text(), nullable=True),
        sa.Column("conclusion", sa.Text(), nullable=True),
        sa.Column("pacs_url", sa.String(length=500), nullable=True),
        sa.Column("hr_mark", sa.Boolean(), nullable=False),
        sa.Column("supersedes_id", sa.Uuid(), nullable=True),
        sa.Column("superseded_by_id", sa.Uuid(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("source_message_id", sa.Uuid(), nullable=True),
        sa.Column("recorded_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_results_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_record_id"],
            ["patient_records.id"],
            name=op.f("fk_results_patient_record_id_patient_records"),
        ),
        sa.ForeignKeyConstraint(
            ["source_message_id"],
            ["hl7_messages.id"],
            name=op.f("fk_results_source_message_id_hl7_messages"),
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"], ["results.id"], name=op.f("fk_results_supersedes_id_results")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_results")),
    )
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.create_index(
            "ix_results_institution_order", ["institution_id", "order_ref"], unique=False
        )
        batch_op.create_index(
            "ix_results_record_item_effective",
            ["patient_record_id", "item_code", "effective_at"],
            unique=False,
        )

    op.create_table(
        "recognition_decisions",
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("result_id", sa.Uuid(), nullable=False),
        sa.Column("item_code", sa.String(length=32), nullable=False),
        sa.Column("item_version", sa.Integer(), nullable=True),
        sa.Column("ordering_institution_id", sa.Uuid(), nullable=False),
        sa.Column("order_ref", sa.String(length=64), nullable=True),
        sa.Column("clinician_user_id", sa.Uuid(), nullable=True),
        sa.Column("practitioner_id", sa.Uuid(), nullable=True),
        sa.Column(
            "decision",
            sa.Enum("reuse", "repeat", name="recognition_choice", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("reason_codes", sa.JSON(), nullable=False),
        sa.Column("free_text", sa.Text(), nullable=True),
        sa.Column("price", sa.Numeric(precision=10, scale=2), nullable=True),
        sa.Column("decided_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ordering_institution_id"],
            ["institutions.id"],
            name=op.f("fk_recognition_decisions_ordering_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["practitioner_id"],
            ["practitioners.id"],
            name=op.f("fk_recognition_decisions_practitioner_id_practitioners"),
        ),
        sa.ForeignKeyConstraint(
            ["result_id"], ["results.id"], name=op.f("fk_recognition_decisions_result_id_results")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recognition_decisions")),
    )
    with op.batch_alter_table("recognition_decisions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_recognition_decisions_institution_at",
            ["ordering_institution_id", "decided_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_recognition_decisions_person_id"), ["person_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_recognition_decisions_result_id"), ["result_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("recognition_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recognition_decisions_result_id"))
        batch_op.drop_index(batch_op.f("ix_recognition_decisions_person_id"))
        batch_op.drop_index("ix_recognition_decisions_institution_at")

    op.drop_table("recognition_decisions")
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_index("ix_results_record_item_effective")
        batch_op.drop_index("ix_results_institution_order")

    op.drop_table("results")
    op.drop_table("hl7_messages")
    with op.batch_alter_table("lab_accreditations", schema=None) as batch_op:
        batch_op.drop_index("ix_lab_accreditations_institution_item")

    op.drop_table("lab_accreditations")
    with op.batch_alter_table("recognition_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recognition_items_code"))

    op.drop_table("recognition_items")
