"""The ``medalliance`` command line (Typer)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Annotated

import typer

from medalliance.config import Settings, get_settings
from medalliance.domains.monitoring import cli as monitoring_cli
from medalliance.domains.patients.mpi.cli import mpi_app
from medalliance.domains.recommender import cli as recommender_cli  # noqa: F401 - adds tcm commands
from medalliance.domains.results.cli import results_app
from medalliance.domains.tcm.cli import tcm_app
from medalliance.fhir.cli import fhir_app
from medalliance.interop.hl7v2.cli import hl7_app
from medalliance.kernel.errors import ConfigurationError, DomainError
from medalliance.kernel.roles import Role

app = typer.Typer(
    name="medalliance",
    help="MedAlliance: the shared information platform of a medical alliance (医联体).",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
users_app = typer.Typer(help="Accounts.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")
app.add_typer(mpi_app, name="mpi", help="Master patient index: batch linkage, training.")
app.add_typer(
    tcm_app, name="tcm", help="TCM: reference data, the safety check, herb recommendation."
)
app.add_typer(results_app, name="results")
app.add_typer(hl7_app, name="hl7")
app.add_typer(fhir_app, name="fhir")

DEMO_DATABASE_URL = "sqlite:///./medalliance-demo.db"


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from medalliance.app import create_app, freeze_startup_heap

    try:
        application = create_app(settings)
    except ConfigurationError as exc:
        _fail(str(exc))
        return
    freeze_startup_heap()
    uvicorn.run(application, host=host, port=port, log_level="info")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Serve the API (needs MEDALLIANCE_SECRET_KEY outside demo mode)."""
    _serve(get_settings(), host, port)


@app.command()
def demo(
    seed_only: Annotated[
        bool, typer.Option("--seed-only", help="Migrate and seed, then exit.")
    ] = False,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    patients: Annotated[
        int, typer.Option(help="Synthetic people to register (with duplicates ≈ 1.2×).", min=0)
    ] = 1700,
) -> None:
    """Create, migrate and seed the demo alliance, print the demo accounts, and serve it."""
    from medalliance.db import migrate
    from medalliance.demo import seed

    base = get_settings()
    url = base.database_url
    if "MEDALLIANCE_DATABASE_URL" not in os.environ:
        url = DEMO_DATABASE_URL
    settings = base.model_copy(update={"demo_mode": True, "database_url": url})
    typer.echo(f"Database: {url}")
    migrate.upgrade(url)
    typer.echo("Seeding the demo alliance (the first run takes a minute)…")
    summary = seed.seed_demo(url, patients=patients)
    typer.echo(summary.describe())
    typer.echo("")
    typer.echo("Demo accounts (password for all: " + seed.DEMO_PASSWORD + "):")
    for username, role, institution in summary.accounts:
        typer.echo(f"  {username:<16} {role:<18} {institution}")
    if seed_only:
        return
    typer.echo("")
    typer.echo(f"Serving at http://{host}:{port}  (API docs: http://{host}:{port}/api/docs)")
    typer.echo(
        f"Log in: curl -d 'username=clinician&password={seed.DEMO_PASSWORD}' "
        f"http://{host}:{port}/api/auth/token"
    )
    _serve(settings, host, port)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply the Alembic migrations to MEDALLIANCE_DATABASE_URL."""
    from medalliance.db import migrate

    migrate.upgrade(get_settings().database_url, revision)
    typer.echo(f"Database at {revision}.")


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Option(help="Login name.")],
    password: Annotated[str, typer.Option(help="At least 10 characters.")],
    role: Annotated[Role, typer.Option(help="One of the platform roles.")],
    institution: Annotated[
        str | None, typer.Option(help="Institution code (required except for alliance roles).")
    ] = None,
    display_name: Annotated[str | None, typer.Option(help="Name shown in the UI.")] = None,
) -> None:
    """Create an account (as the system, audited)."""
    from pydantic import ValidationError

    from medalliance.access import accounts
    from medalliance.access.permissions import permissions_for
    from medalliance.access.schemas import UserCreate
    from medalliance.db.engine import build_engine, build_session_factory
    from medalliance.db.uow import unit_of_work
    from medalliance.kernel.actor import Actor

    try:
        data = UserCreate(
            username=username,
            password=password,
            role=role,
            institution_code=institution,
            display_name=display_name,
        )
    except ValidationError as exc:
        _fail(
            "Invalid account: "
            + "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()),
            code=2,
        )
        return
    system = Actor(
        user_id=None,
        username="cli",
        role=Role.ALLIANCE_ADMIN,
        permissions=permissions_for(Role.ALLIANCE_ADMIN),
    )
    factory = build_session_factory(build_engine(get_settings().database_url))
    try:
        with unit_of_work(factory) as session:
            user = accounts.create_user(session=session, actor=system, data=data)
            user_id = user.id
    except DomainError as exc:
        _fail(f"Could not create the account: {exc.detail}")
        return
    typer.echo(f"Created {role} account {username!r} ({user_id}).")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit trail's hash chain; name every altered or missing row."""
    from medalliance.audit import service as audit
    from medalliance.db.engine import build_engine, build_session_factory

    factory = build_session_factory(build_engine(get_settings().database_url))
    with factory() as session:
        report = audit.verify(session)
    if report.ok:
        typer.echo(f"Audit trail intact: {report.rows_checked} rows verified.")
        return
    for problem in report.problems:
        typer.secho(f"TAMPERED: {problem.message}", fg=typer.colors.RED, err=True)
    _fail(
        f"Audit trail check FAILED: {len(report.problems)} problem(s) "
        f"in {report.rows_checked} rows."
    )


@app.command()
def worker(
    burst: Annotated[bool, typer.Option("--burst", help="Run what is due now, then exit.")] = False,
    poll: Annotated[float, typer.Option(help="Seconds between polls when idle.")] = 1.0,
) -> None:
    """Run the durable job worker (retries with backoff; several may run at once)."""
    from medalliance import wiring
    from medalliance.db.engine import build_engine, build_session_factory
    from medalliance.jobs.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    wiring.load_all()
    factory = build_session_factory(build_engine(get_settings().database_url))
    runner = Worker(factory)
    if burst:
        summary = runner.run_until_idle()
        typer.echo(
            f"Ran {summary.claimed} job(s): {summary.succeeded} done, {summary.failed} failed."
        )
        return
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    runner.run_forever(stop, poll_seconds=poll)


app.command("mqtt-ingest")(monitoring_cli.mqtt_ingest)


def main() -> None:
    try:
        app()
    except ConfigurationError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
