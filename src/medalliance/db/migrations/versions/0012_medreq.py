"""medreq: prescriptions recorded from another system (FHIR MedicationRequest create),
recorded devices (FHIR Device create: implants, durable equipment)

Prescriptions: an order placed elsewhere keeps its own status, intent, authoredOn,
requester and reason; it may name no encounter; its drug lines may carry only a dosage
text. Devices: a recorded device has no gateway, may have no model or serial, and keeps
its UDI, lot, dates, name and status; a serial is unique among connected devices only.

Enums are VARCHAR without a CHECK (``str_enum``): new values need no DDL.

Revision ID: 0012_medreq
Revises: 0011
Create Date: 2026-11-23 19:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import medalliance.db.types

revision: str = "0012_medreq"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ORDER_STATUS = sa.Enum(
    "active",
    "on-hold",
    "cancelled",
    "completed",
    "entered-in-error",
    "stopped",
    "draft",
    "unknown",
    name="order_status",
    native_enum=False,
    length=32,
)


def upgrade() -> None:
    with op.batch_alter_table("tcm_prescriptions", schema=None) as batch_op:
        batch_op.alter_column("encounter_id", existing_type=sa.Uuid(), nullable=True)
        batch_op.add_column(sa.Column("order_status", _ORDER_STATUS, nullable=True))
        batch_op.add_column(sa.Column("intent", sa.String(length=20), nullable=True))
        batch_op.add_column(
            sa.Column("authored_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("requester_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("reason_diagnosis_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("recorded_from", sa.String(length=100), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_tcm_prescriptions_requester_id_practitioners"),
            "practitioners",
            ["requester_id"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_tcm_prescriptions_reason_diagnosis_id_diagnoses"),
            "diagnoses",
            ["reason_diagnosis_id"],
            ["id"],
        )
    with op.batch_alter_table("tcm_prescription_drugs", schema=None) as batch_op:
        for column, length in (("dose", 100), ("route", 50), ("frequency", 50)):
            batch_op.alter_column(column, existing_type=sa.String(length=length), nullable=True)
        batch_op.add_column(sa.Column("dosage_text", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("as_needed", sa.Boolean(), nullable=True))
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.alter_column("gateway_id", existing_type=sa.Uuid(), nullable=True)
        batch_op.alter_column("model", existing_type=sa.String(length=100), nullable=True)
        batch_op.alter_column("serial", existing_type=sa.String(length=100), nullable=True)
        batch_op.add_column(sa.Column("status", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("udi_di", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("udi_carrier", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("lot_number", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column(
                "manufactured_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("expires_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_devices_udi_di"), ["udi_di"], unique=False)
        # a serial is unique among connected devices only (recorded ones may repeat it)
        batch_op.drop_constraint("uq_devices_serial", type_="unique")
    op.create_index(
        "uq_devices_serial",
        "devices",
        ["serial"],
        unique=True,
        postgresql_where=sa.text("gateway_id IS NOT NULL"),
        sqlite_where=sa.text("gateway_id IS NOT NULL"),
    )


def downgrade() -> None:
    # Recorded rows cannot live in the older shape: they are removed first.
    op.execute(
        "DELETE FROM device_assignments WHERE device_id IN "
        "(SELECT id FROM devices WHERE gateway_id IS NULL)"
    )
    op.execute("DELETE FROM devices WHERE gateway_id IS NULL")
    op.drop_index("uq_devices_serial", table_name="devices")
    op.execute(
        "DELETE FROM tcm_prescription_drugs WHERE prescription_id IN "
        "(SELECT id FROM tcm_prescriptions WHERE status = 'recorded')"
    )
    op.execute(
        "DELETE FROM tcm_prescription_herbs WHERE prescription_id IN "
        "(SELECT id FROM tcm_prescriptions WHERE status = 'recorded')"
    )
    op.execute("DELETE FROM tcm_prescriptions WHERE status = 'recorded'")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_udi_di"))
        for column in (
            "expires_at",
            "manufactured_at",
            "lot_number",
            "udi_carrier",
            "udi_di",
            "name",
            "status",
        ):
            batch_op.drop_column(column)
        batch_op.alter_column("serial", existing_type=sa.String(length=100), nullable=False)
        batch_op.create_unique_constraint("uq_devices_serial", ["serial"])
        batch_op.alter_column("model", existing_type=sa.String(length=100), nullable=False)
        batch_op.alter_column("gateway_id", existing_type=sa.Uuid(), nullable=False)
    with op.batch_alter_table("tcm_prescription_drugs", schema=None) as batch_op:
        batch_op.drop_column("as_needed")
        batch_op.drop_column("dosage_text")
        for column, length in (("dose", 100), ("route", 50), ("frequency", 50)):
            batch_op.alter_column(column, existing_type=sa.String(length=length), nullable=False)
    with op.batch_alter_table("tcm_prescriptions", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_tcm_prescriptions_reason_diagnosis_id_diagnoses"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_tcm_prescriptions_requester_id_practitioners"), type_="foreignkey"
        )
        for column in (
            "recorded_from",
            "reason_diagnosis_id",
            "reason",
            "requester_id",
            "authored_at",
            "intent",
            "order_status",
        ):
            batch_op.drop_column(column)
        batch_op.alter_column("encounter_id", existing_type=sa.Uuid(), nullable=False)
