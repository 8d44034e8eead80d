"""Per-request state of the FHIR layer: who acts, and what references mean."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy.orm import Session

from medalliance.fhir import store, systems
from medalliance.fhir.outcome import invalid
from medalliance.kernel.actor import Actor

if TYPE_CHECKING:
    from medalliance.fhir.registry import Registry

REFERENCE = re.compile(r"^(?:.*/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/.*)?$")


def by_identifier(ref: Any, resource_type: str) -> Any:
    """An identifier-only (logical) Reference as the conditional reference
    ``Type?identifier=system|value``, which ``FhirContext.resolve`` looks up; any other
    reference unchanged."""
    if ref is None or getattr(ref, "reference", None):
        return ref
    ident = getattr(ref, "identifier", None)
    if ident is None or not ident.system or not ident.value:
        return ref
    system, value = quote(str(ident.system), safe=":/"), quote(str(ident.value), safe=":/")
    return SimpleNamespace(reference=f"{resource_type}?identifier={system}|{value}")


@dataclass(frozen=True, slots=True)
class Mark:
    refs: dict[str, tuple[str, uuid.UUID]]
    source_ids: dict[tuple[str, str], uuid.UUID | None]
    left_out: int
    hold: int
    resolved: dict[str, tuple[str, uuid.UUID]]


@dataclass
class FhirContext:
    session: Session
    actor: Actor
    registry: Registry
    base_url: str = ""
    # fullUrl (urn:uuid:… of a Bundle entry) -> (resource type, domain id)
    refs: dict[str, tuple[str, uuid.UUID]] = field(default_factory=dict)
    # imports keep the sender's ids so that a re-import maps onto what exists
    keep_source_ids: bool = False
    # imports: the sender ids of a Bundle looked up in one query, (type, id) -> ours or None
    source_ids: dict[tuple[str, str], uuid.UUID | None] = field(default_factory=dict)
    # imports: optional references that resolve to nothing here are left out and reported
    left_out: list[str] = field(default_factory=list)
    # rows written in this transaction that later entries read (an encounter for its
    # diagnoses): the session's identity map holds them only weakly
    hold: list[Any] = field(default_factory=list)
    # references resolved in this transaction (a Bundle names the same practitioner in
    # every encounter); conditional ones are forgotten when their type gets a create
    _resolved: dict[str, tuple[str, uuid.UUID]] = field(default_factory=dict)

    def mark(self) -> Mark:
        """What this context knows now, to go back to when a savepoint is undone."""
        return Mark(
            dict(self.refs), dict(self.source_ids), len(self.left_out), len(self.hold),
            dict(self._resolved),
        )  # fmt: skip

    def back_to(self, mark: Mark) -> None:
        """Forget what work rolled back to ``mark`` taught this context: its ids do not
        exist, and its left-out references will be met again when it is redone."""
        self.refs, self.source_ids, self._resolved = mark.refs, mark.source_ids, mark.resolved
        del self.left_out[mark.left_out :]
        del self.hold[mark.hold :]

    def created(self, resource_type: str) -> None:
        """A resource of this type was created: a conditional reference to the type may
        now match another one."""
        stale = [k for k in self._resolved if k.startswith(resource_type + "?")]
        for key in stale:
            del self._resolved[key]

    def url(self, resource_type: str, rid: uuid.UUID | str) -> str:
        return f"{self.base_url}/{resource_type}/{rid}"

    def resolve(self, ref: Any, path: str, *types: str) -> tuple[str, uuid.UUID]:
        """A Reference to (type, domain id), or a 422 naming the element."""
        reference = getattr(ref, "reference", None) if ref is not None else None
        if not reference:
            raise invalid(path, f"{path}: a reference is required here")
        found = self._lookup(reference)
        if found is None:
            raise invalid(path, f"{path}: {reference} refers to nothing on this server")
        if types and found[0] not in types:
            raise invalid(path, f"{path}: must refer to {' or '.join(types)}, not {found[0]}")
        return found

    def resolve_optional(self, ref: Any, path: str, *types: str) -> uuid.UUID | None:
        if ref is None or not getattr(ref, "reference", None):
            return None
        if not self.keep_source_ids:
            return self.resolve(ref, path, *types)[1]
        found = self._lookup(str(ref.reference))
        if found is None or (types and found[0] not in types):
            self.left_out.append(str(ref.reference))
            return None
        return found[1]

    def _lookup(self, reference: str) -> tuple[str, uuid.UUID] | None:
        if reference.startswith("urn:uuid:"):
            return self.refs.get(reference)
        found = self._resolved.get(reference)
        if found is None:
            found = self._conditional(reference) if "?" in reference else self._direct(reference)
            if found is not None:
                self._resolved[reference] = found
        return found

    def _direct(self, reference: str) -> tuple[str, uuid.UUID] | None:
        match = REFERENCE.match(reference)
        if match is None:
            return None
        rtype, rid = match.groups()
        if rtype not in self.registry:
            return None
        mapper = self.registry[rtype]
        try:
            as_uuid = uuid.UUID(rid)
        except ValueError:
            as_uuid = None
        if as_uuid is not None and mapper.exists(self.session, as_uuid):
            return rtype, as_uuid
        # a sender's own id, kept by an import
        known = store.find(self.session, rtype, systems.SOURCE_ID, rid)
        return None if known is None else (rtype, known)

    def _conditional(self, reference: str) -> tuple[str, uuid.UUID] | None:
        """A conditional reference (``Practitioner?identifier=sys|val``): exactly one match."""
        from urllib.parse import parse_qsl

        from medalliance.fhir import search

        rtype, _, query = reference.partition("?")
        if rtype not in self.registry:
            return None
        mapper = self.registry[rtype]
        req = search.parse(rtype, parse_qsl(query), mapper.params, mapper.sorts)
        req.count = 2
        rows, total = mapper.search(self, req)
        return (rtype, rows[0].id) if total == 1 else None
