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
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medalliance import wiring

if TYPE_CHECKING:
    from medalliance.fhir.importer import Importer, ImportSummary, Progress
    from medalliance.kernel.actor import Actor

PRELOAD = [*wiring.MODULES, "medalliance.fhir.resources", "medalliance.fhir.parallel_import"]
POLL_S = 0.2

_worker: dict[str, Any] = {}  # the worker process's importer and progress queue


def _context() -> BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def _start(url: str, actor: Actor, events: Any) -> None:
    """A worker's set-up: its own engine on the database, the platform's registry."""
    from medalliance.db.engine import build_engine, build_session_factory
    from medalliance.fhir.importer import Importer
    from medalliance.fhir.resources import REGISTRY

    wiring.load_all()
    _worker["importer"] = Importer(build_session_factory(build_engine(url)), actor, REGISTRY)
    _worker["events"] = events


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
    importer: Importer, phases: list[list[Path]], progress: Progress | None, workers: int
) -> None:
    """Import each phase's files side by side, a phase after the one before it; add
    the workers' summaries to ``importer.summary``. An error that is not a failed
    Bundle (the database went away) stops the import, as in a serial one."""
    from medalliance.fhir.importer import database_url_of

    url = database_url_of(importer.factory)
    assert url is not None  # Importer.usable_workers checked it
    workers = min(workers, max((len(phase) for phase in phases), default=0))
    importer.summary.workers = max(workers, 1)
    if workers <= 1:  # nothing to share out
        for phase in phases:
            for file in phase:
                importer.import_file(file, progress)
        return
    context = _context()
    events = context.Queue() if progress is not None else None
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start, initargs=(url, importer.actor, events)
    )
    try:
        for phase in phases:
            futures: dict[Future[ImportSummary], Path] = {
                pool.submit(_import, file): file for file in phase
            }
            results: dict[Path, ImportSummary] = {}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                _relay(events, progress)
                for future in done:
                    results[futures[future]] = future.result()
            for file in phase:
                importer.summary.merge(results[file])
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    _relay(events, progress)  # the workers have exited: everything they sent is here


def _relay(events: Any, progress: Progress | None) -> None:
    if events is None or progress is None:
        return
    while True:
        try:
            name, n = events.get_nowait()
        except queue.Empty:
            return
        progress(name, n)
