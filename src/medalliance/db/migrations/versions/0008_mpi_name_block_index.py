"""mpi: the name block read from one index, nearest birth dates first

Revision ID: 0008
Revises: 0003
Create Date: 2026-11-23 14:00:00.000000

The online matcher caps the candidates sharing the compact pinyin at those born
nearest the new record. An index on (name_pinyin_compact, birth_date, id) serves that
from the index alone; it also serves every lookup the single-column index on
name_pinyin_compact served, so that index goes.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

import medalliance.db.types  # noqa: F401 - like every revision

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("patient_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_records_name_pinyin_compact"))
        batch_op.create_index(
            "ix_patient_records_pinyin_compact_birth_id",
            ["name_pinyin_compact", "birth_date", "id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("patient_records", schema=None) as batch_op:
        batch_op.drop_index("ix_patient_records_pinyin_compact_birth_id")
        batch_op.create_index(
            batch_op.f("ix_patient_records_name_pinyin_compact"),
            ["name_pinyin_compact"],
            unique=False,
        )
