"""`medalliance fhir import --workers N`: a parallel import gives what a serial one gives.

On PostgreSQL, N worker processes import the patient Bundles side by side after the
shared resources (hospitals, practitioners), each with its own engine; a Bundle that
loses a race for a shared resource is rolled back and run again, creating nothing twice.
SQLite serialises writers: one process there, whatever is asked.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from medalliance.audit import service as audit
from medalliance.config import get_settings
from medalliance.db import migrate
from medalliance.db.engine import build_engine, build_session_factory
from medalliance.db.uow import unit_of_work
from medalliance.domains.alliance.models import Alliance, Institution, Practitioner
from medalliance.domains.patients.models import Person
from medalliance.fhir import bundle, importer, parallel_import, systems
from medalliance.fhir.cli import import_actor
from medalliance.fhir.context import FhirContext
from medalliance.fhir.importer import Importer, ImportSummary, plan
from medalliance.fhir.models import FhirIdentifier
from medalliance.fhir.resources import REGISTRY
from medalliance.kernel.actor import Actor
from tests.conftest import _create_postgres_database, _drop_postgres_database
from tests.fhir.test_fhir_import import (
    MODELLED,
    PATIENTS,
    REGISTRY_BUNDLES,
    _check_summary,
    _findable,
    _input_counts,
    _load,
    _stage,
)


@dataclass
class Database:
    url: str
    engine: Engine
    factory: sessionmaker[Session]
    actor: Actor

    def analyze(self) -> None:
        """Planner statistics after a bulk load (autovacuum would take its time):
        without them each search below scans whole tables."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()

    def count(self, model: Any) -> int:
        with self.factory() as session:
            return session.scalar(select(func.count()).select_from(model)) or 0


def _seed(url: str) -> Database:
    migrate.upgrade(url)
    engine = build_engine(url)
    factory = build_session_factory(engine)
    with factory() as session:
        alliance = Alliance(code="QH", name_zh="清河医联体", name_en="Qinghe")
        session.add(alliance)
        session.flush()
        lead = Institution(
            alliance_id=alliance.id,
            code="LEAD",
            name_zh="总院",
            name_en="Lead",
            tier="lead",
            type="integrated",
        )
        session.add(lead)
        session.commit()
        actor = import_actor(lead.id, lead.code)
    assert isinstance(actor, Actor)
    return Database(url, engine, factory, actor)


@pytest.fixture
def fresh_database(database_url: str, tmp_path: Path) -> Iterator[Callable[[], Database]]:
    """New, empty, committed databases of the test run's kind: worker processes see
    only committed data, so these tests cannot use the per-test SAVEPOINT."""
    made: list[Database] = []

    def make() -> Database:
        if database_url.startswith("postgresql"):
            url = _create_postgres_database(database_url)
        else:
            url = f"sqlite:///{tmp_path / f'fresh{len(made)}.db'}"
        made.append(_seed(url))
        return made[-1]

    yield make
    for db in made:
        db.engine.dispose()
        if db.url.startswith("postgresql"):
            _drop_postgres_database(db.url)


def _same_results(one: ImportSummary, two: ImportSummary) -> None:
    for name in (
        "created",
        "already_present",
        "not_modelled",
        "not_yet_modelled",
        "read_only",
        "failed_by_type",
        "dangling",
        "left_out",
    ):
        assert getattr(one, name) == getattr(two, name), name
    assert one.failed == two.failed == []
    assert one.files == two.files
    assert one._refs == two._refs and one._seen == two._seen


@pytest.mark.slow
@pytest.mark.postgres
def test_parallel_import_matches_serial(
    fresh_database: Callable[[], Database], tmp_path: Path
) -> None:
    chosen = REGISTRY_BUNDLES + PATIENTS[:6]
    folder = _stage(tmp_path, chosen)
    serial_db, parallel_db = fresh_database(), fresh_database()
    one = Importer(serial_db.factory, serial_db.actor, REGISTRY).run(folder)
    events: list[tuple[str, int]] = []
    two = Importer(parallel_db.factory, parallel_db.actor, REGISTRY).run(
        folder, lambda name, n: events.append((name, n)), workers=2
    )
    assert (one.workers, two.workers) == (1, 2)
    assert two.worker_cpu_s > 0
    _check_summary(two, _input_counts(chosen))
    _same_results(one, two)
    # the progress bar saw every file and every entry, from whichever worker
    assert {name for name, _ in events} == {f.name for f in chosen}
    assert sum(n for _, n in events) == sum(len(_load(f)["entry"]) for f in chosen)
    # the same rows, each once: the hospitals every patient Bundle repeats included
    for model in (Institution, Practitioner, Person, FhirIdentifier):
        assert serial_db.count(model) == parallel_db.count(model), model.__name__
    parallel_db.analyze()
    with parallel_db.factory() as session:
        report = audit.verify(session)
        assert report.ok, report.problems[:3]
        assert report.rows_checked > 0
        expected = sum(n for t, n in _input_counts(chosen).items() if t in MODELLED)
        assert _findable(session, parallel_db.actor, chosen) == expected
    # a parallel re-run creates nothing: every sender id maps onto what exists
    again = Importer(parallel_db.factory, parallel_db.actor, REGISTRY).run(folder, workers=2)
    assert sum(again.created.values()) == 0
    assert again.already_present == one.created + one.already_present


def _organization_bundle() -> dict[str, Any]:
    """One hospital of the registry Bundle and a patient who names it, in a transaction."""
    org = _load(REGISTRY_BUNDLES[0])["entry"][0]
    patient = {
        "fullUrl": "urn:uuid:5a1e0c55-0000-4000-8000-000000000001",
        "resource": {
            "resourceType": "Patient",
            "id": "race-patient-1",
            "name": [{"family": "Race", "given": ["Ada"]}],
            "gender": "female",
            "birthDate": "1950-01-01",
            "managingOrganization": {"reference": org["fullUrl"]},
        },
        "request": {"method": "POST", "url": "Patient"},
    }
    return {"resourceType": "Bundle", "type": "transaction", "entry": [org, patient]}


def _waiting_on_a_lock(db: Database) -> bool:
    name = make_url(db.url).database
    with db.engine.connect() as conn:
        waiting = conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = :name AND wait_event_type = 'Lock'"
            ),
            {"name": name},
        )
    return bool(waiting)


@pytest.mark.postgres
def test_a_bundle_that_loses_a_race_is_retried_and_creates_nothing_twice(
    fresh_database: Callable[[], Database], tmp_path: Path
) -> None:
    """A real race: another transaction has created the same hospital and not yet
    committed; the import's insert of the hospital's sender id waits for it, fails with
    a unique violation when it commits, and the Bundle runs again and finds it."""
    db = fresh_database()
    data = _organization_bundle()
    org_id = data["entry"][0]["resource"]["id"]
    (tmp_path / "race.json").write_text(json.dumps(data))
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def rival() -> None:
        try:
            with unit_of_work(db.factory) as session:
                ctx = FhirContext(
                    session=session, actor=db.actor, registry=REGISTRY, keep_source_ids=True
                )
                only_org = {**data, "entry": data["entry"][:1]}
                bundle.process(ctx, only_org, minimal=True)
                session.flush()
                holding.set()
                assert release.wait(60)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            holding.set()

    other = threading.Thread(target=rival)
    other.start()
    assert holding.wait(60) and not errors
    imp = Importer(db.factory, db.actor, REGISTRY)
    result: list[ImportSummary] = []
    worker = threading.Thread(target=lambda: result.append(imp.run(tmp_path / "race.json")))
    worker.start()
    deadline = time.monotonic() + 60
    while not _waiting_on_a_lock(db):  # the import waits for the rival's uncommitted row
        assert time.monotonic() < deadline and worker.is_alive()
        time.sleep(0.05)
    release.set()
    other.join(60)
    worker.join(60)
    assert not errors
    (summary,) = result
    assert summary.failed == []
    assert summary.retries == 1
    assert summary.created == Counter({"Patient": 1})
    assert summary.already_present == Counter({"Organization": 1})
    with db.factory() as session:
        senders = session.scalars(
            select(FhirIdentifier.value).where(FhirIdentifier.system == systems.SOURCE_ID)
        ).all()
        assert sorted(senders) == sorted([org_id, "race-patient-1"])
        assert audit.verify(session).ok
    assert db.count(Institution) == 2  # the importing member and the hospital, once
    assert db.count(Person) == 1


class _UniqueViolation(Exception):
    sqlstate = "23505"  # what psycopg's UniqueViolation carries


def test_retry_after_a_lost_race_creates_nothing_twice(
    session: Session, session_factory: sessionmaker[Session], tmp_path: Path, monkeypatch: Any
) -> None:
    """The first run of each Bundle does all its work and then loses a (simulated) race
    at commit: the rollback undoes it, the second run creates everything once. A race
    lost again and again is given up after RACE_RETRIES and listed; the import goes on.
    Runs on SQLite too (where real races cannot happen: writers queue)."""
    from tests.factories.alliance import AllianceFactory, InstitutionFactory

    member = InstitutionFactory(alliance=AllianceFactory())
    session.flush()
    actor = import_actor(member.id, member.code)
    assert isinstance(actor, Actor)
    real = bundle.process
    runs: Counter[str] = Counter()

    def losing_first(ctx: FhirContext, data: Any, **kw: Any) -> dict[str, Any]:
        key = str(data["entry"][0]["resource"].get("id"))
        runs[key] += 1
        response = real(ctx, data, **kw)
        ctx.session.flush()
        if runs[key] == 1 or key == "always-loses":
            raise IntegrityError("INSERT INTO fhir_identifiers …", {}, _UniqueViolation())
        return response

    monkeypatch.setattr(bundle, "process", losing_first)
    chosen = REGISTRY_BUNDLES[:1] + PATIENTS[:1]
    folder = _stage(tmp_path, chosen)
    doomed = {"resourceType": "Patient", "id": "always-loses", "gender": "male"}
    (folder / "doomed.json").write_text(json.dumps(doomed))
    summary = Importer(session_factory, actor, REGISTRY).run(folder)
    expected = _input_counts(chosen)
    for rtype in MODELLED:  # the hospitals the patient Bundle repeats are found, not made
        assert summary.created[rtype] + summary.already_present[rtype] == expected[rtype]
    assert summary.created["Organization"] == len(_load(chosen[0])["entry"])
    assert summary.retries == 2 + importer.RACE_RETRIES
    assert summary.failed == [("doomed.json", "database refused the Bundle: _UniqueViolation")]
    assert summary.failed_by_type == Counter({"Patient": 1})
    senders = session.scalars(
        select(FhirIdentifier.value).where(FhirIdentifier.system == systems.SOURCE_ID)
    ).all()
    assert len(senders) == len(set(senders)) == sum(summary.created.values())
    assert "always-loses" not in senders
    assert _findable(session, actor, chosen) == sum(expected[t] for t in MODELLED)


def test_sqlite_imports_with_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the test database: SQLite takes one writer, so --workers falls back to 1
    and the CLI prints the usual summary."""
    from medalliance.cli import app

    db = _seed(f"sqlite:///{tmp_path / 'one.db'}")
    imp = Importer(db.factory, db.actor, REGISTRY)
    assert imp.usable_workers(4) == 1
    with pytest.raises(ValueError, match="at least 1"):
        imp.usable_workers(0)

    def no_processes(*_: Any) -> None:
        raise AssertionError("no worker processes on SQLite")

    monkeypatch.setattr(parallel_import, "run_phases", no_processes)
    chosen = REGISTRY_BUNDLES[:1] + PATIENTS[:2]
    folder = _stage(tmp_path, chosen)
    monkeypatch.setenv("MEDALLIANCE_DATABASE_URL", db.url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["fhir", "import", str(folder), "-i", "LEAD", "-w", "2"])
    finally:
        get_settings.cache_clear()
        db.engine.dispose()
    assert result.exit_code == 0, result.output
    assert "FHIR import: 3 file(s)" in result.output and "processes" not in result.output
    assert "Observation" in result.output and "created" in result.output
    again = Importer(db.factory, db.actor, REGISTRY).run(folder, workers=2)
    assert again.workers == 1 and sum(again.created.values()) == 0
    _check_summary(again, _input_counts(chosen))


@pytest.mark.postgres
def test_cli_imports_with_workers(
    fresh_database: Callable[[], Database], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medalliance.cli import app

    db = fresh_database()
    folder = _stage(tmp_path, REGISTRY_BUNDLES[:1] + PATIENTS[:2])
    monkeypatch.setenv("MEDALLIANCE_DATABASE_URL", db.url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["fhir", "import", str(folder), "-i", "LEAD", "-w", "2"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "FHIR import: 3 file(s)" in result.output and "2 processes" in result.output
    assert "Observation" in result.output and "Claim" in result.output
    assert db.count(Person) == 2


def _write(path: Path, resources: list[dict[str, Any]], *, ndjson: bool = False) -> Path:
    if ndjson:
        body = "\n".join(json.dumps(r) for r in resources) + "\n"
    else:
        entries = [
            {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for r in resources
        ]
        body = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(body)
    else:
        path.write_text(body)
    return path


def test_plan_judges_files_by_content(tmp_path: Path) -> None:
    org = {"resourceType": "Organization", "id": "o1", "name": "X"}
    staff = {"resourceType": "Practitioner", "id": "p1"}
    patient = {"resourceType": "Patient", "id": "pt1"}
    visit = {"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/pt1"}}
    files = {
        "registry": _write(tmp_path / "zz-anything.json.gz", [org, org | {"id": "o2"}]),
        "staff": _write(tmp_path / "people.ndjson", [staff], ndjson=True),
        "bundle1": _write(tmp_path / "a.json", [patient, org]),  # names a hospital too
        "bundle2": _write(tmp_path / "b.json", [patient | {"id": "pt2"}, visit]),
        # named like an Encounter file, holds Patients: content decides
        "patients": _write(tmp_path / "Encounter.ndjson", [patient], ndjson=True),
        "visits": _write(tmp_path / "visits.ndjson", [visit], ndjson=True),
        "other": _write(tmp_path / "x.ndjson", [{"resourceType": "Condition"}], ndjson=True),
    }
    serial, phases = plan(importer.files_in(tmp_path))
    assert serial == [files["registry"], files["staff"]]  # Organizations first
    assert [sorted(p.name for p in phase) for phase in phases] == [
        ["a.json", "b.json"],
        ["Encounter.ndjson"],
        ["visits.ndjson"],
        ["x.ndjson"],
    ]


def test_references_are_counted_as_a_walk_would(tmp_path: Path) -> None:
    """The one regex pass over the JSON text finds what a walk over the parsed
    resources finds, escaped characters included."""
    escaped = {
        "resourceType": "Observation",
        "subject": {"reference": "Patient/\u00e9-1", "display": '"reference": "no"'},
        "note": [{"text": 'a "reference": "Patient/fake" in prose'}],
        "hasMember": [{"reference": 'Observation/q"x'}, {"reference": "Observation/2"}],
    }
    path = tmp_path / "x.json"
    path.write_text(json.dumps(escaped, ensure_ascii=True))
    imp = Importer(None, None, REGISTRY)  # type: ignore[arg-type]
    imp._count_references(path.read_text())
    for source in PATIENTS[:2]:
        with gzip.open(source, "rt", encoding="utf-8") as handle:
            imp._count_references(handle.read())
    walked: Counter[str] = Counter()
    for resource in [escaped] + [e["resource"] for s in PATIENTS[:2] for e in _load(s)["entry"]]:
        stack: list[Any] = [resource]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if isinstance(node.get("reference"), str):
                    walked[node["reference"]] += 1
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    assert imp.summary._refs == walked
    assert walked["Patient/\u00e9-1"] == 1 and walked['Observation/q"x'] == 1
