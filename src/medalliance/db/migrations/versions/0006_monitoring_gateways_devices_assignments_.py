"""monitoring: gateways, devices, assignments, readings, dead letters, thresholds, alerts

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-23 13:29:12.513774
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import medalliance.db.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# At most one active alert per patient record and rule (see monitoring.models.Alert).
ACTIVE = "status IN ('open', 'acknowledged', 'escalated')"


def upgrade() -> None:
    op.create_table(
        "monitoring_dead_letters",
        sa.Column("transport", sa.String(length=16), nullable=False),
        sa.Column("topic", sa.String(length=300), nullable=True),
        sa.Column("gateway_code", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("received_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitoring_dead_letters")),
    )
    with op.batch_alter_table("monitoring_dead_letters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_monitoring_dead_letters_received_at"), ["received_at"], unique=False
        )

    op.create_table(
        "monitoring_threshold_overrides",
        sa.Column("patient_record_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column(
            "rule",
            sa.Enum(
                "hypertensive_crisis",
                "hypertensive_urgency",
                "hypoglycaemia_level_2",
                "hypoglycaemia_level_1",
                "hyperglycaemia_emergency",
                "low_spo2",
                "hf_weight_gain",
                "no_readings",
                name="alert_rule",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("second_threshold", sa.Float(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_monitoring_threshold_overrides_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_record_id"],
            ["patient_records.id"],
            name=op.f("fk_monitoring_threshold_overrides_patient_record_id_patient_records"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitoring_threshold_overrides")),
        sa.UniqueConstraint(
            "patient_record_id",
            "rule",
            name=op.f("uq_monitoring_threshold_overrides_patient_record_id_rule"),
        ),
    )
    op.create_table(
        "device_gateways",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_device_gateways_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_device_gateways_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_gateways")),
        sa.UniqueConstraint("code", name=op.f("uq_device_gateways_code")),
        sa.UniqueConstraint("user_id", name=op.f("uq_device_gateways_user_id")),
    )
    with op.batch_alter_table("device_gateways", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_device_gateways_institution_id"), ["institution_id"], unique=False
        )

    op.create_table(
        "devices",
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("gateway_id", sa.Uuid(), nullable=False),
        sa.Column(
            "device_type",
            sa.Enum(
                "bp_monitor",
                "glucometer",
                "pulse_oximeter",
                "scale",
                "thermometer",
                "heart_rate_monitor",
                "activity_tracker",
                name="device_type",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("serial", sa.String(length=100), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["device_gateways.id"],
            name=op.f("fk_devices_gateway_id_device_gateways"),
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_devices_institution_id_institutions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("serial", name=op.f("uq_devices_serial")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_gateway_id"), ["gateway_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_devices_institution_id"), ["institution_id"], unique=False
        )

    op.create_table(
        "device_assignments",
        sa.Column("device_id", sa.Uuid(), nullable=False),
        sa.Column("patient_record_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("start", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("end", medalliance.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("responsible_user_id", sa.Uuid(), nullable=True),
        sa.Column("assigned_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_assignments_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_device_assignments_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_record_id"],
            ["patient_records.id"],
            name=op.f("fk_device_assignments_patient_record_id_patient_records"),
        ),
        sa.ForeignKeyConstraint(
            ["responsible_user_id"],
            ["users.id"],
            name=op.f("fk_device_assignments_responsible_user_id_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_assignments")),
    )
    with op.batch_alter_table("device_assignments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_device_assignments_device_start", ["device_id", "start"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_device_assignments_institution_id"), ["institution_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_device_assignments_patient_record_id"),
            ["patient_record_id"],
            unique=False,
        )

    op.create_table(
        "readings",
        sa.Column("device_id", sa.Uuid(), nullable=False),
        sa.Column(
            "measurement",
            sa.Enum(
                "blood_pressure",
                "heart_rate",
                "glucose",
                "spo2",
                "weight",
                "body_temperature",
                "steps",
                name="measurement_type",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("measured_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("patient_record_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("gateway_id", sa.Uuid(), nullable=False),
        sa.Column("loinc", sa.String(length=16), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("diastolic", sa.Float(), nullable=True),
        sa.Column(
            "glucose_context",
            sa.Enum(
                "fasting",
                "post_meal",
                "random",
                name="glucose_context",
                native_enum=False,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("period_start", medalliance.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("received_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_readings_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["device_gateways.id"],
            name=op.f("fk_readings_gateway_id_device_gateways"),
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_readings_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_record_id"],
            ["patient_records.id"],
            name=op.f("fk_readings_patient_record_id_patient_records"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_readings")),
        sa.UniqueConstraint(
            "device_id",
            "measurement",
            "measured_at",
            name=op.f("uq_readings_device_id_measurement_measured_at"),
        ),
    )
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_readings_record_measured", ["patient_record_id", "measured_at"], unique=False
        )

    op.create_table(
        "monitoring_alerts",
        sa.Column("patient_record_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column(
            "rule",
            sa.Enum(
                "hypertensive_crisis",
                "hypertensive_urgency",
                "hypoglycaemia_level_2",
                "hypoglycaemia_level_1",
                "hyperglycaemia_emergency",
                "low_spo2",
                "hf_weight_gain",
                "no_readings",
                name="alert_rule",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "severity",
            sa.Enum(
                "critical", "high", "medium", name="alert_severity", native_enum=False, length=32
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "acknowledged",
                "escalated",
                "resolved",
                name="alert_status",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("criterion", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("reading_id", sa.Uuid(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("raised_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "acknowledged_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("acknowledged_by", sa.Uuid(), nullable=True),
        sa.Column("escalated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("escalated_by", sa.Uuid(), nullable=True),
        sa.Column("resolved_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.Uuid(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medalliance.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_monitoring_alerts_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_record_id"],
            ["patient_records.id"],
            name=op.f("fk_monitoring_alerts_patient_record_id_patient_records"),
        ),
        sa.ForeignKeyConstraint(
            ["reading_id"], ["readings.id"], name=op.f("fk_monitoring_alerts_reading_id_readings")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitoring_alerts")),
    )
    with op.batch_alter_table("monitoring_alerts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_monitoring_alerts_institution_status", ["institution_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_monitoring_alerts_record_rule", ["patient_record_id", "rule"], unique=False
        )
        batch_op.create_index(
            "uq_monitoring_alerts_active_rule",
            ["patient_record_id", "rule"],
            unique=True,
            postgresql_where=sa.text(ACTIVE),
            sqlite_where=sa.text(ACTIVE),
        )


def downgrade() -> None:
    with op.batch_alter_table("monitoring_alerts", schema=None) as batch_op:
        batch_op.drop_index("uq_monitoring_alerts_active_rule")
        batch_op.drop_index("ix_monitoring_alerts_record_rule")
        batch_op.drop_index("ix_monitoring_alerts_institution_status")

    op.drop_table("monitoring_alerts")
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.drop_index("ix_readings_record_measured")

    op.drop_table("readings")
    with op.batch_alter_table("device_assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_assignments_patient_record_id"))
        batch_op.drop_index(batch_op.f("ix_device_assignments_institution_id"))
        batch_op.drop_index("ix_device_assignments_device_start")

    op.drop_table("device_assignments")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_institution_id"))
        batch_op.drop_index(batch_op.f("ix_devices_gateway_id"))

    op.drop_table("devices")
    with op.batch_alter_table("device_gateways", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_gateways_institution_id"))

    op.drop_table("device_gateways")
    op.drop_table("monitoring_threshold_overrides")
    with op.batch_alter_table("monitoring_dead_letters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_monitoring_dead_letters_received_at"))

    op.drop_table("monitoring_dead_letters")
