"""Suppression exceptions from triage: "closed as benign, keep this rule quiet for this user for 30 days".

An exception is (rule, field, value, created, until, justification, author). It applies to an alert revision
of that rule whose group names that value in that field and whose trigger time (``last_trigger``, the
trigger that made the revision) lies in ``[created, until)``. Such revisions are still stored, evaluated
and audited; the delivery path only keeps them from the sinks and the case builder
(:func:`filter_deliverable`) and marks them ``suppressed``, so ``alerts list --status suppressed`` shows
what was held back and nothing is silently lost.

Why the trigger time and not the wall clock decides: a re-run over old data (a restart, a late event) then
suppresses exactly what it suppressed the first time, and an exception expires by itself: a revision
triggered after ``until`` is delivered again without anyone removing anything.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from engine.alerts.model import Alert
from engine.errors import NotFound, UsageError

#: Consumers that must see every revision, suppressed or not (the audit chain records what happened).
UNFILTERED_CONSUMERS = frozenset({"@audit"})
#: Consumers that never read a revision's triage state (the case builder reads rules, groups, times and
#: evidence: a case's status is its own): they get the kept revisions as stored, without the overlay's copy of
#: each one (issue 10: 6,720 copies and a triage read per batch in the SigmaHQ first run).
TRIAGE_BLIND_CONSUMERS = frozenset({"@cases"})


@dataclass(frozen=True)
class SuppressionException:
    """One exception. ``source`` is the alert id it was created from (when made by ``alerts close``)."""

    id: str
    rule_id: str
    field: str
    value: Any
    created: str
    until: str
    justification: str
    author: str
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SuppressionException":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def active(self, at: str) -> bool:
        return self.created <= at < self.until


def add_exception(store: Any, *, rule_id: str, field: str, value: Any, until: str, justification: str,
                  author: str, created: str | None = None, source: str | None = None) -> SuppressionException:
    """Store a new exception (valid from ``created``, default now, until ``until``) and audit it."""
    from engine.alerts.triage import _audit, now_iso

    created = created or now_iso()
    if until <= created:
        raise UsageError(f"an exception must end after it starts ({until} <= {created})")
    if not justification.strip():
        raise UsageError("an exception needs a justification")
    exc = SuppressionException(uuid.uuid4().hex, rule_id, field, value, created, until, justification, author,
                               source)
    store.put_exception_record(exc.to_dict())
    _audit(store, "exception.add", actor=author, subject=exc.id, at=created,
           detail={"rule_id": rule_id, "field": field, "value": value, "until": until,
                   "justification": justification, **({"source": source} if source else {})})
    return exc


def list_exceptions(store: Any, include_expired: bool = False, at: str | None = None) -> list[SuppressionException]:
    """Exceptions ordered by creation; without ``include_expired`` only those not yet past ``until``."""
    from engine.alerts.triage import now_iso

    found = [SuppressionException.from_dict(r) for r in store.list_exception_records()]
    if include_expired:
        return found
    at = at or now_iso()
    return [e for e in found if e.until > at]


def remove_exception(store: Any, exception_id: str, *, actor: str, at: str | None = None) -> SuppressionException:
    """Delete one exception (an id or a unique prefix of it) and audit it; ``NotFound`` when none matches."""
    from engine.alerts.triage import _audit, by_id_or_prefix

    every = {e.id: e for e in list_exceptions(store, include_expired=True)}
    exc = by_id_or_prefix(exception_id, every.get, lambda: list(every.values()), "exception id")
    if exc is None or not store.delete_exception_record(exc.id):
        raise NotFound(f"no exception with id {exception_id!r} (`wardwatch exceptions list --all` shows them)")
    _audit(store, "exception.remove", actor=actor, subject=exc.id, at=at,
           detail={"rule_id": exc.rule_id, "field": exc.field, "value": exc.value})
    return exc


def active_exceptions(store: Any, at: str) -> list[SuppressionException]:
    """The exceptions in force at ``at``."""
    return [e for e in list_exceptions(store, include_expired=True) if e.active(at)]


def exception_applies(exc: SuppressionException, alert: Alert) -> bool:
    """Whether ``exc`` holds this alert revision back: same rule, same value in the exception's field of the
    alert's group (compared as text, case-insensitively like Sigma), trigger time within the exception."""
    if alert.rule_id != exc.rule_id or not exc.active(alert.last_trigger):
        return False
    value = alert.group.get(exc.field)
    return value is not None and str(value).casefold() == str(exc.value).casefold()


def filter_deliverable(store: Any, records: Sequence[Any], *, sink: str | None = None) -> list[Any]:
    """What a sink (or the case builder) may be handed of ``records`` (pending alert or case revisions):
    alert revisions an exception applies to are left out and marked ``suppressed`` (the caller still
    acknowledges every record it fetched, so a suppressed revision is never retried or delivered later).
    The rest carry the current triage ``status`` and ``assignee`` (for ``TRIAGE_BLIND_CONSUMERS``: as
    stored). ``sink``: consumers in ``UNFILTERED_CONSUMERS`` get everything, unchanged."""
    from engine.alerts.triage import overlay

    if not records or sink in UNFILTERED_CONSUMERS:
        return list(records)
    alerts = [r for r in records if isinstance(r, Alert)]
    held: list[tuple[str, int, str]] = []
    if alerts:
        every = list_exceptions(store, include_expired=True)
        by_rule: dict[str, list[SuppressionException]] = {}
        for exc in every:
            by_rule.setdefault(exc.rule_id, []).append(exc)
        for alert in alerts:
            hit = next((e for e in by_rule.get(alert.rule_id, ()) if exception_applies(e, alert)), None)
            if hit is not None:
                held.append((alert.id, int(alert.revision), hit.id))
    store.put_triage_marks("suppressed", held)
    skip = {(sid, rev) for sid, rev, _ in held}
    kept = [r for r in records if not (isinstance(r, Alert) and (r.id, int(r.revision)) in skip)]
    return kept if sink in TRIAGE_BLIND_CONSUMERS else overlay(store, kept)


def deliverable(store: Any, sink: str, hand: Callable[[Sequence[Any]], None]) -> Callable[[Sequence[Any]], None]:
    """``hand`` behind :func:`filter_deliverable`: the delivery loop hands a batch over through this and
    then acknowledges the whole batch, suppressed revisions included (so each is decided exactly once)."""

    def hand_over(records: Sequence[Any]) -> None:
        kept = filter_deliverable(store, records, sink=sink)
        if kept:
            hand(kept)

    return hand_over
