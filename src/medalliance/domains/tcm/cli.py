"""``medalliance tcm``: look herbs and formulas up and run the safety check from the
command line (reference data only; no patient data, no database)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from medalliance.domains.tcm.catalogue import catalogue
from medalliance.domains.tcm.safety import NOT_REVIEWED, HerbDose, UnknownHerb, check
from medalliance.kernel.errors import InvalidInput

tcm_app = typer.Typer(help="TCM reference data and the safety check.", no_args_is_help=True)


@tcm_app.command("herbs")
def herbs(query: str, limit: Annotated[int, typer.Option(min=1, max=100)] = 10) -> None:
    """Find herbs by characters, pinyin, initials (dg), Latin or English name."""
    for herb in catalogue().search_herbs(query, limit):
        dose = "" if herb.dose is None else f"{herb.dose.min_g:g}–{herb.dose.max_g:g} g"
        basis = "" if herb.dose is None else f" ({herb.dose.basis})"
        parent = f" ← {herb.parent}" if herb.parent else ""
        typer.echo(f"{herb.name_zh}\t{herb.pinyin}\t{herb.latin}\t{dose}{basis}{parent}")


@tcm_app.command("check")
def check_command(
    herbs: Annotated[list[str], typer.Argument(help="NAME or NAME:GRAMS, e.g. 附子:9 半夏:9")],
    drug: Annotated[list[str] | None, typer.Option(help="A Western drug (repeat)")] = None,
    pregnant: Annotated[bool | None, typer.Option("--pregnant/--not-pregnant")] = None,
    allergy: Annotated[list[str] | None, typer.Option(help="A recorded allergy (repeat)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON")] = False,
) -> None:
    """Check herbs against each other, pregnancy, dose ranges, drugs and allergies.
    Exits 2 when a finding blocks."""
    lines = []
    for item in herbs:
        name, _, grams = item.partition(":")
        try:
            lines.append(HerbDose(name, float(grams) if grams else None))
        except ValueError:
            typer.secho(f"{item}: the dose must be a number of grams", fg="red", err=True)
            raise typer.Exit(1) from None
    try:
        findings = check(lines, drugs=drug or [], pregnant=pregnant, allergies=allergy or [])
    except UnknownHerb as exc:
        names = ", ".join(f"{s['name_zh']} ({s['pinyin']})" for s in exc.extra["suggestions"])
        typer.secho(f"{exc.detail} Suggestions: {names}", fg="red", err=True)
        raise typer.Exit(1) from None
    except InvalidInput as exc:
        typer.secho(exc.detail, fg="red", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps([f.as_dict() for f in findings], ensure_ascii=False, indent=2))
    else:
        for f in findings:
            typer.echo(f"[{f.severity}] {f.rule}: {f.message_zh}\n    {f.message_en}")
            typer.echo(f"    source: {f.source}")
        typer.echo(NOT_REVIEWED["zh"] + " " + NOT_REVIEWED["en"])
    if any(f.severity == "block" for f in findings):
        raise typer.Exit(2)
