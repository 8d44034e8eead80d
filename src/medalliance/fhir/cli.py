"""``medalliance fhir …``: import Bundles / NDJSON through the FHIR handler."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

fhir_app = typer.Typer(help="FHIR R4: import Bundles and NDJSON.", no_args_is_help=True)


def import_actor(institution_id: object, code: str) -> object:
    """Who an import acts as: the importing member's staff, allowed to add the external
    hospitals and practitioners the data names to the registry. Audited under this name."""
    from medalliance.access.permissions import Permission
    from medalliance.kernel.actor import Actor
    from medalliance.kernel.ids import stable_id

    permissions = frozenset(
        str(p)
        for p in (
            Permission.PATIENT_READ,
            Permission.PATIENT_WRITE,
            Permission.REGISTRY_READ,
            Permission.REGISTRY_MANAGE,
            Permission.ALLIANCE_MANAGE,
        )
    )
    return Actor(
        user_id=stable_id("fhir-import", code),
        username=f"fhir-import@{code}",
        role=None,
        institution_id=institution_id,  # type: ignore[arg-type]
        permissions=permissions,
    )


@fhir_app.command("import")
def import_command(
    path: Annotated[Path, typer.Argument(exists=True, help="A file or folder of Bundles / NDJSON")],
    institution: Annotated[
        str, typer.Option("--institution", "-i", help="Code of the importing member")
    ],
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            help="Processes importing side by side (PostgreSQL; default: one per CPU core). "
            "SQLite serialises writers: always 1 there.",
        ),
    ] = None,
) -> None:
    """Load FHIR data through the same code as the API; print a summary per type."""
    from medalliance import wiring
    from medalliance.config import get_settings
    from medalliance.db.engine import build_engine, build_session_factory
    from medalliance.domains.alliance import service as alliance_service
    from medalliance.fhir.importer import Importer, files_in
    from medalliance.fhir.resources import REGISTRY
    from medalliance.kernel.actor import Actor

    wiring.load_all()
    factory = build_session_factory(build_engine(get_settings().database_url))
    with factory() as session:
        found = alliance_service.find_institution(session, institution)
    if found is None:
        typer.secho(f"No institution with code {institution!r}.", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    actor = import_actor(found.id, found.code)
    assert isinstance(actor, Actor)
    importer = Importer(factory, actor, REGISTRY)
    workers = importer.usable_workers(workers or os.cpu_count() or 1)
    console = Console(stderr=True)
    files = files_in(path)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[resources]} resources"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("importing", total=len(files), resources=0)
        done_files: set[str] = set()

        def progress(name: str, n: int) -> None:
            fields = bar.tasks[task].fields
            advance = 0 if name in done_files else 1
            done_files.add(name)
            bar.update(
                task, advance=advance, description=name[:40], resources=fields["resources"] + n
            )

        summary = importer.run(path, progress, workers=workers)
    _print(summary)
    if summary.failed:
        raise typer.Exit(1)


def _print(summary: object) -> None:
    from medalliance.fhir.importer import ImportSummary

    assert isinstance(summary, ImportSummary)
    console = Console(width=None if sys.stdout.isatty() else 120)  # logs keep whole rows
    workers = f", {summary.workers} processes" if summary.workers > 1 else ""
    table = Table(
        title=f"FHIR import: {summary.files} file(s), {summary.total_read} resources{workers}"
    )
    for column in ("type", "created", "already present", "not modelled", "failed"):
        table.add_column(column, justify="left" if column == "type" else "right")
    types = sorted(
        set(summary.created)
        | set(summary.already_present)
        | set(summary.not_modelled)
        | set(summary.not_yet_modelled)
        | set(summary.read_only)
        | set(summary.failed_by_type)
    )
    for rtype in types:
        skipped = (
            summary.not_modelled[rtype] + summary.not_yet_modelled[rtype] + summary.read_only[rtype]
        )
        label = (
            "not yet modelled"
            if rtype in summary.not_yet_modelled
            else "read-only here"
            if rtype in summary.read_only
            else "not modelled"
        )
        table.add_row(
            rtype,
            str(summary.created[rtype]),
            str(summary.already_present[rtype]),
            f"{skipped} ({label})" if skipped else "0",
            str(summary.failed_by_type[rtype]),
        )
    console.print(table)
    if summary.dangling:
        console.print(
            "Dangling references (the target is in neither the input nor the "
            "database; the import went on):"
        )
        for rtype, n in sorted(summary.dangling.items()):
            console.print(f"  {rtype}: {n}")
        console.print("  e.g. " + ", ".join(summary.dangling_examples[:5]))
    if summary.left_out:
        console.print(
            "Optional references left out (their target type is not mapped here): "
            + ", ".join(f"{t} {n}" for t, n in sorted(summary.left_out.items()))
        )
    if summary.retries:
        console.print(
            f"{summary.retries} Bundle(s) run again after losing a race with another "
            "transaction (nothing was created twice: the senders' ids map onto the winner's)"
        )
    for where, why in summary.failed[:50]:
        console.print(f"[red]FAILED[/red] {where}: {why}")
    if len(summary.failed) > 50:
        console.print(f"… and {len(summary.failed) - 50} more failures")
