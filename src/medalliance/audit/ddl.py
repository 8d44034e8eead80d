"""Database objects of the audit trail: triggers that make the table append-only for
the application, and (PostgreSQL) the function that appends events to the chain.

Someone with owner rights can still drop the triggers; the hash chain detects that.
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


# --- the append function (PostgreSQL) -----------------------------------------------------
#
# One round trip per transaction instead of three (lock the head, insert, update the
# head): the application sends the events with their unsequenced bodies
# (``chain.unsequenced_body``); under the head's row lock the function numbers them,
# chains them with ``chain.chain_hash``'s rule (sha256 of prev_hash, a newline and the
# body ending in ``,"seq":N}``), inserts them and moves the head. Rows it writes verify
# with ``chain.row_hash`` like any other.

APPEND_FUNCTION = "medalliance_audit_append"

_APPEND_UP = """
CREATE OR REPLACE FUNCTION medalliance_audit_append(events jsonb) RETURNS bigint AS $$
DECLARE
    head_seq bigint;
    head_hash text;
    has_head boolean;
    e jsonb;
    digest text;
BEGIN
    SELECT last_seq, last_hash INTO head_seq, head_hash
    FROM audit_chain_head WHERE id = 1 FOR UPDATE;
    has_head := FOUND;
    IF NOT has_head THEN
        head_seq := 0;
        head_hash := repeat('0', 64);
    END IF;
    FOR e IN SELECT value FROM jsonb_array_elements(events) WITH ORDINALITY ORDER BY ordinality
    LOOP
        head_seq := head_seq + 1;
        digest := encode(sha256(convert_to(
            head_hash || E'\\n' || (e->>'unsequenced') || ',"seq":' || head_seq || '}',
            'UTF8')), 'hex');
        INSERT INTO audit_events (
            seq, event_id, recorded_at, action, outcome, actor_user_id, actor_username,
            actor_role, actor_institution_id, resource_type, resource_id, patient_id,
            purpose_of_use, reason, request_id, client_address, detail, prev_hash, hash)
        VALUES (
            head_seq, (e->>'event_id')::uuid, (e->>'recorded_at')::timestamptz,
            e->>'action', e->>'outcome', (e->>'actor_user_id')::uuid, e->>'actor_username',
            e->>'actor_role', (e->>'actor_institution_id')::uuid, e->>'resource_type',
            e->>'resource_id', (e->>'patient_id')::uuid, e->>'purpose_of_use', e->>'reason',
            e->>'request_id', e->>'client_address', e->>'detail', head_hash, digest);
        head_hash := digest;
    END LOOP;
    IF has_head THEN
        UPDATE audit_chain_head SET last_seq = head_seq, last_hash = head_hash,
            updated_at = clock_timestamp()
        WHERE id = 1;
    ELSE
        INSERT INTO audit_chain_head (id, last_seq, last_hash, updated_at)
        VALUES (1, head_seq, head_hash, clock_timestamp());
    END IF;
    RETURN head_seq;
END
$$ LANGUAGE plpgsql
"""
_APPEND_DOWN = f"DROP FUNCTION IF EXISTS {APPEND_FUNCTION}(jsonb)"


def install_append_function(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(_APPEND_UP)


def remove_append_function(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(_APPEND_DOWN)
