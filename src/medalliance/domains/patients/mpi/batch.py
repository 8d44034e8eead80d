"""Batch linkage of registry files: deduplicate one CSV file, or link two.

It is the online path's matching model, applied to many pairs at once: the same
``Features``, comparison levels, blocking rules and Fellegi–Sunter ``MatchModel``
(with term-frequency adjustment). By default the model's parameters are re-estimated
on the input itself (``training.train``: u from random pairs, m by EM per blocking
rule, λ from the candidate pairs), because a member's registry differs from the data
the shipped parameters came from; the shipped model can be chosen instead.

What makes it fast: the records become integer columns (``FeatureTable``), blocking
sorts keys instead of looping, the comparison levels are computed in numpy with
rapidfuzz's C functions only where exact agreement fails, and the scoring is split
over the machine's cores in forked worker processes. A pair's probability is the one
``MatchModel.score`` gives for it, to the last bit.

A bad row does not stop the run. Rows without a record_id, or repeating one, are left
out; a value that cannot be used (a birth date that is not a date, an unknown sex, a
phone with too few digits) is left out of its record, which is still linked on its
other fields: dropping a patient from a migration because one field is wrong would
leave a duplicate behind. A birth date in the right shape but impossible (1996-00-94)
is kept as written, because a mistyped date is still close to the true one. Every
problem is reported with its line.
"""

from __future__ import annotations

import csv
import gc
import io
import multiprocessing
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from medalliance.domains.patients.mpi import features, training
from medalliance.domains.patients.mpi.blocking import (
    BLOCKING_RULES,
    BlockingRule,
    BlockingStats,
    candidate_pair_arrays,
)
from medalliance.domains.patients.mpi.comparisons import Index, level_matrix
from medalliance.domains.patients.mpi.features import Features, FeatureTable
from medalliance.domains.patients.mpi.model import (
    MatchModel,
    default_model,
    probabilities,
    probability,
)
from medalliance.kernel.errors import InvalidInput

COLUMNS = (
    "record_id",
    "family_name",
    "given_name",
    "name",
    "birth_date",
    "sex",
    "id_number",
    "phone",
    "address",
    "city",
    "province",  # read, not compared: locality compares city and postcode
    "postcode",
)
_DATE = re.compile(r"(\d{4})[-/]?(\d{2})[-/]?(\d{2})")
_PHONES = re.compile(r"[,;/|]")
_NOT_DIGITS = re.compile(r"\D")
_REPEATED = frozenset(
    {"family_name", "given_name", "name", "birth_date", "sex", "city", "province", "postcode"}
)
_SEXES = {"m": "M", "male": "M", "男": "M", "f": "F", "female": "F", "女": "F"}
SCORE_CHUNK = 1 << 18  # pairs per scoring task
MIN_TRAINING_RECORDS = 1000  # fewer records cannot estimate a model: use the shipped one


class BatchInputError(InvalidInput):
    """The input cannot be used at all (missing file, no record_id column …)."""

    code = "batch-input"
    title = "Unusable batch input"


# -- progress ------------------------------------------------------------------------


class Progress(Protocol):
    """Hears what a batch run is doing: one stage at a time, with its size when known
    (the command line shows a bar per stage)."""

    def stage(
        self, name: str, total: int | None = None
    ) -> AbstractContextManager[Callable[[int], None]]:
        """Run a stage; the yielded function reports how much more of it is done."""
        ...


class Silent:
    """Progress that nobody watches."""

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        yield _ignore


def _ignore(_amount: int) -> None:
    return None


SILENT = Silent()


@contextmanager
def _no_gc() -> Iterator[None]:
    """Python's cycle collector rescans every live object as millions are allocated,
    which triples the time to build a million records; they hold no cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- reading -------------------------------------------------------------------------


ROW_LEFT_OUT = "row left out"
VALUE_LEFT_OUT = "linked without this value"
VALUE_KEPT = "compared as written"


@dataclass(frozen=True, slots=True)
class RowProblem:
    source: str
    line: int
    reason: str
    outcome: str  # ROW_LEFT_OUT, VALUE_LEFT_OUT or VALUE_KEPT

    def __str__(self) -> str:
        return f"{self.source}, line {self.line}: {self.reason} ({self.outcome})"


@dataclass
class Registry:
    """The records of one file, ready to link, and what was wrong with it."""

    name: str
    records: list[Features]
    rows: int = 0  # data rows in the file
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Rows left out."""
        return sum(p.outcome == ROW_LEFT_OUT for p in self.problems)

    @property
    def bad_rows(self) -> int:
        """Rows with at least one problem."""
        return len({p.line for p in self.problems})


Row = tuple[int, list[str | None]]  # line number, values in COLUMNS order


def read_rows(
    path: Path, progress: Progress = SILENT, *, encoding: str = "utf-8-sig"
) -> tuple[list[Row], list[RowProblem]]:
    """The CSV's data rows as values in ``COLUMNS`` order (blank → None), with the
    rows left out for a missing or repeated record_id or unreadable CSV."""
    if not path.is_file():
        raise BatchInputError(f"{path}: no such file")
    size = path.stat().st_size
    rows: list[Row] = []
    problems: list[RowProblem] = []
    seen: dict[str, int] = {}
    # one copy of each repeated value (names, dates, places): a million rows share few
    shared: list[dict[str, str] | None] = [{} if c in _REPEATED else None for c in COLUMNS]
    with (
        path.open("rb") as raw,
        io.TextIOWrapper(raw, encoding=encoding, newline="") as handle,
        progress.stage(f"reading {path.name}", size) as advance,
        _no_gc(),
    ):
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise BatchInputError(f"{path}: the file is empty") from None
        except UnicodeDecodeError as exc:
            raise _not_encoded(path, 1, encoding, exc) from None
        except csv.Error as exc:
            raise BatchInputError(f"{path}: not a readable CSV file ({exc})") from None
        names = [h.strip().lower() for h in header]
        if "record_id" not in names:
            raise BatchInputError(
                f"{path}: the header has no record_id column (found: {', '.join(header)})"
            )
        columns = [
            (names.index(c), cache) for c, cache in zip(COLUMNS, shared, strict=True) if c in names
        ]
        slots = [COLUMNS.index(names[k]) for k, _ in columns]
        width, done = len(names), 0
        while True:
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # a NUL byte, a runaway quoted field …
                reason = f"not a readable CSV row ({exc})"
                problems.append(RowProblem(path.name, reader.line_num, reason, ROW_LEFT_OUT))
                continue
            except UnicodeDecodeError as exc:
                raise _not_encoded(path, reader.line_num + 1, encoding, exc) from None
            line = reader.line_num
            if line % 4096 == 0:
                position = raw.tell()  # read ahead a little: fine for a bar
                advance(max(position - done, 0))
                done = position
            if len(values) < width:
                if not any(v.strip() for v in values):
                    continue  # a blank line
                values = values + [""] * (width - len(values))
            row: list[str | None] = [None] * len(COLUMNS)
            for slot, (k, cache) in zip(slots, columns, strict=True):
                text = values[k].strip()
                if text:
                    row[slot] = text if cache is None else cache.setdefault(text, text)
            record_id = row[0]
            if record_id is None:
                problems.append(RowProblem(path.name, line, "no record_id", ROW_LEFT_OUT))
            elif record_id in seen:
                reason = f"record_id {record_id!r} repeats line {seen[record_id]}"
                problems.append(RowProblem(path.name, line, reason, ROW_LEFT_OUT))
            else:
                seen[record_id] = line
                rows.append((line, row))
        advance(max(size - done, 0))
    return rows, problems


def _not_encoded(
    path: Path, line: int, encoding: str, error: UnicodeDecodeError
) -> BatchInputError:
    return BatchInputError(
        f"{path}, near line {line}: not {encoding} text ({error.reason}); give the file's "
        "encoding with --encoding (many Chinese exports are gb18030)"
    )


def _birth(text: str, today: date) -> tuple[str | None, str | None]:
    """(YYYYMMDD or None, problem or None)."""
    found = _DATE.fullmatch(text)
    if found is None:
        return None, f"birth_date {text!r} is not a date (YYYY-MM-DD)"
    digits = "".join(found.groups())
    try:
        born = date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return digits, f"birth_date {text!r} is not a calendar date"
    if born > today:
        return digits, f"birth_date {text!r} is in the future"
    return digits, None


def build_records(
    name: str, rows: list[Row], problems: list[RowProblem], progress: Progress = SILENT
) -> Registry:
    """Features for every row; unusable values are reported and left out."""
    registry = Registry(name=name, records=[], rows=len(rows), problems=list(problems))
    today = date.today()  # noqa: DTZ011 - a calendar date, as birth dates are
    report = registry.problems.append
    build = features.build
    with progress.stage("features", len(rows)) as advance, _no_gc():
        for count, (line, v) in enumerate(rows, 1):
            birth = sex = None
            if v[4] is not None:
                birth, problem = _birth(v[4], today)
                if problem:
                    outcome = VALUE_LEFT_OUT if birth is None else VALUE_KEPT
                    report(RowProblem(name, line, problem, outcome))
            if v[5] is not None:
                sex = _SEXES.get(v[5].lower())
                if sex is None:
                    report(RowProblem(name, line, f"sex {v[5]!r} is not M or F", VALUE_LEFT_OUT))
            phones: list[str] = []
            if v[7] is not None:
                for phone in _PHONES.split(v[7]):
                    digits = len(phone) if phone.isdigit() else len(_NOT_DIGITS.sub("", phone))
                    if digits >= 6:
                        phones.append(phone)
                    elif phone.strip():
                        reason = f"phone {phone!r} has fewer than 6 digits"
                        report(RowProblem(name, line, reason, VALUE_LEFT_OUT))
            registry.records.append(
                build(
                    v[0] or "",
                    family_name=v[1],
                    given_name=v[2],
                    full_name=v[3],
                    birth_date=birth,
                    sex=sex,
                    id_number=v[6],
                    phones=phones,
                    street=v[8],
                    city=v[9],
                    postcode=v[11],
                )
            )
            if count % 8192 == 0:
                advance(8192)
        advance(len(rows) % 8192)
    registry.problems.sort(key=lambda p: p.line)
    return registry


def read_registry(
    path: Path, progress: Progress = SILENT, *, encoding: str = "utf-8-sig"
) -> Registry:
    rows, problems = read_rows(path, progress, encoding=encoding)
    return build_records(path.name, rows, problems, progress)


# -- linking -------------------------------------------------------------------------


@dataclass
class Linkage:
    """The pairs judged the same person: ``left`` and ``right`` index the records of
    the left and right file (of the one file when deduplicating)."""

    left: Index
    right: Index
    probability: list[float]
    candidate_pairs: int
    blocking: BlockingStats
    model: MatchModel
    model_source: str
    threshold: float


def choose_model(choice: str) -> MatchModel | None:
    """'trained' (None: estimate on the input), 'shipped', or a model JSON file."""
    if choice == "trained":
        return None
    if choice == "shipped":
        return default_model()
    path = Path(choice)
    if not path.is_file():
        raise BatchInputError(f"--model must be trained, shipped or a model file; got {choice!r}")
    try:
        return MatchModel.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError) as exc:
        raise BatchInputError(f"{path}: not a match model ({exc})") from None


def _workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def link(
    left: Sequence[Features],
    right: Sequence[Features] | None = None,
    *,
    model: MatchModel | None = None,
    model_source: str = "given",
    threshold: float | None = None,
    description: str = "the input",
    workers: int | None = None,
    rules: Sequence[BlockingRule] = BLOCKING_RULES,
    progress: Progress = SILENT,
) -> Linkage:
    """Pairs of the same person: within ``left``, or between ``left`` and ``right``.
    Without ``model`` the parameters are estimated on the records themselves;
    ``model_source`` says where a given model came from (for the summary)."""
    workers = workers or _workers()
    with progress.stage("columns", 1) as advance:
        table = FeatureTable.of(list(left) if right is None else [*left, *right])
        advance(1)
    left_rows = np.arange(len(left))
    right_rows = None if right is None else np.arange(len(left), len(table))
    stats = BlockingStats()
    with progress.stage("blocking", len(rules)) as advance:
        i, j = candidate_pair_arrays(
            table, left_rows, right_rows, stats=stats, rules=rules, on_rule=lambda _r: advance(1)
        )
    others = len(table) - 1 if right is None else len(table) - len(left)
    source = model_source
    if model is None and len(table) < MIN_TRAINING_RECORDS:
        model = default_model()
        source = f"shipped: {len(table)} records are too few to estimate one"
    if model is None:
        source = "estimated on the input"
        with progress.stage("training", training.STEPS) as advance:
            scorer = training.train(
                table,
                description=description,
                left_size=None if right is None else len(left),
                candidates=(i, j),
                workers=workers,
                on_step=lambda _s: advance(1),
            )
    else:
        scorer = model.for_population(max(others, 2))
    cutoff = scorer.link_threshold if threshold is None else threshold
    with progress.stage("scoring", len(i)) as advance:
        keep, weights = _score(table, i, j, scorer, cutoff, workers, advance)
    exact = [probability(w) for w in weights.tolist()]  # as MatchModel.score computes it
    linked = [k for k, p in enumerate(exact) if p >= cutoff]
    first, second = i[keep[linked]], j[keep[linked]]
    offset = 0 if right is None else len(left)
    return Linkage(
        left=first,
        right=second - offset,
        probability=[exact[k] for k in linked],
        candidate_pairs=len(i),
        blocking=stats,
        model=scorer,
        model_source=source,
        threshold=cutoff,
    )


@dataclass(frozen=True, slots=True)
class _Work:
    table: FeatureTable
    i: Index
    j: Index
    model: MatchModel
    cutoff: float


# The scoring workers are forked: they inherit the work instead of unpickling a
# million-record table each.
_work: _Work | None = None


def _score_range(bounds: tuple[int, int]) -> tuple[int, Index, npt.NDArray[np.float64]]:
    assert _work is not None
    start, stop = bounds
    left = _work.i[start:stop]
    matrix = level_matrix(_work.table, left, _work.j[start:stop])
    weights = _work.model.pair_weights(matrix, table=_work.table, left=left)
    # numpy's power may differ from C's pow in the last bit: keep a margin here, the
    # exact probability decides afterwards.
    keep = np.flatnonzero(probabilities(weights) >= _work.cutoff - 1e-9)
    return stop - start, start + keep, weights[keep]


def _score(
    table: FeatureTable,
    i: Index,
    j: Index,
    model: MatchModel,
    cutoff: float,
    workers: int,
    advance: Callable[[int], None],
) -> tuple[Index, npt.NDArray[np.float64]]:
    """Candidate pairs (positions in i, j) whose probability may reach ``cutoff``, with
    their weights."""
    global _work
    _work = _Work(table, i, j, model, cutoff)
    ranges = [(s, min(s + SCORE_CHUNK, len(i))) for s in range(0, len(i), SCORE_CHUNK)]
    found: list[tuple[Index, npt.NDArray[np.float64]]] = []
    try:
        if workers > 1 and len(ranges) > 1 and "fork" in multiprocessing.get_all_start_methods():
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for done, keep, weights in pool.imap(_score_range, ranges):
                    found.append((keep, weights))
                    advance(done)
        else:
            for bounds in ranges:
                done, keep, weights = _score_range(bounds)
                found.append((keep, weights))
                advance(done)
    finally:
        _work = None
    if not found:
        return np.zeros(0, dtype=np.intp), np.zeros(0)
    return np.concatenate([k for k, _ in found]), np.concatenate([w for _, w in found])


def write_links(
    path: Path, linkage: Linkage, left: Sequence[Features], right: Sequence[Features] | None
) -> None:
    other = left if right is None else right
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["left_id", "right_id", "probability"])
        pairs = zip(linkage.left.tolist(), linkage.right.tolist(), linkage.probability, strict=True)
        for a, b, p in pairs:
            writer.writerow([left[a].key, other[b].key, repr(p)])
