"""``medalliance tcm …``: herb recommendations from symptoms, one case or a file of
cases, and retraining the shipped model. The commands join the TCM domain's ``tcm``
Typer app, so importing this module registers them.

Unknown symptom names are reported on stderr and never guessed; results go to stdout
(or the ``--out`` file).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from medalliance.domains.recommender import safety, service
from medalliance.domains.tcm.cli import tcm_app
from medalliance.kernel.errors import InvalidInput


def _warn(message: str) -> None:
    typer.secho(message, fg=typer.colors.YELLOW, err=True)


def _fail(message: str, code: int = 2) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


KOption = Annotated[
    int, typer.Option("-k", "--k", help=f"How many herbs ({service.MIN_K}–{service.MAX_K}).")
]


@tcm_app.command("recommend")
def recommend(
    symptoms: Annotated[str, typer.Option(help='Symptom names separated by spaces: "咳嗽 发热".')],
    k: KOption = 10,
) -> None:
    """The top k herbs for the symptoms, best first, after the safety check."""
    checker = safety.default_checker()
    try:
        result = service.recommend(symptoms=service.parse_names(symptoms), k=k, safety=checker)
    except InvalidInput as exc:
        _fail(f"Cannot recommend: {exc.detail}")
        return
    if result.unknown_symptoms:
        _warn("Not in the symptom vocabulary (ignored): " + " ".join(result.unknown_symptoms))
    typer.echo("Symptoms used: " + " ".join(result.symptoms))
    for s in result.suggestions:
        notes = "; ".join(f"{f.severity}: {f.message} [{f.source}]" for f in s.findings)
        typer.echo(f"{s.rank:>3}. {s.herb}\t{s.score:.4f}" + (f"\t{notes}" if notes else ""))
    for w in result.withheld:
        reasons = "; ".join(f"{f.message} [{f.source}]" for f in w.findings)
        typer.echo(f"  withheld {w.herb}: {reasons}")
    typer.echo(f"Safety check: {result.safety_checker}")


@tcm_app.command("recommend-batch")
def recommend_batch(
    input_file: Annotated[
        Path, typer.Option("--input", help="One case a line: symptom names separated by spaces.")
    ],
    out: Annotated[Path, typer.Option(help="Output: the top k herb names of each case a line.")],
    k: KOption = 10,
) -> None:
    """One output line per input line, in order; a case that cannot be answered (no
    known symptom) gets an empty line and a message on stderr."""
    if not service.MIN_K <= k <= service.MAX_K:
        _fail(f"k must be between {service.MIN_K} and {service.MAX_K}, got {k}.")
    try:
        lines = input_file.read_text(encoding="utf-8-sig").splitlines()  # a BOM is not a name
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"Cannot read {input_file}: {exc}")
        return
    checker = safety.default_checker()
    output: list[str] = []
    problems = 0
    for number, line in enumerate(lines, start=1):
        try:
            result = service.recommend(symptoms=service.parse_names(line), k=k, safety=checker)
        except InvalidInput as exc:
            _warn(f"line {number}: {exc.detail}")
            output.append("")
            problems += 1
            continue
        if result.unknown_symptoms:
            _warn(f"line {number}: not in the vocabulary: " + " ".join(result.unknown_symptoms))
        output.append(" ".join(s.herb for s in result.suggestions))
    try:
        out.write_text("".join(f"{row}\n" for row in output), encoding="utf-8")
    except OSError as exc:
        _fail(f"Cannot write {out}: {exc}")
    typer.echo(
        f"{len(lines)} case(s), {problems} without an answer; wrote {out}. "
        f"Safety check: {checker.name}"
    )


@tcm_app.command("train-recommender")
def train_recommender(
    out: Annotated[
        Path | None,
        typer.Option(help="Directory for model.npz and model.json (default: the package)."),
    ] = None,
) -> None:
    """Retrain on the shipped prescriptions (seeded split), print the metrics and
    rewrite the shipped model."""
    from medalliance.domains.recommender import model, training

    started = time.perf_counter()
    result = training.train(progress=lambda message: typer.echo(message, err=True))
    directory = out or model.shipped_directory()
    try:
        result.model.save(directory, result.metadata)
    except OSError as exc:  # e.g. an installed, read-only package: use --out
        _fail(f"Cannot write the model to {directory}: {exc}", code=1)
    service.shipped_model.cache_clear()
    split = result.metadata["split"]
    typer.echo(
        f"Split (seed {split['seed']}): train {split['train']}, "
        f"validation {split['validation']}, test {split['test']}."
    )
    typer.echo(training.format_table(result.metrics))
    for part, gain in result.gains.items():
        typer.echo(
            f"Model − conditional frequency, P@5 on {part}: "
            f"{gain['P@5 difference']:+.4f} ± {gain['standard error']:.4f} (paired s.e.)"
        )
    for part, groups in result.by_symptom_count.items():
        cells = ", ".join(
            f"{count} symptom(s) {g['P@5 a']:.4f} vs {g['P@5 b']:.4f} ({g['cases']:.0f} cases)"
            for count, g in groups.items()
        )
        typer.echo(f"P@5 on {part} by number of symptoms, model vs frequency: {cells}")
    typer.echo(
        f"Blend weight {result.model.blend:g} (chosen on validation P@5). "
        f"Trained in {time.perf_counter() - started:.1f} s; wrote {directory}."
    )
