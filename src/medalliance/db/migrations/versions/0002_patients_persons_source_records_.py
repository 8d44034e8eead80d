"""patients: persons, source records, identifiers, consent, MPI review and link history

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:06:20.629758
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import medalliance.db.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "persons",
        sa.Column("family_name", sa.String(length=50), nullable=False),
        sa.Column("given_name", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=150), nullable=False),
        sa.Column("name_pinyin", sa.String(length=300), nullable=False),
        sa.Column("name_initials", sa.String(length=50), nullable=False),
        sa.Column(
            "sex",
            sa.Enum("male", "female", "unknown", name="sex", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("id_number", sa.String(length=18), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("province", sa.String(length=50), nullable=True),
        sa.Column("city", sa.String(length=50), nullable=True),
        sa.Column("district", sa.String(length=50), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_persons")),
    )
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_persons_id_number"), ["id_number"], unique=False)
        batch_op.create_index(batch_op.f("ix_persons_name"), ["name"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_persons_name_initials"), ["name_initials"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_persons_name_pinyin"), ["name_pinyin"], unique=False)

    op.create_table(
        "consents",
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("granted", "withdrawn", name="consent_status", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("excluded_institution_ids", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.Uuid(), nullable=True),
        sa.Column("recorded_at_institution_id", sa.Uuid(), nullable=True),
        sa.Column("recorded_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_consents_person_id_persons")
        ),
        sa.ForeignKeyConstraint(
            ["recorded_at_institution_id"],
            ["institutions.id"],
            name=op.f("fk_consents_recorded_at_institution_id_institutions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
    )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consents_person_recorded", ["person_id", "recorded_at"], unique=False
        )

    op.create_table(
        "patient_records",
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("mrn", sa.String(length=64), nullable=True),
        sa.Column("family_name", sa.String(length=50), nullable=False),
        sa.Column("given_name", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=150), nullable=False),
        sa.Column("name_pinyin", sa.String(length=300), nullable=False),
        sa.Column("name_initials", sa.String(length=50), nullable=False),
        sa.Column("name_pinyin_compact", sa.String(length=300), nullable=False),
        sa.Column(
            "sex",
            sa.Enum("male", "female", "unknown", name="sex", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("id_number", sa.String(length=18), nullable=True),
        sa.Column("phones", sa.JSON(), nullable=False),
        sa.Column("province", sa.String(length=50), nullable=True),
        sa.Column("city", sa.String(length=50), nullable=True),
        sa.Column("district", sa.String(length=50), nullable=True),
        sa.Column("street", sa.String(length=200), nullable=True),
        sa.Column("postcode", sa.String(length=10), nullable=True),
        sa.Column("emergency_contact", sa.JSON(), nullable=True),
        sa.Column(
            "pregnancy_status",
            sa.Enum(
                "unknown",
                "pregnant",
                "not_pregnant",
                name="pregnancy_status",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "pregnancy_recorded_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "link_method",
            sa.Enum(
                "new_person",
                "resident_id",
                "probabilistic",
                "manual",
                name="link_method",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("link_score", sa.Double(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_patient_records_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_patient_records_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_records")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_patient_records_idempotency_key")),
        sa.UniqueConstraint(
            "institution_id", "mrn", name=op.f("uq_patient_records_institution_id_mrn")
        ),
    )
    with op.batch_alter_table("patient_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_patient_records_birth_date_sex", ["birth_date", "sex"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_patient_records_id_number"), ["id_number"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_patient_records_institution_id"), ["institution_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_patient_records_name"), ["name"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_patient_records_name_initials"), ["name_initials"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_patient_records_name_pinyin"), ["name_pinyin"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_patient_records_name_pinyin_compact"),
            ["name_pinyin_compact"],
            unique=False,
        )
        batch_op.create_index(
            "ix_patient_records_person_institution", ["person_id", "institution_id"], unique=False
        )

    op.create_table(
        "mpi_link_events",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("from_person_id", sa.Uuid(), nullable=True),
        sa.Column("to_person_id", sa.Uuid(), nullable=False),
        sa.Column(
            "action",
            sa.Enum(
                "created",
                "auto_linked",
                "linked",
                "unlinked",
                name="link_action",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("probability", sa.Double(), nullable=True),
        sa.Column("actor_user_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["from_person_id"],
            ["persons.id"],
            name=op.f("fk_mpi_link_events_from_person_id_persons"),
        ),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["patient_records.id"],
            name=op.f("fk_mpi_link_events_record_id_patient_records"),
        ),
        sa.ForeignKeyConstraint(
            ["to_person_id"], ["persons.id"], name=op.f("fk_mpi_link_events_to_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mpi_link_events")),
    )
    with op.batch_alter_table("mpi_link_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mpi_link_events_record_id"), ["record_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_mpi_link_events_to_person_id"), ["to_person_id"], unique=False
        )

    op.create_table(
        "mpi_review_items",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("candidate_record_id", sa.Uuid(), nullable=False),
        sa.Column("probability", sa.Double(), nullable=False),
        sa.Column("weight", sa.Double(), nullable=False),
        sa.Column("comparison", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "open", "linked", "distinct", name="review_status", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.Uuid(), nullable=True),
        sa.Column("decided_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["candidate_record_id"],
            ["patient_records.id"],
            name=op.f("fk_mpi_review_items_candidate_record_id_patient_records"),
        ),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["patient_records.id"],
            name=op.f("fk_mpi_review_items_record_id_patient_records"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mpi_review_items")),
    )
    with op.batch_alter_table("mpi_review_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mpi_review_items_candidate_record_id"),
            ["candidate_record_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_mpi_review_items_record_id"), ["record_id"], unique=False
        )
        batch_op.create_index(
            "ix_mpi_review_items_status_created", ["status", "created_at"], unique=False
        )

    op.create_table(
        "patient_identifiers",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column(
            "system",
            sa.Enum(
                "resident_id",
                "mrn",
                "insurance",
                "passport",
                "phone",
                "other",
                name="identifier_system",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("assigner", sa.String(length=100), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["patient_records.id"],
            name=op.f("fk_patient_identifiers_record_id_patient_records"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_identifiers")),
        sa.UniqueConstraint(
            "record_id",
            "system",
            "value",
            name=op.f("uq_patient_identifiers_record_id_system_value"),
        ),
    )
    with op.batch_alter_table("patient_identifiers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_patient_identifiers_record_id"), ["record_id"], unique=False
        )
        batch_op.create_index(
            "ix_patient_identifiers_value_system", ["value", "system"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("patient_identifiers", schema=None) as batch_op:
        batch_op.drop_index("ix_patient_identifiers_value_system")
        batch_op.drop_index(batch_op.f("ix_patient_identifiers_record_id"))

    op.drop_table("patient_identifiers")
    with op.batch_alter_table("mpi_review_items", schema=None) as batch_op:
        batch_op.drop_index("ix_mpi_review_items_status_created")
        batch_op.drop_index(batch_op.f("ix_mpi_review_items_record_id"))
        batch_op.drop_index(batch_op.f("ix_mpi_review_items_candidate_record_id"))

    op.drop_table("mpi_review_items")
    with op.batch_alter_table("mpi_link_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mpi_link_events_to_person_id"))
        batch_op.drop_index(batch_op.f("ix_mpi_link_events_record_id"))

    op.drop_table("mpi_link_events")
    with op.batch_alter_table("patient_records", schema=None) as batch_op:
        batch_op.drop_index("ix_patient_records_person_institution")
        batch_op.drop_index(batch_op.f("ix_patient_records_name_pinyin_compact"))
        batch_op.drop_index(batch_op.f("ix_patient_records_name_pinyin"))
        batch_op.drop_index(batch_op.f("ix_patient_records_name_initials"))
        batch_op.drop_index(batch_op.f("ix_patient_records_name"))
        batch_op.drop_index(batch_op.f("ix_patient_records_institution_id"))
        batch_op.drop_index(batch_op.f("ix_patient_records_id_number"))
        batch_op.drop_index("ix_patient_records_birth_date_sex")

    op.drop_table("patient_records")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index("ix_consents_person_recorded")

    op.drop_table("consents")
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_persons_name_pinyin"))
        batch_op.drop_index(batch_op.f("ix_persons_name_initials"))
        batch_op.drop_index(batch_op.f("ix_persons_name"))
        batch_op.drop_index(batch_op.f("ix_persons_id_number"))

    op.drop_table("persons")
