"""Search parameters: parsing (prefixes, tokens, references) and the generic engine."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, ColumnElement, Select, and_, false, func, not_, or_, select

from medalliance.fhir.outcome import FhirError, invalid

if TYPE_CHECKING:
    from medalliance.fhir.context import FhirContext

DEFAULT_COUNT = 50
MAX_COUNT = 1000
CONTROL = {"_count", "_offset", "_sort", "_include", "_revinclude", "_summary", "_format"}
# accepted and without effect: the total is always exact; JSON is the only format
IGNORED = frozenset({"_format", "_total", "_totalMethod", "_pretty"})
PREFIXES = ("eq", "ne", "lt", "gt", "le", "ge", "sa", "eb", "ap")
NOT = frozenset({"not"})


@dataclass(frozen=True, slots=True)
class Criterion:
    name: str
    modifier: str | None
    values: tuple[str, ...]  # ORed; repeated parameters are ANDed


@dataclass(slots=True)
class SearchRequest:
    criteria: list[Criterion] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param, descending)
    include: list[str] = field(default_factory=list)
    revinclude: list[str] = field(default_factory=list)
    summary_count: bool = False
    # parameters left out on Prefer: handling=lenient (unknown, or an unsupported modifier)
    ignored: list[str] = field(default_factory=list)

    def values_of(self, name: str) -> list[str]:
        return [v for c in self.criteria if c.name == name for v in c.values]


Apply = Callable[["FhirContext", Select[Any], Criterion], Select[Any]]


@dataclass(frozen=True, slots=True)
class SearchParam:
    type: str  # token | date | reference | string
    apply: Apply
    documentation: str = ""
    modifiers: frozenset[str] = frozenset()  # the modifiers ``apply`` honours


def parse(
    resource_type: str,
    items: list[tuple[str, str]],
    params: dict[str, SearchParam],
    sorts: dict[str, Any],
    *,
    lenient: bool = False,
) -> SearchRequest:
    """Strict by default: an unknown parameter or an unsupported modifier is a 400.
    Lenient (``Prefer: handling=lenient``): they are left out and listed in ``ignored``."""
    req = SearchRequest()
    for key, raw in items:
        name, _, modifier = key.partition(":")
        if key == "_count":
            req.count = parse_int(key, raw, 0, MAX_COUNT)
        elif key == "_offset":
            req.offset = parse_int(key, raw, 0, 10**9)
        elif key == "_summary":
            if raw != "count":
                raise invalid("_summary", "only _summary=count is supported", 400)
            req.summary_count = True
        elif key == "_sort":
            for part in raw.split(","):
                desc = part.startswith("-")
                pname = part.lstrip("-")
                if pname not in sorts:
                    raise invalid("_sort", f"cannot sort {resource_type} by {pname!r}", 400)
                req.sort.append((pname, desc))
        elif key in ("_include", "_revinclude"):
            (req.include if key == "_include" else req.revinclude).append(raw)
        elif key in IGNORED:
            continue
        elif name in params and (not modifier or modifier in params[name].modifiers):
            values = tuple(v for v in raw.split(",") if v != "")
            if values:
                req.criteria.append(Criterion(name, modifier or None, values))
        elif lenient:
            req.ignored.append(key)
        elif name in params:
            raise invalid(key, f"modifier :{modifier} is not supported on {name}", 400)
        else:
            raise invalid(key, f"unknown search parameter {key!r} for {resource_type}", 400)
    return req


def parse_int(key: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise invalid(key, f"{key} must be an integer", 400) from exc
    if not low <= value <= high:
        raise invalid(key, f"{key} must be between {low} and {high}", 400)
    return value


# --- value parsing ----------------------------------------------------------------------


def instant_param(name: str, raw: str) -> datetime:
    """A parameter that is one moment (``_since``): the start of the value's interval."""
    return date_range(raw, name)[0]


def token(value: str) -> tuple[str | None, str]:
    """'system|code' → (system, code); '|code' → ('', code); 'code' → (None, code)."""
    if "|" in value:
        system, _, code = value.partition("|")
        return system, code
    return None, value


def reference_id(value: str, resource_type: str) -> uuid.UUID | None:
    """'Patient/<id>', a full URL or a bare id → the uuid, or None (matches nothing)."""
    raw = value.rstrip("/")
    if "/" in raw:
        parts = raw.split("/")
        if parts[-2] != resource_type:
            return None
        raw = parts[-1]
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def split_prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and (value[2].isdigit()):
        return value[:2], value[2:]
    return "eq", value


def date_range(raw: str, name: str) -> tuple[datetime, datetime]:
    """The interval [low, high) a FHIR date value of any precision stands for."""
    try:
        if len(raw) == 4:
            low = datetime(int(raw), 1, 1, tzinfo=UTC)
            return low, low.replace(year=low.year + 1)
        if len(raw) == 7:
            year, month = int(raw[:4]), int(raw[5:7])
            low = datetime(year, month, 1, tzinfo=UTC)
            high = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            return low, high
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            low = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return low, low + timedelta(days=1)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment, moment + timedelta(seconds=1)
    except ValueError as exc:
        raise invalid(name, f"{name}: {raw!r} is not a FHIR date", 400) from exc


def date_condition(column: Any, value: str, name: str, *, date_only: bool = False) -> Any:
    prefix, raw = split_prefix(value)
    low, high = date_range(raw, name)
    if prefix == "ap":
        # approximately: the value's own interval widened by 10 % of its distance from
        # now (the figure the FHIR search page suggests), at least a day either side
        now = datetime.now(UTC)
        slack = max(abs(now - low) / 10, timedelta(days=1))
        low, high = low - slack, high + slack
    lo: Any = low.date() if date_only else low
    hi: Any = high.date() if date_only else high
    conditions = {
        "eq": and_(column >= lo, column < hi),
        "ne": not_(and_(column >= lo, column < hi)),
        "lt": column < lo,
        "eb": column < lo,
        "le": column < hi,
        "gt": column >= hi,
        "sa": column >= hi,
        "ge": column >= lo,
        "ap": and_(column >= lo, column < hi),
    }
    return conditions[prefix]


# --- parameter builders -----------------------------------------------------------------


def date_param(column: Any, *, date_only: bool = False, doc: str = "") -> SearchParam:
    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        return query.where(
            or_(*(date_condition(column, v, c.name, date_only=date_only) for v in c.values))
        )

    return SearchParam("date", apply, doc)


def token_param(
    column: Any, *, system: str | None = None, lower: bool = False, doc: str = ""
) -> SearchParam:
    """A token on one column; with ``system`` only that system's codes match."""

    kind = getattr(column, "type", None)
    enums = getattr(kind, "enums", None)  # a code outside an enum matches nothing
    boolean = isinstance(kind, Boolean)

    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        conditions: list[ColumnElement[bool]] = []
        for value in c.values:
            sys_, code = token(value)
            if sys_ not in (None, system) and not (sys_ == "" and system is None):
                continue
            wanted: Any = code.lower() if lower else code
            if boolean:
                if code not in ("true", "false"):
                    raise invalid(c.name, f"{c.name}: {code!r} is not true or false", 400)
                wanted = code == "true"
            elif enums is not None and wanted not in enums:
                continue
            conditions.append(column == wanted)
        clause = or_(*conditions) if conditions else false()
        return query.where(not_(clause) if c.modifier == "not" else clause)

    return SearchParam("token", apply, doc, NOT)


def id_param(column: Any) -> SearchParam:
    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        ids = [u for u in (_uuid(v) for v in c.values) if u is not None]
        return query.where(column.in_(ids) if ids else false())

    return SearchParam("token", apply, "logical id")


def string_param(*columns: Any, doc: str = "") -> SearchParam:
    """Case-insensitive 'starts with' (or ':exact', ':contains') on any of the columns."""

    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        conditions = []
        for value in c.values:
            for column in columns:
                if c.modifier == "exact":
                    conditions.append(column == value)
                elif c.modifier == "contains":
                    conditions.append(func.lower(column).contains(value.lower(), autoescape=True))
                else:
                    conditions.append(func.lower(column).startswith(value.lower(), autoescape=True))
        return query.where(or_(*conditions))

    return SearchParam("string", apply, doc, frozenset({"exact", "contains"}))


def reference_param(column: Any, target: str, doc: str = "") -> SearchParam:
    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        ids = [u for u in (reference_id(v, target) for v in c.values) if u is not None]
        return query.where(column.in_(ids) if ids else false())

    return SearchParam("reference", apply, doc)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def count_of(ctx: FhirContext, query: Select[Any]) -> int:
    return (
        ctx.session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    )


def bad_request(message: str) -> FhirError:
    return FhirError(400, message)
