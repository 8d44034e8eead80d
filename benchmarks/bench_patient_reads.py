"""Patient reads at registry scale: the MPI's online match and the timeline, each
against the raw limit of the stack underneath measured in the same run.

Two benchmarks live here, registered under two names:

- ``mpi_online_match``: ``matching.match_new_record`` for one registration against an
  index of (by default) 1,000,000 persons, and the whole ``service.register`` use case
  in a rolled-back transaction, against the very SQL the matcher issued, replayed on a
  bare psycopg connection (and a primary-key lookup, the floor of any database call).
- ``timeline_read``: ``records.timeline.timeline`` of a patient with 2,000 entries from
  5 members among 100,000 loaded patients, against one plain SQL statement (a UNION ALL
  of the entry tables) that returns the same page.

Both bulk-load the bench database with COPY (the derived columns computed as the
service computes them), then measure in-process, alternating baseline and MedAlliance
in every round. Sizes are parameters: ``MEDALLIANCE_BENCH_MPI_PERSONS`` and
``MEDALLIANCE_BENCH_TIMELINE_PATIENTS`` in the environment, or

    python -m benchmarks.bench_patient_reads [NAME ...] --persons N --timeline-patients N
        [--reuse] [any option of python -m benchmarks.run]

Each benchmark loads its own database: the --database-url name with ``_mpi`` or
``_timeline`` appended. Loading a million persons takes minutes, so with ``--reuse`` (or
``MEDALLIANCE_BENCH_REUSE=1``) a database loaded before with the same parameters and the
same generator is kept: only new migrations are applied. Every measurement rolls back,
so a reused database holds what a fresh load would (plus the HTTP variant's audit rows).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
import types
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from sqlalchemy import Engine, event, select
from sqlalchemy.engine import make_url

from benchmarks.harness import (
    BenchmarkError,
    BenchmarkResult,
    Check,
    LoadResult,
    Options,
    Ratio,
    UvicornServer,
    Variant,
    parse_url,
    percentile,
    process_cpu_seconds,
    ratios_per_round,
    recreate_database,
    run_load,
)
from medalliance import wiring
from medalliance.access.models import User
from medalliance.access.permissions import permissions_for
from medalliance.app import freeze_startup_heap
from medalliance.audit import service as audit
from medalliance.db import migrate
from medalliance.db.engine import build_engine, build_session_factory, normalise_url
from medalliance.demo import clinical_data as cd
from medalliance.demo.seed import DEMO_PASSWORD, seed_demo
from medalliance.domains.patients import identity, names
from medalliance.domains.patients import service as patients_service
from medalliance.domains.patients.identity import IdNumberError, Sex
from medalliance.domains.patients.models import PatientRecord, PregnancyStatus
from medalliance.domains.patients.mpi import matching, synthetic
from medalliance.domains.patients.schemas import PatientCreate
from medalliance.domains.records import timeline
from medalliance.domains.records.schemas import Timeline
from medalliance.kernel.actor import Actor
from medalliance.kernel.roles import Role

MODULE = "benchmarks.bench_patient_reads"
PERSONS_ENV = "MEDALLIANCE_BENCH_MPI_PERSONS"
TIMELINE_PATIENTS_ENV = "MEDALLIANCE_BENCH_TIMELINE_PATIENTS"
REUSE_ENV = "MEDALLIANCE_BENCH_REUSE"
FIXTURE_TABLE = "bench_fixture"
FIXTURE_VERSION = 2  # bump when the loader writes other rows
DEFAULT_PERSONS = 1_000_000
DEFAULT_TIMELINE_PATIENTS = 100_000
TARGET_MS = 50.0  # issue 3: p99 ≤ 50 ms for both

CHUNK = 100_000  # persons generated and copied per transaction
DUPLICATE_RATE = 0.2  # share of persons registered twice (a few thrice), as synthetic.registry
# Chunk k of a load uses seed + k: the seeds are far apart so that no two generators
# (index, queries, timeline background, timeline patient) produce the same people.
MPI_SEED = 1_000_000
TIMELINE_SEED = 2_000_000
TARGET_SEED = 3_000_000
QUERY_SEED = 4_000_000
QUERIES_PER_KIND = 100  # held-out duplicates, fresh people, common names: 300 per round
TIMELINE_CALLS = 200  # per round
TIMELINE_LIMIT = 500  # the API's default page
TIMELINE_INSTITUTIONS = 5
USERNAME = "clinician"  # demo clinician at QH-LEAD
COMMON_NAMES = {
    Sex.MALE: ["王伟", "张伟", "刘伟", "李强"],
    Sex.FEMALE: ["王芳", "李娜", "张敏", "王静"],
}
NOW = datetime.now(UTC).replace(microsecond=0)


# --- small helpers ---------------------------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").replace("_", "").replace(",", "")
    if not raw:
        return default
    value = int(raw)
    if value <= 0:
        raise BenchmarkError(f"{name} must be positive, got {raw}")
    return value


def _conninfo(url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise BenchmarkError("These benchmarks need PostgreSQL (COPY, a 1M-person index).")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
NULL = r"\N"


def _t(value: str | None) -> str:
    """A text value for COPY's text format."""
    return NULL if value is None else value.translate(_COPY_ESCAPES)


def _ts(value: datetime) -> str:
    return value.isoformat(sep=" ")


def _line(*values: str) -> str:
    return "\t".join(values) + "\n"


class _Ids:
    """Fast unique time-ordered ids as text, laid out like ``kernel.ids.new_id`` (UUIDv7)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._millis = time.time_ns() // 1_000_000
        self._count = 0

    def __call__(self) -> str:
        self._count += 1
        millis = (self._millis + (self._count >> 12)) & ((1 << 48) - 1)
        value = (
            millis << 80
            | 0x7 << 76
            | (self._count & 0xFFF) << 64
            | 0b10 << 62
            | self._rng.getrandbits(62)
        )
        h = f"{value:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@lru_cache(maxsize=1 << 17)
def _derived_names(family: str, given: str) -> tuple[str, str, str, str]:
    """(name, name_pinyin, name_initials, name_pinyin_compact) as ``service.register``."""
    pinyin = names.full_pinyin(family, given)
    full = family + given if names.has_han(family + given) else f"{given} {family}"
    return full, pinyin, names.initials(pinyin), pinyin.replace(" ", "")


def _release() -> None:
    """Drop the loader's caches, collect and freeze, so that what is measured runs on a
    heap like a server's (which freezes its start-up heap: app.freeze_startup_heap), not
    one holding a million generated names."""
    _derived_names.cache_clear()
    freeze_startup_heap()


def _desk_id(rec: synthetic.SyntheticRecord) -> str | None:
    """The resident ID as the registration desk accepts it (normalised), or None when its
    check digit fails or it disagrees with the birth date or sex (the demo does the same)."""
    if rec.id_number is None:
        return None
    try:
        parsed = identity.parse(rec.id_number)
        identity.check_agreement(parsed, birth_date=rec.birth_date, sex=rec.sex)
    except IdNumberError:
        return None
    return parsed.number


def _copy(cur: psycopg.Cursor[Any], table: str, columns: Sequence[str], lines: list[str]) -> None:
    if not lines:
        return
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    with cur.copy(statement) as copy:
        for start in range(0, len(lines), 20_000):
            copy.write("".join(lines[start : start + 20_000]))


# --- bulk loading ------------------------------------------------------------------------------

PERSON_COLUMNS = (
    "id",
    "family_name",
    "given_name",
    "name",
    "name_pinyin",
    "name_initials",
    "sex",
    "birth_date",
    "id_number",
    "phone",
    "province",
    "city",
    "district",
    "active",
    "version",
    "created_at",
    "updated_at",
)
RECORD_COLUMNS = (
    "id",
    "person_id",
    "institution_id",
    "mrn",
    "family_name",
    "given_name",
    "name",
    "name_pinyin",
    "name_initials",
    "name_pinyin_compact",
    "sex",
    "birth_date",
    "id_number",
    "phones",
    "province",
    "city",
    "district",
    "street",
    "postcode",
    "emergency_contact",
    "pregnancy_status",
    "pregnancy_recorded_at",
    "link_method",
    "link_score",
    "idempotency_key",
    "created_by",
    "created_at",
    "updated_at",
)
IDENTIFIER_COLUMNS = ("id", "record_id", "system", "value", "assigner")
OWNED = ("id", "patient_record_id", "institution_id", "recorded_by")
ENTRY_COLUMNS: dict[str, tuple[str, ...]] = {
    "encounters": (
        *OWNED,
        *("department_id", "practitioner_id", "encounter_class", "status", "start", "end"),
        *("reason", "created_at", "updated_at"),
    ),
    "diagnoses": (
        *OWNED,
        *("encounter_id", "primary", "western_code", "western_text", "tcm_disease_system"),
        *("tcm_disease_code", "tcm_disease_text", "tcm_pattern_system", "tcm_pattern_code"),
        *("tcm_pattern_text", "status", "recorded_at", "created_at", "updated_at"),
    ),
    "clinical_notes": (
        *OWNED,
        *("encounter_id", "kind", "text", "tcm_exam", "recorded_at", "created_at", "updated_at"),
    ),
    "medication_statements": (
        *OWNED,
        *("drug", "drug_code", "dose", "route", "frequency", "start_date", "end_date"),
        *("status", "recorded_at", "created_at", "updated_at"),
    ),
    "allergies": (
        *OWNED,
        *("substance", "substance_code", "category", "reaction", "severity", "status"),
        *("recorded_at", "created_at", "updated_at"),
    ),
    "procedures": (
        *OWNED,
        *("encounter_id", "code_system", "code", "text", "performed_at", "created_at"),
        "updated_at",
    ),
}
REGISTRY_TABLES = ("persons", "patient_records", "patient_identifiers")
PROCEDURES = [
    ("ICD-9-CM-3", "99.92", "针刺 Acupuncture"),
    ("ICD-9-CM-3", "93.35", "艾灸 Moxibustion"),
    ("ICD-9-CM-3", "89.52", "心电图 Electrocardiogram"),
    ("ICD-9-CM-3", "88.76", "腹部超声 Abdominal ultrasound"),
    ("ICD-9-CM-3", "93.39", "推拿 Tuina massage"),
]


@dataclass(frozen=True, slots=True)
class Institution:
    id: str
    code: str


@dataclass(frozen=True, slots=True)
class HeldOut:
    """A duplicate registration kept out of the index: the person it belongs to is in."""

    record: synthetic.SyntheticRecord
    person_id: uuid.UUID


@dataclass(slots=True)
class Tables:
    """COPY lines per table, written and cleared once per chunk."""

    lines: dict[str, list[str]] = field(default_factory=dict)
    rows: Counter[str] = field(default_factory=Counter)

    def add(self, table: str, line: str) -> None:
        self.lines.setdefault(table, []).append(line)

    def flush(self, cur: psycopg.Cursor[Any]) -> None:
        for table, lines in self.lines.items():
            columns = (
                PERSON_COLUMNS
                if table == "persons"
                else RECORD_COLUMNS
                if table == "patient_records"
                else IDENTIFIER_COLUMNS
                if table == "patient_identifiers"
                else ENTRY_COLUMNS[table]
            )
            _copy(cur, table, columns, lines)
            self.rows[table] += len(lines)
        self.lines.clear()


@dataclass(slots=True)
class Loaded:
    rows: Counter[str]
    seconds: float
    vacuum_seconds: float = 0.0
    record_ids: list[uuid.UUID] = field(default_factory=list)  # a sample, for PK lookups
    held_out: list[HeldOut] = field(default_factory=list)
    reused: bool = False  # loaded by an earlier run (--reuse)


# (record id, institution) of each loaded record, for histories written beside it
RecordHook = Callable[[Tables, list[tuple[str, Institution]]], None]


def _person_line(person_id: str, rec: synthetic.SyntheticRecord, created: str) -> str:
    full, pinyin, initials, _ = _derived_names(rec.family_name, rec.given_name)
    return _line(
        person_id,
        _t(rec.family_name),
        _t(rec.given_name),
        _t(full),
        _t(pinyin),
        _t(initials),
        rec.sex.value,
        rec.birth_date.isoformat(),
        _t(_desk_id(rec)),
        _t(rec.phone),
        _t(rec.province),
        _t(rec.city),
        _t(rec.district),
        "t",
        "1",
        created,
        created,
    )


def _record_lines(
    tables: Tables,
    ids: _Ids,
    rec: synthetic.SyntheticRecord,
    *,
    record_id: str,
    person_id: str,
    institution: Institution,
    mrn: str,
    link_method: str,
    created: str,
) -> None:
    full, pinyin, initials, compact = _derived_names(rec.family_name, rec.given_name)
    id_number = _desk_id(rec)
    phones = [rec.phone] if rec.phone else []
    tables.add(
        "patient_records",
        _line(
            record_id,
            person_id,
            institution.id,
            _t(mrn),
            _t(rec.family_name),
            _t(rec.given_name),
            _t(full),
            _t(pinyin),
            _t(initials),
            _t(compact),
            rec.sex.value,
            rec.birth_date.isoformat(),
            _t(id_number),
            _t(json.dumps(phones)),
            _t(rec.province),
            _t(rec.city),
            _t(rec.district),
            _t(rec.street),
            _t(rec.postcode),
            NULL,
            PregnancyStatus.UNKNOWN.value,
            created,
            link_method,
            NULL if link_method == "new_person" else ("1.0" if id_number else "0.99"),
            NULL,
            NULL,
            created,
            created,
        ),
    )
    # The identifiers service.register writes: resident ID, MRN, phones.
    if id_number:
        tables.add("patient_identifiers", _line(ids(), record_id, "resident_id", id_number, NULL))
    tables.add("patient_identifiers", _line(ids(), record_id, "mrn", _t(mrn), _t(institution.code)))
    for phone in phones:
        tables.add("patient_identifiers", _line(ids(), record_id, "phone", _t(phone), NULL))


def load_registry(
    conninfo: str,
    institutions: Sequence[Institution],
    persons: int,
    *,
    seed: int,
    hold_out: int = 0,
    on_records: RecordHook | None = None,
    label: str = "",
) -> Loaded:
    """Copy ``persons`` synthetic people (``synthetic.registry`` in chunks, ~20 % of them
    registered twice at another member, linked to one person as the MPI would) into
    persons, patient_records and patient_identifiers. ``hold_out`` duplicates of the last
    chunk are kept out of the index and returned (registrations to match online)."""
    started = time.monotonic()
    ids = _Ids(seed)
    rng = random.Random(seed)
    tables = Tables()
    loaded = Loaded(rows=tables.rows, seconds=0.0)
    chunks = math.ceil(persons / CHUNK)
    original_at = _ts(NOW - timedelta(days=400))
    duplicate_at = _ts(NOW - timedelta(days=200))
    taken_ids: set[str] = set()  # one resident ID per invented person across all chunks
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        # The rows are consistent by construction: skip the per-row foreign-key triggers.
        cur.execute("SET session_replication_role = replica")
        cur.execute("SET synchronous_commit = off")
        for chunk in range(chunks):
            size = min(CHUNK, persons - chunk * CHUNK)
            records = synthetic.registry(
                size, duplicate_rate=DUPLICATE_RATE, seed=seed + chunk, taken_ids=taken_ids
            )
            held: set[str] = set()
            if chunk == chunks - 1 and hold_out:
                duplicates = [r for r in records if "-D" in r.record_id]
                held = {r.record_id for r in rng.sample(duplicates, min(hold_out, len(duplicates)))}
            person_ids: dict[int, str] = {}
            homes: dict[int, Institution] = {}
            for rec in records:
                if "-D" not in rec.record_id:
                    person_ids[rec.person] = ids()
                    homes[rec.person] = rng.choice(institutions)
                    tables.add("persons", _person_line(person_ids[rec.person], rec, original_at))
            written: list[tuple[str, Institution]] = []
            for rec in records:
                person_id = person_ids[rec.person]
                if rec.record_id in held:
                    loaded.held_out.append(HeldOut(rec, uuid.UUID(person_id)))
                    continue
                original = "-D" not in rec.record_id
                institution = (
                    homes[rec.person]
                    if original
                    else rng.choice([i for i in institutions if i != homes[rec.person]])
                )
                record_id = ids()
                _record_lines(
                    tables,
                    ids,
                    rec,
                    record_id=record_id,
                    person_id=person_id,
                    institution=institution,
                    mrn=f"{institution.code}-C{chunk}-{rec.record_id}",
                    link_method="new_person"
                    if original
                    else ("resident_id" if _desk_id(rec) else "probabilistic"),
                    created=original_at if original else duplicate_at,
                )
                written.append((record_id, institution))
                if len(loaded.record_ids) < 10_000 and rng.random() < 0.01:
                    loaded.record_ids.append(uuid.UUID(record_id))
            if on_records is not None:
                on_records(tables, written)
            tables.flush(cur)
            conn.commit()
            print(
                f"  {label}loaded {min(persons, (chunk + 1) * CHUNK):,} / {persons:,} persons "
                f"({time.monotonic() - started:.0f} s)",
                flush=True,
            )
    loaded.seconds = time.monotonic() - started
    return loaded


def vacuum_analyze(conninfo: str, tables: Sequence[str]) -> float:
    """VACUUM ANALYZE: statistics for the planner, hint bits and the visibility map set,
    as in a database that has been running for a while."""
    started = time.monotonic()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for table in tables:
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
    return time.monotonic() - started


def database_settings(conninfo: str) -> str:
    names = ("shared_buffers", "work_mem", "effective_cache_size", "random_page_cost")
    with psycopg.connect(conninfo) as conn:
        values = [
            conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(n))).fetchone() for n in names
        ]
    shown = ", ".join(f"{n}={v[0] if v else '?'}" for n, v in zip(names, values, strict=True))
    return f"PostgreSQL settings: {shown}."


def _institutions(conninfo: str) -> list[Institution]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT id, code FROM institutions ORDER BY code").fetchall()
    return [Institution(str(r[0]), str(r[1])) for r in rows]


def _clinician(engine: Engine) -> Actor:
    """The demo clinician (QH-LEAD) as the API would build the actor."""
    with build_session_factory(engine)() as session:
        user = session.scalar(select(User).where(User.username == USERNAME))
    if user is None:
        raise BenchmarkError(f"The demo user {USERNAME!r} is missing.")
    role = Role(user.role)
    return Actor(
        user_id=user.id,
        username=user.username,
        role=role,
        institution_id=user.institution_id,
        practitioner_id=user.practitioner_id,
        permissions=permissions_for(role),
    )


# --- measuring in-process ----------------------------------------------------------------------


class DatabaseCpu:
    """CPU time of the PostgreSQL backends serving the bench database (Linux /proc)."""

    def __init__(self, conninfo: str) -> None:
        self._conn = psycopg.connect(conninfo, autocommit=True)

    def _pids(self) -> list[int]:
        rows = self._conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        return [int(r[0]) for r in rows]

    def sample(self) -> dict[int, float]:
        result = {}
        for pid in self._pids():
            cpu = process_cpu_seconds(pid)
            if cpu is not None:
                result[pid] = cpu
        return result

    @staticmethod
    def spent(before: dict[int, float], after: dict[int, float]) -> float | None:
        common = before.keys() & after.keys()
        return sum(after[p] - before[p] for p in common) if common else None

    def close(self) -> None:
        self._conn.close()


@dataclass(slots=True)
class Pass:
    """One timed pass of a variant over its calls."""

    result: LoadResult
    database_cpu_s: float | None


def timed_pass(
    label: str,
    calls: Sequence[Callable[[], object]],
    *,
    after: Callable[[], object],
    database: DatabaseCpu,
    inspect: Callable[[object], object] | None = None,
) -> Pass:
    """Call each in turn, timing only the call; ``after`` (a rollback) runs untimed.

    In the LoadResult "server CPU" is this Python process (where MedAlliance's code runs,
    PostgreSQL excluded), so that µs per call compare as in api_read; the database's own
    CPU is returned beside it."""
    latencies: list[float] = []
    errors: list[str] = []
    db_before = database.sample()
    cpu_before = time.process_time()
    wall = 0.0
    for call in calls:
        began = time.perf_counter()
        try:
            outcome = call()
        except Exception as exc:
            wall += time.perf_counter() - began
            errors.append(f"{exc.__class__.__name__}: {exc}"[:300])
            after()
            continue
        elapsed = time.perf_counter() - began
        wall += elapsed
        latencies.append(elapsed)
        if inspect is not None:
            inspect(outcome)  # untimed; keeps nothing, so the GC's work stays the app's own
        del outcome
        after()
    cpu = time.process_time() - cpu_before
    db_spent = DatabaseCpu.spent(db_before, database.sample())
    result = LoadResult(
        label=label,
        concurrency=1,
        window_s=wall,
        requests=len(latencies),
        errors=len(errors),
        latencies_s=latencies,
        total_ok=len(latencies),
        total_errors=len(errors),
        server_cpu_s=cpu,
        client_cpu_s=0.0,
        error_samples=errors[:5],
    )
    return Pass(result, db_spent)


def _db_cpu_note(variant: Variant, passes: dict[str, list[Pass]]) -> str:
    values = [
        1e6 * p.database_cpu_s / p.result.requests
        for p in passes[variant.name]
        if p.database_cpu_s is not None and p.result.requests
    ]
    per_call = f"{statistics.median(values):,.0f} µs" if values else "n/a"
    return f"{variant.name}: PostgreSQL CPU per call {per_call}"


def _latency_ratios(top: Variant, bottom: Variant, what: str) -> list[Ratio]:
    return [
        Ratio(
            f"p50 latency {top.name} ÷ {bottom.name}",
            top.p50_ms / bottom.p50_ms if bottom.p50_ms else 0.0,
            f"how many times the raw limit's median time {what} takes",
            ratios_per_round(top, bottom, lambda r: r.p50_ms),
        ),
        Ratio(
            f"p99 latency {top.name} ÷ {bottom.name}",
            top.p99_ms / bottom.p99_ms if bottom.p99_ms else 0.0,
            f"the same at the 99th percentile ({what})",
            ratios_per_round(top, bottom, lambda r: r.p99_ms),
        ),
    ]


def _own_url(options: Options, suffix: str) -> str:
    """This benchmark's own database: the --database-url name plus ``suffix``."""
    url = make_url(normalise_url(options.database_url))
    return url.set(database=f"{url.database}_{suffix}").render_as_string(hide_password=False)


def _reuse_requested() -> bool:
    return os.environ.get(REUSE_ENV, "").lower() in ("1", "true", "yes")


def fixture_key(**parameters: object) -> str:
    """What a loaded database was built from: the parameters, the loader's version and
    the synthetic generator's source (another generator gives other people)."""
    source = Path(synthetic.__file__).read_bytes()
    return json.dumps(
        {
            **parameters,
            "version": FIXTURE_VERSION,
            "chunk": CHUNK,
            "duplicate_rate": DUPLICATE_RATE,
            "synthetic": hashlib.sha256(source).hexdigest()[:16],
        },
        sort_keys=True,
    )


def _stored_fixture(conninfo: str, key: str) -> dict[str, Any] | None:
    """The payload saved beside a database loaded with ``key``, if it exists."""
    try:
        with psycopg.connect(conninfo, connect_timeout=5) as conn:
            row = conn.execute(
                sql.SQL("SELECT payload FROM {} WHERE key = %s").format(
                    sql.Identifier(FIXTURE_TABLE)
                ),
                (key,),
            ).fetchone()
    except psycopg.Error:  # no such database or table
        return None
    return None if row is None else dict(json.loads(row[0]))


def store_fixture(conninfo: str, key: str, payload: dict[str, Any]) -> None:
    with psycopg.connect(conninfo) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, payload text)").format(
                sql.Identifier(FIXTURE_TABLE)
            )
        )
        conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(FIXTURE_TABLE)))
        conn.execute(
            sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(sql.Identifier(FIXTURE_TABLE)),
            (key, json.dumps(payload, ensure_ascii=False)),
        )


def _setup(
    options: Options, suffix: str, key: str
) -> tuple[str, str, list[Institution], dict[str, Any] | None]:
    """(url, conninfo, institutions, stored payload): the stored payload when a database
    loaded with ``key`` is reused (then only new migrations run), else None after the
    database was recreated, migrated and seeded."""
    url = _own_url(options, suffix)
    conninfo = _conninfo(url)
    wiring.load_all()
    stored = _stored_fixture(conninfo, key) if _reuse_requested() else None
    if stored is not None:
        print("  reusing the loaded database (--reuse) …", flush=True)
        migrate.upgrade(url)
        return url, conninfo, _institutions(conninfo), stored
    recreate_database(url)
    migrate.upgrade(url)
    seed_demo(url, patients=0)  # the alliance, institutions and accounts; no patients
    return url, conninfo, _institutions(conninfo), None


def _record_json(rec: synthetic.SyntheticRecord) -> dict[str, Any]:
    data = asdict(rec)
    data.update(sex=rec.sex.value, birth_date=rec.birth_date.isoformat())
    return data


def _record_of(data: dict[str, Any]) -> synthetic.SyntheticRecord:
    return synthetic.SyntheticRecord(
        **{**data, "sex": Sex(data["sex"]), "birth_date": date.fromisoformat(data["birth_date"])}
    )


def _loaded_json(loaded: Loaded) -> dict[str, Any]:
    return {
        "rows": dict(loaded.rows),
        "seconds": loaded.seconds,
        "vacuum_seconds": loaded.vacuum_seconds,
        "record_ids": [str(i) for i in loaded.record_ids],
        "held_out": [
            {"record": _record_json(h.record), "person_id": str(h.person_id)}
            for h in loaded.held_out
        ],
    }


def _loaded_of(data: dict[str, Any]) -> Loaded:
    return Loaded(
        rows=Counter(data["rows"]),
        seconds=float(data["seconds"]),
        vacuum_seconds=float(data["vacuum_seconds"]),
        record_ids=[uuid.UUID(i) for i in data["record_ids"]],
        held_out=[
            HeldOut(_record_of(h["record"]), uuid.UUID(h["person_id"])) for h in data["held_out"]
        ],
        reused=True,
    )


# --- mpi_online_match ------------------------------------------------------------------------

MPI_NAME = "mpi_online_match"
MPI_TITLE = "MPI online match of one registration against a large index vs its raw SQL"


@dataclass(frozen=True, slots=True)
class Registration:
    kind: str  # "duplicate" | "fresh" | "common-name"
    rec: synthetic.SyntheticRecord
    truth: uuid.UUID | None  # the person a duplicate belongs to
    create: PatientCreate


def _registration(
    kind: str, rec: synthetic.SyntheticRecord, truth: uuid.UUID | None, mrn: str
) -> Registration:
    create = PatientCreate(
        mrn=mrn,
        family_name=rec.family_name,
        given_name=rec.given_name,
        sex=rec.sex,
        birth_date=rec.birth_date,
        id_number=_desk_id(rec),
        phones=[rec.phone] if rec.phone else [],
        province=rec.province,
        city=rec.city,
        district=rec.district,
        street=rec.street,
        postcode=rec.postcode,
    )
    return Registration(kind, rec, truth, create)


def _new_people(conninfo: str) -> tuple[list[synthetic.SyntheticRecord], int]:
    """People the index does not hold: generated apart, and any whose resident ID happens
    to be an indexed person's dropped (the synthetic IDs have a small number space)."""
    people = synthetic.registry(3 * QUERIES_PER_KIND, duplicate_rate=0.0, seed=QUERY_SEED)
    numbers = [n for n in (_desk_id(p) for p in people) if n]
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT DISTINCT id_number FROM patient_records WHERE id_number = ANY(%s)", (numbers,)
        ).fetchall()
    taken = {r[0] for r in rows}
    kept = [p for p in people if _desk_id(p) not in taken]
    return kept[: 2 * QUERIES_PER_KIND], len(people) - len(kept)


def _registrations(
    held_out: list[HeldOut], fresh_people: list[synthetic.SyntheticRecord]
) -> list[Registration]:
    """Held-out duplicates of indexed people, new people, and new people with the most
    common names (王伟, 李娜 …), interleaved."""
    rng = random.Random(QUERY_SEED)
    duplicates = [
        _registration("duplicate", h.record, h.person_id, f"BENCH-D{i}")
        for i, h in enumerate(held_out[:QUERIES_PER_KIND])
    ]
    fresh = [
        _registration("fresh", rec, None, f"BENCH-F{i}")
        for i, rec in enumerate(fresh_people[:QUERIES_PER_KIND])
    ]
    common = []
    for i, rec in enumerate(fresh_people[QUERIES_PER_KIND:]):
        name = rng.choice(COMMON_NAMES.get(rec.sex, COMMON_NAMES[Sex.MALE]))
        renamed = replace(rec, family_name=name[0], given_name=name[1:])
        common.append(_registration("common-name", renamed, None, f"BENCH-C{i}"))
    return [r for trio in zip(duplicates, fresh, common, strict=False) for r in trio]


def _transient_record(reg: Registration, institution_id: uuid.UUID) -> PatientRecord:
    """The unsaved PatientRecord ``service.register`` builds before matching."""
    data = reg.create
    full, pinyin, initials, compact = _derived_names(data.family_name, data.given_name)
    return PatientRecord(
        institution_id=institution_id,
        mrn=data.mrn,
        family_name=data.family_name,
        given_name=data.given_name,
        name=full,
        name_pinyin=pinyin,
        name_initials=initials,
        name_pinyin_compact=compact,
        sex=data.sex,
        birth_date=data.birth_date,
        id_number=data.id_number,
        phones=list(dict.fromkeys(data.phones)),
        province=data.province,
        city=data.city,
        district=data.district,
        street=data.street,
        postcode=data.postcode,
        pregnancy_status=data.pregnancy_status,
        pregnancy_recorded_at=NOW,
    )


@dataclass(slots=True)
class Captured:
    """What the matcher sent to the database for one registration."""

    statements: list[tuple[str, Any, int]] = field(default_factory=list)


class SqlCapture:
    """Records the statements (text, parameters, row count) an engine executes."""

    def __init__(self, engine: Engine) -> None:
        self.current: Captured | None = None
        event.listen(engine, "after_cursor_execute", self._after)

    def _after(
        self,
        _conn: object,
        cursor: Any,
        statement: str,
        parameters: Any,
        _context: object,
        _executemany: bool,
    ) -> None:
        if self.current is not None:
            self.current.statements.append((statement, parameters, int(cursor.rowcount)))


def _is_population_count(statement: str) -> bool:
    return statement.lstrip().lower().startswith("select count(*)")


def _replay(cur: psycopg.Cursor[Any], captured: Captured, counts: list[tuple[int, int]]) -> int:
    """Run the captured SQL on a bare connection, fetching every row."""
    rows = 0
    for statement, parameters, app_rows in captured.statements:
        cur.execute(statement, parameters)
        fetched = len(cur.fetchall())
        counts.append((app_rows, fetched))
        rows += fetched
    return rows


def _is_blocking_query(statement: str) -> bool:
    return "name_pinyin_compact" in statement


def _explain(conn: psycopg.Connection[Any], statement: str, parameters: Any) -> str:
    rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).fetchall()
    conn.rollback()
    return " / ".join(str(r[0]).strip() for r in rows[:8])


def run_mpi_online_match(options: Options) -> BenchmarkResult:
    started = time.monotonic()
    persons = _env_int(PERSONS_ENV, DEFAULT_PERSONS)
    key = fixture_key(benchmark=MPI_NAME, persons=persons, seed=MPI_SEED, hold=QUERIES_PER_KIND)
    url, conninfo, institutions, stored = _setup(options, "mpi", key)
    setup_s = time.monotonic() - started
    if stored is not None:
        loaded = _loaded_of(stored)
    else:
        print(f"  loading {persons:,} persons …", flush=True)
        loaded = load_registry(
            conninfo,
            institutions,
            persons,
            seed=MPI_SEED,
            hold_out=QUERIES_PER_KIND,
            label="MPI: ",
        )
        loaded.vacuum_seconds = vacuum_analyze(conninfo, REGISTRY_TABLES)
        store_fixture(conninfo, key, _loaded_json(loaded))
    _release()
    new_people, id_clashes = _new_people(conninfo)
    registrations = _registrations(loaded.held_out, new_people)

    engine = build_engine(url)
    capture = SqlCapture(engine)
    session = build_session_factory(engine)()
    actor = _clinician(engine)
    assert actor.institution_id is not None
    institution_id = actor.institution_id
    raw = psycopg.connect(conninfo)
    raw_cur = raw.cursor()
    database = DatabaseCpu(conninfo)
    try:
        # count(*) over persons: what matching.population pays once a minute
        count_began = time.perf_counter()
        raw.execute("SELECT count(*) FROM persons").fetchone()
        count_s = time.perf_counter() - count_began
        raw.rollback()

        # Warm-up: every registration once, capturing the SQL the matcher sends.
        captured: list[Captured] = []
        outcomes: list[matching.MatchResult] = []
        for reg in registrations:
            capture.current = Captured()
            outcomes.append(
                matching.match_new_record(session, _transient_record(reg, institution_id))
            )
            captured.append(capture.current)
            capture.current = None
            session.rollback()
        for item in captured:
            item.statements = [s for s in item.statements if not _is_population_count(s[0])]
        name_blocks = []
        for reg in registrations:
            compact = _derived_names(reg.create.family_name, reg.create.given_name)[3]
            raw_cur.execute(
                "SELECT count(*) FROM patient_records WHERE name_pinyin_compact = %s", (compact,)
            )
            found = raw_cur.fetchone()
            name_blocks.append(int(found[0]) if found else 0)
        raw.rollback()
        largest = max(
            range(len(captured)),
            key=lambda i: max((s[2] for s in captured[i].statements), default=0),
        )
        blocking = captured[largest].statements[-1]
        explained = {"largest blocking query": _explain(raw, *blocking[:2])}

        pk = Variant("pk_lookup", "raw psycopg: one patient_records row by primary key")
        replay = Variant(
            "blocking_sql",
            "raw psycopg: the SQL match_new_record sent for the same registration "
            "(resident-ID lookup, then the blocking query), every row fetched",
        )
        match = Variant(
            "match_new_record",
            "matching.match_new_record(session, record): resident ID, blocking query, "
            "Fellegi-Sunter scoring of every candidate",
        )
        register = Variant(
            "register",
            "patients.service.register(...): match + person, record, identifiers, golden "
            "record, MPI history, review queue, audit row; rolled back",
        )
        variants = [pk, replay, match, register]
        passes: dict[str, list[Pass]] = {v.name: [] for v in variants}
        row_counts: list[tuple[int, int]] = []
        match_by_kind: dict[str, list[float]] = {}
        pk_ids = loaded.record_ids[: len(registrations)]

        def pk_call(record_id: uuid.UUID) -> Callable[[], object]:
            def call() -> object:
                raw_cur.execute("SELECT * FROM patient_records WHERE id = %s", (record_id,))
                return raw_cur.fetchall()

            return call

        def replay_call(item: Captured, counts: list[tuple[int, int]]) -> Callable[[], object]:
            return lambda: _replay(raw_cur, item, counts)

        def match_call(reg: Registration) -> Callable[[], object]:
            record = _transient_record(reg, institution_id)
            return lambda: matching.match_new_record(session, record)

        def register_call(reg: Registration) -> Callable[[], object]:
            def call() -> object:
                result = patients_service.register(session=session, actor=actor, data=reg.create)
                audit.flush_pending(session)  # the audit row the commit would append
                return result

            return call

        for round_no in range(options.rounds):
            print(f"  MPI round {round_no + 1}/{options.rounds} …", flush=True)
            for variant, calls, after in (
                (pk, [pk_call(i) for i in pk_ids], raw.rollback),
                (replay, [replay_call(c, row_counts) for c in captured], raw.rollback),
                (match, [match_call(r) for r in registrations], session.rollback),
                (register, [register_call(r) for r in registrations], session.rollback),
            ):
                done = timed_pass(variant.name, calls, after=after, database=database)
                variant.rounds.append(done.result)
                passes[variant.name].append(done)
            for reg, latency in zip(registrations, match.rounds[-1].latencies_s, strict=False):
                match_by_kind.setdefault(reg.kind, []).append(latency)
    finally:
        database.close()
        raw.close()
        session.close()
        engine.dispose()
        _release()

    # outcomes of the warm-up pass, by kind
    stats: dict[str, Counter[str]] = {}
    wrong: Counter[str] = Counter()
    resident_ok = resident_total = 0
    for reg, outcome in zip(registrations, outcomes, strict=True):
        tally = stats.setdefault(reg.kind, Counter())
        if outcome.person_id is None:
            tally["new person" + (" (+review)" if outcome.review else "")] += 1
        elif reg.truth is not None and outcome.person_id == reg.truth:
            tally[f"linked to the right person by {outcome.method}"] += 1
        else:
            tally[f"linked to another person by {outcome.method}"] += 1
            wrong[reg.kind] += 1
        if reg.kind == "duplicate" and reg.create.id_number and outcome.method == "resident_id":
            resident_total += 1
            resident_ok += outcome.person_id == reg.truth
    candidate_rows = [s[2] for c in captured for s in c.statements if _is_blocking_query(s[0])]
    capped = sum(n > matching.NAME_BLOCK for n in name_blocks)
    mismatched = [(a, b) for a, b in row_counts if a != b]
    errors = {v.name: v.errors for v in variants}
    checks = [
        Check(
            "the replayed SQL returns what the app's queries returned",
            not mismatched and bool(row_counts),
            f"{len(row_counts):,} statements replayed; row counts differing: {len(mismatched)}",
        ),
        Check(
            "no registration linked to the wrong person",
            not wrong,
            f"held-out duplicates linked to another person: {wrong.get('duplicate', 0)}, new "
            f"people linked to someone: {wrong.get('fresh', 0) + wrong.get('common-name', 0)}",
        ),
        Check(
            "duplicates with a valid resident ID link to their person by that ID",
            resident_ok == resident_total,
            f"{resident_ok} of {resident_total}",
        ),
        Check(
            "no errors",
            not any(errors.values()),
            ", ".join(f"{k} {v}" for k, v in errors.items())
            + "".join(f"; {s}" for v in variants for r in v.rounds for s in r.error_samples[:1]),
        ),
    ]
    p99 = match.p99_ms
    notes = [
        f"**Issue target (p99 ≤ {TARGET_MS:.0f} ms for one online match against "
        f"{persons:,} persons): {'met' if p99 <= TARGET_MS else 'NOT met'}**, "
        f"match_new_record p99 {p99:.1f} ms (median of rounds); register p99 "
        f"{register.p99_ms:.1f} ms.",
        f"Index: {loaded.rows['persons']:,} persons, {loaded.rows['patient_records']:,} "
        f"patient_records, {loaded.rows['patient_identifiers']:,} patient_identifiers "
        f"({persons:,} synthetic people from mpi.synthetic.registry, {DUPLICATE_RATE:.0%} "
        "registered again at another member, linked as the MPI would).",
        database_settings(conninfo),
        f"Load (COPY, foreign-key triggers off): {loaded.seconds:.0f} s; VACUUM ANALYZE "
        f"{loaded.vacuum_seconds:.0f} s; create, migrate, seed {setup_s:.1f} s"
        + (" (database reused from an earlier load: migrations only)." if loaded.reused else "."),
        f"Registrations per round: {len(registrations)} ({QUERIES_PER_KIND} held-out "
        "duplicates of indexed people with the registry's typical errors, "
        f"{QUERIES_PER_KIND} new people, {QUERIES_PER_KIND} new people named "
        "王伟/张伟/刘伟/李强/王芳/李娜/张敏/王静; generated people whose synthetic resident "
        f"ID an indexed person already holds were skipped: {id_clashes}), the same in every "
        "round after one warm-up pass; measured in-process, one call at a time; 'server "
        "CPU' is the Python process (PostgreSQL excluded), 'client CPU' does not apply.",
        "match_new_record by kind (all rounds): "
        + "; ".join(
            f"{kind} p50 {_ms(percentile(v, 50))} / p99 {_ms(percentile(v, 99))} ms"
            for kind, v in match_by_kind.items()
        ),
        f"Candidates per blocking query: median {statistics.median(candidate_rows):,.0f}, "
        f"max {max(candidate_rows):,}. Name blocks (records sharing the compact pinyin): "
        f"median {statistics.median(name_blocks):,.0f}, max {max(name_blocks):,}; "
        f"{capped} of {len(name_blocks)} larger than matching.NAME_BLOCK = "
        f"{matching.NAME_BLOCK:,}, cut to the records born likeliest the same (same or "
        "swapped date, same day in another year, then nearest dates).",
        "Outcomes (warm-up pass): "
        + "; ".join(
            f"{kind}: " + ", ".join(f"{n} {what}" for what, n in tally.most_common())
            for kind, tally in stats.items()
        ),
        f"Counting the persons (matching.population, cached 60 s per process): "
        f"{count_s * 1000:.0f} ms.",
        *(f"Plan of the {k}: {v}" for k, v in explained.items()),
        *(_db_cpu_note(v, passes) for v in variants),
    ]
    ratios = [
        *_latency_ratios(match, replay, "the matcher"),
        Ratio(
            f"p50 latency {match.name} ÷ {pk.name}",
            match.p50_ms / pk.p50_ms if pk.p50_ms else 0.0,
            "the median match in primary-key round trips",
            ratios_per_round(match, pk, lambda r: r.p50_ms),
        ),
        *_latency_ratios(register, replay, "the whole registration"),
    ]
    return BenchmarkResult(
        name=MPI_NAME,
        title=MPI_TITLE,
        description=(
            f"One registration matched online against {persons:,} persons on PostgreSQL: "
            "`matching.match_new_record` on the transient record `service.register` "
            "builds, and the whole `service.register` use case (its audit row appended, "
            "then rolled back instead of committed), against the raw limit of the stack "
            "underneath: the very statements the matcher sent, captured and replayed on a "
            "bare psycopg connection, and a primary-key lookup. Variants alternate in "
            "every round."
        ),
        variants=variants,
        ratios=ratios,
        checks=checks,
        notes=notes,
        elapsed_s=time.monotonic() - started,
    )


# --- timeline_read ---------------------------------------------------------------------------

TIMELINE_NAME = "timeline_read"
TIMELINE_TITLE = "Timeline of a 2,000-entry patient among 100,000 vs one UNION ALL query"

TIMELINE_QUERY = """
WITH mine AS (SELECT id FROM patient_records WHERE person_id = %(person)s)
SELECT e.type, e.id, e.at, e.institution_id, i.code, i.name_zh, i.name_en,
       e.summary, e.status, e.encounter_id, e.detail, count(*) OVER () AS total
FROM (
    SELECT 'encounter' AS type, x.id, x.start AS at, x.institution_id,
           concat_ws(': ', x.encounter_class, nullif(x.reason, '')) AS summary,
           x.status::text AS status, x.id AS encounter_id,
           json_build_object('class', x.encounter_class, 'end', x."end",
                             'department_id', x.department_id) AS detail
    FROM encounters x WHERE x.patient_record_id IN (SELECT id FROM mine)
    UNION ALL
    SELECT 'diagnosis', x.id, x.recorded_at, x.institution_id,
           concat_ws(' | ', nullif(concat_ws(' ', x.western_code, x.western_text), ''),
                     nullif(concat_ws(' · ', x.tcm_disease_text, x.tcm_pattern_text), '')),
           x.status, x.encounter_id,
           json_build_object(
               'primary', x."primary",
               'western', json_build_object('code', x.western_code, 'text', x.western_text),
               'tcm_disease', json_build_object('system', x.tcm_disease_system,
                                                'code', x.tcm_disease_code,
                                                'text', x.tcm_disease_text),
               'tcm_pattern', json_build_object('system', x.tcm_pattern_system,
                                                'code', x.tcm_pattern_code,
                                                'text', x.tcm_pattern_text))
    FROM diagnoses x WHERE x.patient_record_id IN (SELECT id FROM mine)
    UNION ALL
    SELECT 'allergy', x.id, x.recorded_at, x.institution_id,
           x.substance || coalesce(' (' || x.reaction || ')', ''), x.status, NULL::uuid,
           json_build_object('category', x.category, 'severity', x.severity)
    FROM allergies x WHERE x.patient_record_id IN (SELECT id FROM mine)
    UNION ALL
    SELECT 'medication', x.id, x.recorded_at, x.institution_id,
           concat_ws(' ', x.drug, x.dose, x.route, x.frequency), x.status, NULL::uuid,
           json_build_object('start_date', x.start_date, 'end_date', x.end_date)
    FROM medication_statements x WHERE x.patient_record_id IN (SELECT id FROM mine)
    UNION ALL
    SELECT 'note', x.id, x.recorded_at, x.institution_id,
           left(coalesce(nullif(x.text, ''), x.kind), 200), NULL, x.encounter_id,
           json_build_object('kind', x.kind, 'tcm_exam', x.tcm_exam)
    FROM clinical_notes x WHERE x.patient_record_id IN (SELECT id FROM mine)
    UNION ALL
    SELECT 'procedure', x.id, x.performed_at, x.institution_id, x.text, NULL,
           x.encounter_id, json_build_object('code_system', x.code_system, 'code', x.code)
    FROM procedures x WHERE x.patient_record_id IN (SELECT id FROM mine)
) e
JOIN institutions i ON i.id = e.institution_id
ORDER BY e.at DESC, e.id::text DESC
LIMIT %(limit)s
"""


@dataclass(frozen=True, slots=True)
class History:
    """How many entries of each kind one source record gets."""

    visits: int
    notes: int
    procedures: int
    medications: int
    allergies: int
    recent_visit: bool = False  # one visit inside the care window (an encounter relationship)

    @property
    def entries(self) -> int:
        return 2 * self.visits + self.notes + self.procedures + self.medications + self.allergies


def _history(
    tables: Tables,
    rng: random.Random,
    ids: _Ids,
    record_id: str,
    institution: Institution,
    plan: History,
) -> None:
    """Encounters with their diagnosis, four-examination notes, procedures, medication
    statements and allergies, as the demo writes them, for one source record."""
    conditions = rng.sample(cd.DIAGNOSES, k=rng.choice([1, 1, 2, 3]))
    inst = institution.id
    for n in range(plan.visits):
        days = 10 if plan.recent_visit and n == 0 else rng.uniform(200, 3650)
        start = NOW - timedelta(days=days, minutes=rng.randrange(0, 480))
        inpatient = rng.random() < 0.1
        end = start + timedelta(days=rng.randint(3, 12) if inpatient else 0, minutes=20)
        icd, western, disease, pattern, pattern_text = conditions[n % len(conditions)]
        encounter_id, made = ids(), _ts(start)
        tables.add(
            "encounters",
            _line(
                *(encounter_id, record_id, inst, NULL, NULL, NULL),
                "inpatient" if inpatient else "outpatient",
                "finished",
                made,
                _ts(end),
                _t(western),
                made,
                made,
            ),
        )
        at = _ts(start + timedelta(minutes=10))
        tables.add(
            "diagnoses",
            _line(
                *(ids(), record_id, inst, NULL, encounter_id, "t", _t(icd), _t(western), NULL),
                *(NULL, _t(disease), "icd11", _t(pattern), _t(pattern_text), "active"),
                *(at, at, at),
            ),
        )
        if n < plan.notes:
            exam = {
                "tongue_body": rng.choice(cd.TONGUE_BODIES),
                "tongue_coating": rng.choice(cd.TONGUE_COATINGS),
                "pulse": rng.choice(cd.PULSES),
            }
            text = f"{disease}，{pattern_text.split()[0]}"
            tables.add(
                "clinical_notes",
                _line(
                    *(ids(), record_id, inst, NULL, encounter_id, "tcm_four_examinations"),
                    *(_t(text), _t(json.dumps(exam, ensure_ascii=False)), at, at, at),
                ),
            )
        if n < plan.procedures:
            system, code, text = rng.choice(PROCEDURES)
            done = _ts(start + timedelta(minutes=30))
            tables.add(
                "procedures",
                _line(
                    *(ids(), record_id, inst, NULL, encounter_id, system, code, _t(text)),
                    *(done, done, done),
                ),
            )
    drugs = [d for c in conditions for d in cd.MEDICATIONS.get(c[0], [])] or [
        ("vitamin C", "100 mg", "tid")
    ]
    for n in range(plan.medications):
        drug, dose, frequency = drugs[n % len(drugs)]
        at_dt = NOW - timedelta(days=rng.uniform(1, 3650))
        at = _ts(at_dt)
        tables.add(
            "medication_statements",
            _line(
                *(ids(), record_id, inst, NULL, _t(drug), NULL, _t(dose), "oral", frequency),
                *(at_dt.date().isoformat(), NULL, "active", at, at, at),
            ),
        )
    for _ in range(plan.allergies):
        substance, category, reaction = rng.choice(cd.ALLERGENS)
        at = _ts(NOW - timedelta(days=rng.uniform(1, 3650)))
        tables.add(
            "allergies",
            _line(
                *(ids(), record_id, inst, NULL, _t(substance), NULL, category, _t(reaction)),
                *(NULL, "active", at, at, at),
            ),
        )


def _background(seed: int) -> RecordHook:
    """A few entries for every other patient: 1-3 visits, notes, medications …"""
    rng = random.Random(seed)
    ids = _Ids(seed + 1)

    def hook(tables: Tables, records: list[tuple[str, Institution]]) -> None:
        for record_id, institution in records:
            visits = rng.randint(1, 3)
            plan = History(
                visits=visits,
                notes=sum(rng.random() < 0.5 for _ in range(visits)),
                procedures=sum(rng.random() < 0.2 for _ in range(visits)),
                medications=rng.choice([0, 1, 1, 2]),
                allergies=int(rng.random() < 0.08),
            )
            _history(tables, rng, ids, record_id, institution, plan)

    return hook


@dataclass(frozen=True, slots=True)
class Target:
    person_id: uuid.UUID
    institutions: list[str]
    entries: int


def load_target(conninfo: str, institutions: Sequence[Institution], home_id: str) -> Target:
    """The patient of the benchmark: one person registered at 5 members (the clinician's
    own among them), 400 entries at each, one recent visit at the clinician's."""
    rng = random.Random(TARGET_SEED)
    ids = _Ids(TARGET_SEED)
    rec = synthetic.registry(1, duplicate_rate=0.0, seed=TARGET_SEED)[0]
    home = next(i for i in institutions if i.id == home_id)
    members = [home, *[i for i in institutions if i != home][: TIMELINE_INSTITUTIONS - 1]]
    person_id = ids()
    tables = Tables()
    tables.add("persons", _person_line(person_id, rec, _ts(NOW - timedelta(days=3000))))
    plan = History(visits=100, notes=80, procedures=40, medications=70, allergies=10)
    for n, institution in enumerate(members):
        record_id = ids()
        _record_lines(
            tables,
            ids,
            rec,
            record_id=record_id,
            person_id=person_id,
            institution=institution,
            mrn=f"{institution.code}-TARGET",
            link_method="new_person" if n == 0 else "resident_id",
            created=_ts(NOW - timedelta(days=3000 - n)),
        )
        _history(
            tables,
            rng,
            ids,
            record_id,
            institution,
            replace(plan, recent_visit=institution == home),
        )
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        tables.flush(cur)
    entries = sum(n for t, n in tables.rows.items() if t in ENTRY_COLUMNS)
    return Target(uuid.UUID(person_id), [i.code for i in members], entries)


def _http_prepare(base_url: str, person_id: uuid.UUID) -> tuple[dict[str, str], dict[str, Any]]:
    with httpx.Client(base_url=base_url, timeout=60.0, trust_env=False) as client:
        login = client.post(
            "/api/auth/token", data={"username": USERNAME, "password": DEMO_PASSWORD}
        )
        if login.status_code != 200:
            raise BenchmarkError(f"Login failed: HTTP {login.status_code} {login.text[:300]}")
        headers = {
            "Authorization": f"Bearer {login.json()['access_token']}",
            "Accept": "application/json",
        }
        read = client.get(f"/api/patients/{person_id}/timeline", headers=headers)
        if read.status_code != 200:
            raise BenchmarkError(f"Timeline failed: HTTP {read.status_code} {read.text[:300]}")
        body: dict[str, Any] = read.json()
        return headers, body


def run_timeline_read(options: Options) -> BenchmarkResult:
    started = time.monotonic()
    patients = _env_int(TIMELINE_PATIENTS_ENV, DEFAULT_TIMELINE_PATIENTS)
    key = fixture_key(benchmark=TIMELINE_NAME, patients=patients, seed=TIMELINE_SEED)
    url, conninfo, institutions, stored = _setup(options, "timeline", key)
    setup_s = time.monotonic() - started
    engine = build_engine(url)
    actor = _clinician(engine)
    if stored is not None:
        loaded = _loaded_of(stored["loaded"])
        target = Target(
            uuid.UUID(stored["target"]["person_id"]),
            list(stored["target"]["institutions"]),
            int(stored["target"]["entries"]),
        )
    else:
        print(f"  loading {patients:,} patients with histories …", flush=True)
        loaded = load_registry(
            conninfo,
            institutions,
            patients,
            seed=TIMELINE_SEED,
            on_records=_background(TIMELINE_SEED + 500_000),
            label="timeline: ",
        )
        target = load_target(conninfo, institutions, str(actor.institution_id))
        loaded.vacuum_seconds = vacuum_analyze(conninfo, (*REGISTRY_TABLES, *ENTRY_COLUMNS))
        store_fixture(
            conninfo,
            key,
            {
                "loaded": _loaded_json(loaded),
                "target": {
                    "person_id": str(target.person_id),
                    "institutions": target.institutions,
                    "entries": target.entries,
                },
            },
        )
    _release()
    background_entries = sum(n for t, n in loaded.rows.items() if t in ENTRY_COLUMNS)

    session = build_session_factory(engine)()
    raw = psycopg.connect(conninfo)
    raw_cur = raw.cursor()
    database = DatabaseCpu(conninfo)
    parameters = {"person": target.person_id, "limit": TIMELINE_LIMIT}
    sql_variant = Variant(
        "timeline_sql",
        f"raw psycopg: one UNION ALL of the six entry tables for the person's records, "
        f"institution labels joined, total by window, newest {TIMELINE_LIMIT} fetched",
    )
    app = Variant(
        "timeline",
        "records.timeline.timeline(session, actor, person): patient facts, policy per "
        "member (same institution; consent and encounter care relationship), six entry "
        "queries, page of 500, audit rows appended; rolled back",
    )
    http = Variant(
        "timeline_http",
        "GET /api/patients/{id}/timeline through uvicorn (JWT, the same use case, JSON, "
        "commit), one connection",
    )
    passes: dict[str, list[Pass]] = {sql_variant.name: [], app.name: []}
    flushed: list[int] = []
    pages: Counter[bool] = Counter()

    def sql_call() -> object:
        raw_cur.execute(TIMELINE_QUERY, parameters)
        return raw_cur.fetchall()

    def app_call() -> object:
        result = timeline.timeline(session, actor, target.person_id)
        flushed.append(audit.flush_pending(session))  # the rows the commit would append
        return result

    try:
        warm_sql = sql_call()
        raw.rollback()
        warm_app = app_call()
        session.rollback()
        flushed.clear()
        assert isinstance(warm_app, Timeline)
        expected = [e.id for e in warm_app.entries]

        def same_page(outcome: object) -> None:
            ids = [e.id for e in outcome.entries] if isinstance(outcome, Timeline) else None
            pages[ids == expected] += 1

        for round_no in range(options.rounds):
            print(f"  timeline round {round_no + 1}/{options.rounds} …", flush=True)
            for variant, call, after in (
                (sql_variant, sql_call, raw.rollback),
                (app, app_call, session.rollback),
            ):
                done = timed_pass(
                    variant.name,
                    [call] * TIMELINE_CALLS,
                    after=after,
                    database=database,
                    inspect=same_page if variant is app else None,
                )
                variant.rounds.append(done.result)
                passes[variant.name].append(done)
        http_body: dict[str, Any] = {}
        http_error = ""
        try:
            with tempfile.TemporaryDirectory(prefix="medalliance-bench-") as tmp:
                server = UvicornServer(
                    "medalliance",
                    "medalliance.app:app_factory",
                    env={
                        "MEDALLIANCE_DATABASE_URL": url,
                        "MEDALLIANCE_SECRET_KEY": secrets.token_urlsafe(48),
                        "MEDALLIANCE_DEMO_MODE": "false",
                        "MEDALLIANCE_LOG_SQL": "false",
                    },
                    log_path=Path(tmp) / "medalliance.log",
                    ready_path="/api/health",
                )
                with server:
                    headers, http_body = _http_prepare(server.base_url, target.person_id)
                    one = replace(options, concurrency=1)
                    for _ in range(options.rounds):
                        http.rounds.append(
                            run_load(
                                label=http.name,
                                url=f"{server.base_url}/api/patients/{target.person_id}/timeline",
                                headers=headers,
                                options=one,
                                server_pid=server.pid,
                            )
                        )
        except BenchmarkError as exc:
            http_error = str(exc)[:500]
    finally:
        database.close()
        raw.close()
        session.close()
        engine.dispose()
        _release()

    assert isinstance(warm_sql, list)
    assert isinstance(warm_app, Timeline)
    sql_ids = [row[1] for row in warm_sql]
    app_ids = [e.id for e in warm_app.entries]
    total_sql = int(warm_sql[0][-1]) if warm_sql else 0
    same_answers = pages[True] > 0 and pages[False] == 0
    checks = [
        Check(
            "the SQL baseline returns the same page",
            sql_ids == app_ids and total_sql == warm_app.total == target.entries,
            f"{len(app_ids)} entries in the same order: {sql_ids == app_ids}; total "
            f"timeline {warm_app.total:,}, SQL {total_sql:,}, loaded {target.entries:,}",
        ),
        Check(
            "every member's entries visible, nothing hidden",
            not warm_app.hidden_institutions and same_answers,
            f"hidden institutions: {warm_app.hidden_institutions or 'none'}; "
            f"every measured call returned the same page: {same_answers}",
        ),
        Check(
            "each read appended its audit rows",
            bool(flushed) and all(n == flushed[0] and n >= 1 for n in flushed),
            f"audit events flushed per call: {sorted(set(flushed))} over {len(flushed):,} calls",
        ),
        Check(
            "no errors",
            app.errors == 0 and sql_variant.errors == 0 and http.errors == 0 and not http_error,
            f"timeline {app.errors}, timeline_sql {sql_variant.errors}, http {http.errors}"
            + (f"; HTTP variant failed: {http_error}" if http_error else "")
            + "".join(f"; {s}" for r in app.rounds for s in r.error_samples[:1]),
        ),
    ]
    if http_body:
        checks.append(
            Check(
                "the API returns the same page",
                [uuid.UUID(e["id"]) for e in http_body.get("entries", [])] == app_ids,
                f"total {http_body.get('total')}, entries {len(http_body.get('entries', []))}",
            )
        )
    variants = [sql_variant, app] + ([http] if http.rounds else [])
    notes = [
        f"**Issue target (p99 ≤ {TARGET_MS:.0f} ms for a {target.entries:,}-entry timeline "
        f"with {patients:,} patients loaded): "
        f"{'met' if app.p99_ms <= TARGET_MS else 'NOT met'}**, timeline p99 "
        f"{app.p99_ms:.1f} ms in-process"
        + (f", {http.p99_ms:.1f} ms through HTTP" if http.rounds else "")
        + " (medians of rounds).",
        f"Target patient: {target.entries:,} entries (per member 100 encounters, 100 "
        "diagnoses, 80 four-examination notes, 40 procedures, 70 medication statements, "
        f"10 allergies) at {', '.join(target.institutions)}; the clinician works at "
        f"{target.institutions[0]} (same institution) and a visit there 10 days ago plus the "
        "alliance's opt-out consent open the other four (consent and care relationship).",
        f"Background: {loaded.rows['persons']:,} persons, "
        f"{loaded.rows['patient_records']:,} patient_records, "
        f"{loaded.rows['patient_identifiers']:,} identifiers, {background_entries:,} entries "
        "(1-3 visits each with diagnosis, notes, procedures, medications, allergies).",
        database_settings(conninfo),
        f"Load (COPY, foreign-key triggers off): {loaded.seconds:.0f} s; VACUUM ANALYZE "
        f"{loaded.vacuum_seconds:.0f} s; create, migrate, seed {setup_s:.1f} s"
        + (" (database reused from an earlier load: migrations only)." if loaded.reused else "."),
        f"In-process: {TIMELINE_CALLS} calls per round after one warm-up call, one at a "
        "time, each rolled back after its audit rows were appended (COMMIT not timed); "
        "'server CPU' is the Python process (PostgreSQL excluded). HTTP: one connection, "
        f"{options.warmup:g} s warm-up + {options.duration:g} s window per round, the "
        "uvicorn process's CPU, every read committed with its audit rows.",
        *(_db_cpu_note(v, passes) for v in (sql_variant, app)),
    ]
    ratios = _latency_ratios(app, sql_variant, "the timeline")
    if http.rounds:
        ratios += _latency_ratios(http, sql_variant, "the timeline over HTTP")[:1]
    return BenchmarkResult(
        name=TIMELINE_NAME,
        title=TIMELINE_TITLE,
        description=(
            f"`records.timeline.timeline` of one patient with {target.entries:,} entries "
            f"from {TIMELINE_INSTITUTIONS} members among {patients:,} patients on PostgreSQL, "
            "read by a clinician the access policy lets see all of it, against the raw "
            "limit of the stack underneath: one plain SQL statement on a bare psycopg "
            "connection returning the same page (same entries, same order, same total). "
            "Also through the HTTP API. Variants alternate in every round."
        ),
        variants=variants,
        ratios=ratios,
        checks=checks,
        notes=notes,
        elapsed_s=time.monotonic() - started,
    )


# --- two registered names, one module ------------------------------------------------------


def _expose(name: str, title: str, runner: Callable[[Options], BenchmarkResult]) -> None:
    """Make ``benchmarks.bench_patient_reads.<name>`` importable (as ``os.path`` is), so
    the runner's registry can name each benchmark of this module."""
    module = types.ModuleType(f"{MODULE}.{name}", f"{name}: {title} (in {MODULE}).")
    module.__dict__.update(NAME=name, TITLE=title, run=runner)
    sys.modules[module.__name__] = module


_expose(MPI_NAME, MPI_TITLE, run_mpi_online_match)
_expose(TIMELINE_NAME, TIMELINE_TITLE, run_timeline_read)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description="Run mpi_online_match and/or timeline_read with chosen sizes; other "
        "arguments go to python -m benchmarks.run.",
    )
    parser.add_argument("--persons", type=int, help=f"MPI index size (default {DEFAULT_PERSONS:,})")
    parser.add_argument(
        "--timeline-patients",
        type=int,
        help=f"patients loaded for the timeline (default {DEFAULT_TIMELINE_PATIENTS:,})",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep a database loaded before with the same parameters (only migrate it)",
    )
    args, rest = parser.parse_known_args(argv)
    if args.reuse:
        os.environ[REUSE_ENV] = "1"
    if args.persons:
        os.environ[PERSONS_ENV] = str(args.persons)
    if args.timeline_patients:
        os.environ[TIMELINE_PATIENTS_ENV] = str(args.timeline_patients)
    if not {MPI_NAME, TIMELINE_NAME} & set(rest):
        rest = [MPI_NAME, TIMELINE_NAME, *rest]
    from benchmarks import run as runner

    return runner.main(rest)


if __name__ == "__main__":
    sys.exit(main())
