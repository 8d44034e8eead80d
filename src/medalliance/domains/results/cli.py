"""``medalliance results …``: the recognition catalogue."""

from __future__ import annotations

import typer

results_app = typer.Typer(help="Results and mutual recognition.", no_args_is_help=True)


@results_app.command("seed-catalogue")
def seed_catalogue() -> None:
    """Add the reference items of WORKFLOWS.md §1.4 (with sources) that are missing."""
    from medalliance.config import get_settings
    from medalliance.db.engine import build_engine, build_session_factory
    from medalliance.db.uow import unit_of_work
    from medalliance.domains.results import catalogue

    factory = build_session_factory(build_engine(get_settings().database_url))
    with unit_of_work(factory) as session:
        added = catalogue.seed_reference(session)
    typer.echo(f"Recognition catalogue: {added} item(s) added.")
