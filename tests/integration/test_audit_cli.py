"""``medalliance audit verify`` against a database that was really tampered with.

The CLI opens its own connection, so every test here commits to a throw-away
database (``scratch_db``) and tampers with it the way someone with database owner
rights would: switch off the append-only trigger first, then edit or delete rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from sqlalchemy import text

from medalliance.audit import service as audit
from medalliance.db.uow import unit_of_work
from medalliance.kernel.actor import Actor
from medalliance.kernel.roles import Role
from tests.integration.conftest import CliRun, ScratchDatabase, disable_audit_trigger

ROWS = 5


@pytest.fixture
def chain(scratch_db: ScratchDatabase, make_actor: Callable[..., Actor]) -> ScratchDatabase:
    """Five committed audit events, seq 1..5."""
    actor = make_actor(Role.CLINICIAN, username="cli-chain")
    for i in range(ROWS):
        with unit_of_work(scratch_db.factory) as s:
            audit.record(s, actor, action=f"read-{i + 1}", resource_type="Patient")
    return scratch_db


def tamper(db: ScratchDatabase, trigger: str, statement: str) -> None:
    with db.engine.begin() as conn:
        disable_audit_trigger(conn, trigger)
        result = conn.execute(text(statement))
        assert result.rowcount >= 1


def verify_subprocess(database_url: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MEDALLIANCE_DATABASE_URL=database_url)
    return subprocess.run(
        [sys.executable, "-m", "medalliance.cli", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_edited_row_fails_the_real_command_and_is_named(chain: ScratchDatabase) -> None:
    """The "done when" test: edit row 3 directly in the database, run the real command."""
    clean = verify_subprocess(chain.url)
    assert clean.returncode == 0, clean.stderr
    assert f"Audit trail intact: {ROWS} rows verified." in clean.stdout

    tamper(
        chain,
        "audit_events_no_update",
        "UPDATE audit_events SET actor_username = 'nobody', action = 'innocent' WHERE seq = 3",
    )
    result = verify_subprocess(chain.url)

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "TAMPERED: row 3 " in output
    assert "was changed after it was written" in output
    for untouched in (1, 2, 4, 5):
        assert f"row {untouched} " not in output
    assert f"1 problem(s) in {ROWS} rows" in output


def test_the_command_exits_zero_on_an_intact_trail(chain: ScratchDatabase, run_cli: CliRun) -> None:
    result = run_cli(chain.url, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert f"Audit trail intact: {ROWS} rows verified." in result.output


def test_the_command_exits_zero_on_an_empty_trail(
    scratch_db: ScratchDatabase, run_cli: CliRun
) -> None:
    result = run_cli(scratch_db.url, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert "0 rows verified" in result.output


def test_a_deleted_middle_row_is_named_as_missing(chain: ScratchDatabase, run_cli: CliRun) -> None:
    tamper(chain, "audit_events_no_delete", "DELETE FROM audit_events WHERE seq = 3")

    result = run_cli(chain.url, "audit", "verify")

    assert result.exit_code == 1
    assert "rows 3..3 are missing (deleted) before row 4" in result.output
    assert f"1 problem(s) in {ROWS - 1} rows" in result.output


def test_deleting_the_newest_rows_is_caught_by_the_chain_head(
    chain: ScratchDatabase, run_cli: CliRun
) -> None:
    tamper(chain, "audit_events_no_delete", "DELETE FROM audit_events WHERE seq >= 4")

    result = run_cli(chain.url, "audit", "verify")

    assert result.exit_code == 1
    assert "the chain head records row 5 as the last" in result.output
    assert "the table ends at row 3" in result.output


def test_an_edit_with_a_recomputed_hash_is_caught_at_the_next_row(
    chain: ScratchDatabase, run_cli: CliRun
) -> None:
    tamper(
        chain,
        "audit_events_no_update",
        "UPDATE audit_events SET hash = (SELECT hash FROM audit_events WHERE seq = 1) "
        "WHERE seq = 2",
    )

    result = run_cli(chain.url, "audit", "verify")

    assert result.exit_code == 1
    assert "row 2 " in result.output  # its own content no longer matches its hash
    assert "row 3 does not follow row 2" in result.output
