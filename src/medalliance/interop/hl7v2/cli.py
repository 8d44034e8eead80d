"""``medalliance hl7 import FILE…``: the HTTP interface's twin for files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

hl7_app = typer.Typer(help="HL7 v2 lab and imaging results (ORU^R01).", no_args_is_help=True)


def _read(path: Path) -> str:
    body = path.read_bytes()
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("gb18030", errors="replace")


def _interface_actor(session: Session, username: str | None, facility: str) -> object:
    """The interface account the file is posted as: the named one, or the sending
    institution's only active interface account."""
    from medalliance.access.models import User
    from medalliance.access.permissions import permissions_for
    from medalliance.domains.alliance import service as alliance_service
    from medalliance.kernel.actor import Actor
    from medalliance.kernel.roles import Role

    query = select(User).where(User.role == Role.INTERFACE_GATEWAY, User.active.is_(True))
    if username is not None:
        query = query.where(User.username == username)
    else:
        institution = alliance_service.find_institution(session, facility)
        if institution is None:
            return None
        query = query.where(User.institution_id == institution.id)
    users = list(session.scalars(query.limit(2)))
    if len(users) != 1:
        return None
    user = users[0]
    return Actor(
        user_id=user.id,
        username=user.username,
        role=user.role,
        institution_id=user.institution_id,
        client_address="cli",
        permissions=permissions_for(user.role),
    )


@hl7_app.command("import")
def import_files(
    files: Annotated[list[Path], typer.Argument(help="ER7 files, one ORU^R01 each.")],
    account: Annotated[
        str | None,
        typer.Option(help="Interface account to post as (default: the sender's only one)."),
    ] = None,
) -> None:
    """Store each file's message as POST /api/interop/hl7v2 would, and print its ACK code.
    Exits 1 when any message was not accepted (AA)."""
    from medalliance.config import get_settings
    from medalliance.db.engine import build_engine, build_session_factory
    from medalliance.db.uow import unit_of_work
    from medalliance.interop.hl7v2 import parser, service
    from medalliance.kernel.actor import Actor

    factory = build_session_factory(build_engine(get_settings().database_url))
    failures = 0
    for path in files:
        if not path.is_file():
            typer.secho(f"{path}: no such file", fg=typer.colors.RED, err=True)
            failures += 1
            continue
        raw = _read(path)
        header = parser.header_of(parser.normalise(raw))
        with unit_of_work(factory) as session:
            actor = _interface_actor(session, account, header.sending_facility)
            if not isinstance(actor, Actor):
                typer.secho(
                    f"{path}: no single active interface_gateway account for "
                    f"{account or header.sending_facility!r} (create one with "
                    "`medalliance users create --role interface_gateway`, or pass --account)",
                    fg=typer.colors.RED,
                    err=True,
                )
                failures += 1
                continue
            outcome = service.ingest(session, actor, raw)
        if outcome.code == "AA":
            note = "duplicate, already stored" if outcome.duplicate else (
                f"{len(outcome.result_ids)} result(s) stored"
            )  # fmt: skip
            typer.echo(f"{path}: AA {header.control_id} ({note})")
        else:
            failures += 1
            problem = outcome.problem
            where = "" if problem is None else f" {problem.location}: {problem.message}"
            typer.secho(f"{path}: {outcome.code}{where}", fg=typer.colors.RED, err=True)
    if failures:
        raise typer.Exit(1)
