"""``medalliance mpi …``: batch linkage of registry files, model training and
evaluation (a Typer sub-application; the main CLI mounts it as ``mpi``).

Progress bars (rich) go to stderr when it is a terminal and are silent otherwise;
row problems go to stderr; the summary goes to stdout. The linkage code (numpy,
rapidfuzz, pypinyin) is imported by the commands that use it, so that mounting this
application does not slow down every other ``medalliance`` command.
"""

from __future__ import annotations

import csv
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.progress import Progress

    from medalliance.domains.patients.mpi import batch, synthetic

mpi_app = typer.Typer(
    help="Master patient index: batch linkage of registry files, models.", no_args_is_help=True
)


class _Silent:
    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        yield lambda _amount: None


class _Bars:
    """A rich progress bar per stage."""

    def __init__(self, bars: Progress) -> None:
        self.bars = bars

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        task = self.bars.add_task(name, total=total)
        yield lambda amount: self.bars.advance(task, amount)
        self.bars.update(task, total=total or 1, completed=total or 1)


class _Timed:
    """Times each stage for the summary, and passes it on (to the bars, if any)."""

    def __init__(self, inner: _Silent | _Bars) -> None:
        self.inner = inner
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        started = time.perf_counter()
        with self.inner.stage(name, total) as advance:
            yield advance
        label = name.split(" ")[0]
        self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - started

    def describe(self) -> str:
        return ", ".join(f"{name} {seconds:.1f}" for name, seconds in self.seconds.items())


@contextmanager
def _progress() -> Iterator[_Timed]:
    """Bars on a terminal, nothing otherwise (a pipe, a file, a test)."""
    if not sys.stderr.isatty():
        yield _Timed(_Silent())
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    bars = Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    with bars:
        yield _Timed(_Bars(bars))


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _report(registries: Sequence[batch.Registry], limit: int) -> None:
    problems = [p for r in registries for p in r.problems]
    shown = problems if limit <= 0 else problems[:limit]
    for problem in shown:
        typer.echo(str(problem), err=True)
    if len(problems) > len(shown):
        typer.echo(
            f"… and {len(problems) - len(shown)} more problems (--max-problems 0 shows all)",
            err=True,
        )


def _read(paths: Sequence[Path], progress: batch.Progress, encoding: str) -> list[batch.Registry]:
    from medalliance.domains.patients.mpi import batch

    try:
        return [batch.read_registry(path, progress, encoding=encoding) for path in paths]
    except LookupError:
        raise _fail(f"unknown encoding {encoding!r}") from None
    except batch.BatchInputError as exc:
        raise _fail(exc.detail) from None
    except OSError as exc:
        raise _fail(f"cannot read the input: {exc}") from None


Threshold = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Link pairs with at least this match probability (default: the model's link "
        "threshold).",
    ),
]
Encoding = Annotated[
    str,
    typer.Option(help="The input files' encoding, e.g. gb18030 for many Chinese exports."),
]
ModelChoice = Annotated[
    str,
    typer.Option(
        "--model",
        help="trained: estimate the parameters on the input (default); shipped: the "
        "parameters the online matcher uses; or a model JSON file from `mpi train`.",
    ),
]


@mpi_app.command("link-files")
def link_files(
    left: Annotated[Path, typer.Argument(help="Registry CSV (record_id and any of the fields).")],
    right: Annotated[
        Path | None, typer.Argument(help="A second registry: link across instead of dedupe.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the links CSV.")] = Path(
        "links.csv"
    ),
    threshold: Threshold = None,
    model: ModelChoice = "trained",
    workers: Annotated[
        int, typer.Option(min=0, help="Processes for scoring (0: one per CPU).")
    ] = 0,
    max_problems: Annotated[int, typer.Option(min=0, help="Row problems to print (0: all).")] = 200,
    encoding: Encoding = "utf-8-sig",
) -> None:
    """Deduplicate one registry file, or link two: write left_id,right_id,probability
    for every pair judged to be the same person."""
    from medalliance.domains.patients.mpi import batch

    started = time.perf_counter()
    paths = [left] if right is None else [left, right]
    try:
        chosen = batch.choose_model(model)
    except batch.BatchInputError as exc:
        raise _fail(exc.detail) from None
    with _progress() as progress:
        registries = _read(paths, progress, encoding)
        _report(registries, max_problems)
        first, second = registries[0].records, None if right is None else registries[1].records
        if not first or (second is not None and not second):
            raise _fail("no usable records to link", code=1)
        description = (
            f"batch linkage of {', '.join(p.name for p in paths)} "
            f"({sum(len(r.records) for r in registries):,} records), "
            f"{datetime.now(UTC):%Y-%m-%d}"
        )
        linkage = batch.link(
            first,
            second,
            model=chosen,
            model_source="shipped" if model == "shipped" else f"from {model}",
            threshold=threshold,
            description=description,
            workers=workers or None,
            progress=progress,
        )
        with progress.stage("writing", 1) as advance:
            try:
                batch.write_links(out, linkage, first, second)
            except OSError as exc:
                raise _fail(f"cannot write the links: {exc}", code=1) from None
            advance(1)
    elapsed = time.perf_counter() - started
    records = " + ".join(f"{len(r.records):,}" for r in registries)
    bad = sum(r.bad_rows for r in registries)
    skipped = sum(r.skipped for r in registries)
    kept = bad - skipped
    typer.echo(f"Records:          {records} ({'linkage' if right else 'deduplication'})")
    typer.echo(
        f"Bad rows:         {bad:,} ({skipped:,} left out, {kept:,} linked without or "
        "despite a bad value; see stderr)"
    )
    typer.echo(f"Candidate pairs:  {linkage.candidate_pairs:,}")
    typer.echo(
        f"Model:            {linkage.model_source}; λ {linkage.model.prior:.3g}, "
        f"threshold {linkage.threshold:g}"
    )
    typer.echo(f"Links:            {len(linkage.probability):,} → {out}")
    typer.echo(f"Time:             {elapsed:.1f} s ({progress.describe()})")


@mpi_app.command("train")
def train(
    left: Annotated[Path, typer.Argument(help="Registry CSV to estimate the model on.")],
    right: Annotated[
        Path | None, typer.Argument(help="A second registry: estimate for linking the two.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the model JSON.")] = Path(
        "model.json"
    ),
    description: Annotated[
        str | None, typer.Option(help="Provenance written into the model.")
    ] = None,
    max_problems: Annotated[int, typer.Option(min=0, help="Row problems to print (0: all).")] = 200,
    encoding: Encoding = "utf-8-sig",
) -> None:
    """Estimate a match model (u, m, λ, name frequencies) from a registry, unsupervised."""
    import numpy as np

    from medalliance.domains.patients.mpi import batch, training
    from medalliance.domains.patients.mpi.blocking import candidate_pair_arrays
    from medalliance.domains.patients.mpi.features import FeatureTable

    paths = [left] if right is None else [left, right]
    with _progress() as progress:
        registries = _read(paths, progress, encoding)
        _report(registries, max_problems)
        records = [f for r in registries for f in r.records]
        if len(records) < batch.MIN_TRAINING_RECORDS:
            raise _fail(
                f"{len(records)} records are too few to estimate a model "
                f"(at least {batch.MIN_TRAINING_RECORDS})",
                code=1,
            )
        table = FeatureTable.of(records)
        left_size = None if right is None else len(registries[0].records)
        with progress.stage("blocking", 1) as advance:
            candidates = candidate_pair_arrays(
                table,
                np.arange(len(records) if left_size is None else left_size),
                None if left_size is None else np.arange(left_size, len(records)),
            )
            advance(1)
        with progress.stage("training", training.STEPS) as advance:
            model = training.train(
                table,
                description=description
                or (
                    f"medalliance mpi train on {', '.join(p.name for p in paths)} "
                    f"({len(records):,} records), {datetime.now(UTC):%Y-%m-%d}"
                ),
                left_size=left_size,
                candidates=candidates,
                on_step=lambda _s: advance(1),
            )
    try:
        out.write_text(model.to_json() + "\n", encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot write the model: {exc}", code=1) from None
    typer.echo(
        f"Model estimated on {len(records):,} records: λ {model.prior:.3g} "
        f"({model.matches_per_record:.3g} matches per record) → {out}"
    )


@mpi_app.command("evaluate")
def evaluate(
    links: Annotated[Path, typer.Argument(help="Links CSV written by link-files.")],
    left: Annotated[Path, typer.Argument(help="The left (or only) registry CSV.")],
    right: Annotated[Path | None, typer.Argument(help="The right registry CSV.")] = None,
    truth: Annotated[
        str, typer.Option(help="Column holding the true person of each record.")
    ] = "person",
) -> None:
    """Precision, recall and F1 of a links file against a column that names each
    record's true person (synthetic or benchmark data)."""
    try:
        result = score_links(links, left, right, truth)
    except (OSError, KeyError, ValueError) as exc:
        raise _fail(f"cannot evaluate: {exc}") from None
    typer.echo(
        f"Links {result.links:,}, true pairs {result.true_pairs:,}, correct {result.correct:,}"
    )
    typer.echo(f"Precision {result.precision:.4f}  recall {result.recall:.4f}  F1 {result.f1:.4f}")


@dataclass(frozen=True, slots=True)
class Evaluation:
    links: int
    true_pairs: int
    correct: int

    @property
    def precision(self) -> float:
        return self.correct / self.links if self.links else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.true_pairs if self.true_pairs else 1.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def _truth(path: Path, column: str) -> dict[str, str]:
    """record_id → the value of ``column`` (the record's true person)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = [h.strip().lower() for h in next(reader, [])]
        if "record_id" not in header or column.lower() not in header:
            raise ValueError(f"{path} needs the columns record_id and {column}")
        key, value = header.index("record_id"), header.index(column.lower())
        return {
            row[key].strip(): row[value].strip()
            for row in reader
            if len(row) > max(key, value) and row[key].strip() and row[value].strip()
        }


def score_links(links: Path, left: Path, right: Path | None, truth_column: str) -> Evaluation:
    """Precision and recall of a links file against the records that share a value of
    ``truth_column``: within the file, or across the two files."""
    left_truth = _truth(left, truth_column)
    right_truth = left_truth if right is None else _truth(right, truth_column)
    with links.open(encoding="utf-8", newline="") as handle:
        found = {(row["left_id"], row["right_id"]) for row in csv.DictReader(handle)}
    correct = sum(1 for a, b in found if a in left_truth and left_truth[a] == right_truth.get(b))
    per_person = Counter(right_truth.values())
    if right is None:
        true_pairs = sum(n * (n - 1) // 2 for n in per_person.values())
    else:
        true_pairs = sum(per_person[v] for v in left_truth.values())
    return Evaluation(links=len(found), true_pairs=true_pairs, correct=correct)


@mpi_app.command("synthetic")
def synthetic_registry(
    out: Annotated[Path, typer.Option("--out", help="Where to write the registry CSV.")],
    persons: Annotated[int, typer.Option(min=1, help="People (records are ~22 % more).")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """Write an invented Chinese registry with known duplicates (column person)."""
    from medalliance.domains.patients.mpi import synthetic

    records = synthetic.registry(persons, seed=seed)
    write_synthetic(out, records)
    typer.echo(f"{len(records):,} records of {persons:,} people → {out}")


def write_synthetic(path: Path, records: Sequence[synthetic.SyntheticRecord]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer: csv.DictWriter[str] | None = None
        for record in records:
            row = {**record.as_row(), "person": str(record.person)}
            if writer is None:
                writer = csv.DictWriter(handle, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)


if __name__ == "__main__":  # python -m medalliance.domains.patients.mpi.cli …
    mpi_app()
