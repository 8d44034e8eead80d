"""The worker processes of a parallel ``fhir import`` (``Importer.run(path, workers=N)``).

Each worker connects to the importer's database with an engine of its own and imports
whole files with an ``Importer`` of its own, one transaction per Bundle as ever. It
sends progress as it goes and returns its file's summary; the parent adds the summaries
up in the plan's order (so failures are listed in the same order whatever finished
first) and reports dangling references once, over the union of what every worker saw.

Workers are forked from a fork server that has imported the models and the FHIR
registry once (spawned, where there is no fork server): the parent itself is never
forked, so its connections and threads (a progress bar) stay its own.
"""

from __future__ import annotations

import multiprocessing
import queue
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medalliance import wiring

if TYPE_CHECKING:
    from medalliance.fhir.importer import Importer, ImportSummary, Progress
    from medalliance.kernel.actor import Actor

# "__main__": the program (the CLI) is imported once in the fork server, not again in
# every worker (multiprocessing then finds it already there).
PRELOAD = [
    "__main__",
    *wiring.MODULES,
    "medalliance.fhir.resources",
    "medalliance.fhir.parallel_import",
    "medalliance.fhir.warm_workers",
]
POLL_S = 0.2

_worker: dict[str, Any] = {}  # the worker process's importer and progress queue


def _context() -> BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([*PRELOAD, *_main_module_name()])
        return context
    return multiprocessing.get_context("spawn")


def _main_module_name() -> list[str]:
    """A program run as ``python -m name``: every worker runs that module again
    (multiprocessing's rule); with it imported in the fork server first, what the
    module imports is already there."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None)
    # ``python -m pkg`` runs ``pkg.__main__``, which need not guard its body: not preloaded
    usable = isinstance(name, str) and name != "__main__" and not name.endswith(".__main__")
    return [name] if usable and isinstance(name, str) else []


def _start(url: str, actor: Actor, events: Any) -> None:
    """A worker's set-up: its own engine on the database, the platform's registry."""
    from medalliance.db.engine import build_engine, build_session_factory
    from medalliance.domains.results import units
    from medalliance.fhir.importer import Importer, collect_for_bulk
    from medalliance.fhir.resources import REGISTRY

    wiring.load_all()
    _worker["importer"] = Importer(build_session_factory(build_engine(url)), actor, REGISTRY)
    _worker["events"] = events
    units.dimension_of("mg/dL")  # built in the fork server already (spawn: here, ~0.5 s)
    collect_for_bulk()  # for the worker's life, which ends with the import


def _ready() -> None:
    """A task that starts a worker (the pool starts them as tasks arrive)."""


def _import(file: Path) -> ImportSummary:
    """One file in a worker; its summary (CPU time included) goes back to the parent."""
    from medalliance.fhir.importer import ImportSummary

    importer: Importer = _worker["importer"]
    events = _worker["events"]
    importer.summary = ImportSummary()
    began = time.process_time()
    importer.import_file(file, None if events is None else lambda n, k: events.put((n, k)))
    importer.summary.worker_cpu_s = time.process_time() - began
    return importer.summary


def run_phases(
    importer: Importer,
    serial: list[Path],
    phases: list[list[Path]],
    progress: Progress | None,
    workers: int,
) -> None:
    """Import the ``serial`` files here (what the others refer to), then each phase's
    files side by side, a phase after the one before it; add the workers' summaries to
    ``importer.summary``. The workers start (and warm up) while the serial files are
    imported. An error that is not a failed Bundle (the database went away) stops the
    import, as in a serial one."""
    from medalliance.fhir.importer import database_url_of

    url = database_url_of(importer.factory)
    assert url is not None  # Importer.usable_workers checked it
    workers = min(workers, max((len(phase) for phase in phases), default=0))
    importer.summary.workers = max(workers, 1)
    if workers <= 1:  # nothing to share out
        for file in [*serial, *(f for phase in phases for f in phase)]:
            importer.import_file(file, progress)
        return
    context = _context()
    events = context.Queue() if progress is not None else None
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start, initargs=(url, importer.actor, events)
    )
    try:
        starting = [pool.submit(_ready) for _ in range(workers)]
        for file in serial:
            importer.import_file(file, progress)
        for phase in phases:
            results = _share_out(pool, importer, phase, workers, starting, events, progress)
            for file in phase:
                importer.summary.merge(results[file])
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    _relay(events, progress)  # the workers have exited: everything they sent is here


def _share_out(
    pool: ProcessPoolExecutor,
    importer: Importer,
    phase: list[Path],
    workers: int,
    starting: list[Future[None]],
    events: Any,
    progress: Progress | None,
) -> dict[Path, ImportSummary]:
    """The phase's files to the workers, one waiting per worker at most. Until every
    worker has started (a new process imports the platform, about a second), the
    parent imports the next file itself instead of waiting."""
    todo = deque(phase)
    running: dict[Future[ImportSummary], Path] = {}
    results: dict[Path, ImportSummary] = {}
    while todo or running:
        while todo and len(running) < workers:
            file = todo.popleft()
            running[pool.submit(_import, file)] = file
        done = {f for f in running if f.done()}
        if not done and todo and not all(f.done() for f in starting):
            file = todo.popleft()
            results[file] = _import_here(importer, file, progress)
        elif not done:
            done, _ = wait(set(running), timeout=POLL_S, return_when=FIRST_COMPLETED)
        _relay(events, progress)
        for future in done:
            results[running.pop(future)] = future.result()
    return results


def _import_here(importer: Importer, file: Path, progress: Progress | None) -> ImportSummary:
    """One file in the parent, with a summary of its own (merged in the plan's order)."""
    from medalliance.fhir.importer import ImportSummary

    kept, importer.summary = importer.summary, ImportSummary()
    try:
        importer.import_file(file, progress)
        return importer.summary
    finally:
        importer.summary = kept


def _relay(events: Any, progress: Progress | None) -> None:
    if events is None or progress is None:
        return
    while True:
        try:
            name, n = events.get_nowait()
        except queue.Empty:
            return
        progress(name, n)
