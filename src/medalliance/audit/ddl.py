"""Database triggers that make the audit table append-only for the application.

Someone with owner rights can still drop them; the hash chain is what detects that.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

TRIGGER_NAMES = ("audit_events_no_update", "audit_events_no_delete")

_POSTGRES_UP = [
    """
    CREATE OR REPLACE FUNCTION medalliance_audit_append_only() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION 'audit_events is append-only (%% refused)', TG_OP;
    END
    $$ LANGUAGE plpgsql
    """,
    """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
       FOR EACH ROW EXECUTE FUNCTION medalliance_audit_append_only()""",
    """CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
       FOR EACH ROW EXECUTE FUNCTION medalliance_audit_append_only()""",
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
       FOR EACH STATEMENT EXECUTE FUNCTION medalliance_audit_append_only()""",
]
_POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events",
    "DROP TRIGGER IF EXISTS audit_events_no_delete ON audit_events",
    "DROP TRIGGER IF EXISTS audit_events_no_update ON audit_events",
    "DROP FUNCTION IF EXISTS medalliance_audit_append_only()",
]
_SQLITE_UP = [
    """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only (UPDATE refused)'); END""",
    """CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only (DELETE refused)'); END""",
]
_SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS audit_events_no_delete",
    "DROP TRIGGER IF EXISTS audit_events_no_update",
]


def _statements(dialect: str, up: bool) -> list[str]:
    if dialect == "postgresql":
        return _POSTGRES_UP if up else _POSTGRES_DOWN
    if dialect == "sqlite":
        return _SQLITE_UP if up else _SQLITE_DOWN
    return []


def install(connection: Connection) -> None:
    # exec_driver_sql with psycopg treats % as a placeholder, hence %% above.
    for statement in _statements(connection.dialect.name, up=True):
        connection.exec_driver_sql(statement)


def remove(connection: Connection) -> None:
    for statement in _statements(connection.dialect.name, up=False):
        connection.exec_driver_sql(statement)
