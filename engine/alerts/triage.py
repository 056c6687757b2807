"""The alert lifecycle: new -> acknowledged -> closed, with an assignee and comments, for alerts and cases.

Why triage is kept apart from the alert record: the evaluator commits a new *revision* of an alert whenever
later evidence extends its episode, and that rewrites the alert row. The analyst's state (status, assignee,
comments, close reason) is a separate record keyed by the alert (or case) id, so a new revision can never
reset it; readers overlay it (:func:`overlay`), and the payload a sink gets carries it.

Every change goes through :func:`_change`: read the record, apply one transition, write it back only if
nobody changed it meanwhile (the stores' ``put_triage_record`` is conditional on the version read), then
append an ``engine.audit`` entry. The audit chain is the who/when/what history; the record here is only
the current state.

Transitions (anything else raises ``InvalidTransition``, a one-line usage error)::

    new ──ack──▶ acknowledged ──close──▶ closed
     └───────────────close─────────────────┘
    assign / comment: any time before close; closed is final (reopen is not supported)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence, TypeVar

from engine.alerts.case_model import Case
from engine.alerts.model import Alert
from engine.errors import InvalidTransition, NotFound, UsageError
from engine.events import format_timestamp
from engine.store.base import StoreConflict

STATUSES = ("new", "acknowledged", "closed")
CLOSE_REASONS = ("true_positive", "benign", "false_positive", "duplicate")
#: Not a lifecycle state: what ``alerts list --status suppressed`` matches (the alert's latest revision was
#: held back from the sinks by an exception, see engine/alerts/exceptions.py).
SUPPRESSED = "suppressed"

#: An id prefix must be this long to stand for an id (shorter ones match too much by chance).
MIN_PREFIX = 6

_T = TypeVar("_T")


@dataclass
class TriageState:
    """The analyst's state of one alert or case. ``comments`` are ``{author, at, text}`` in order.

    ``seen_revision`` is the subject's revision the assignee was last told about (assign, or an
    ``assignee_update`` notice): a later revision is news for them."""

    subject_id: str
    kind: str  # "alert" | "case"
    status: str = "new"
    assignee: str | None = None
    close_reason: str | None = None
    comments: list[dict[str, Any]] = field(default_factory=list)
    updated: str = ""
    seen_revision: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["comments"] = [dict(c) for c in self.comments]
        return data

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "TriageState":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


@dataclass
class Subject:
    """What an id on the command line names: an alert or a case, with its record."""

    kind: str  # "alert" | "case"
    id: str
    record: Alert | Case

    @property
    def revision(self) -> int:
        return int(self.record.revision)


def now_iso() -> str:
    return format_timestamp(datetime.now(timezone.utc))


# --- lookup -------------------------------------------------------------------------------------------

def by_id_or_prefix(ref: str, get: Callable[[str], _T | None], candidates: Callable[[], Sequence[_T]],
                    what: str = "id") -> _T | None:
    """The record with id ``ref``, else the one whose id starts with ``ref`` (at least ``MIN_PREFIX``
    characters); None when there is none. Two records sharing the prefix: a usage error asking for more."""
    found = get(ref)
    if found is not None or len(ref) < MIN_PREFIX:
        return found
    matches = [c for c in candidates() if getattr(c, "id").startswith(ref)]
    if len(matches) > 1:
        raise UsageError(f"{what} prefix {ref!r} matches {len(matches)} records; give more characters")
    return matches[0] if matches else None


def resolve(store: Any, ref: str) -> Subject:
    """The alert or case named by ``ref`` (an id or a unique prefix), or ``NotFound``."""
    alert = by_id_or_prefix(ref, store.get_alert, lambda: store.records_with_id_prefix("alert", ref), "alert id")
    if alert is not None:
        return Subject("alert", alert.id, alert)
    case = by_id_or_prefix(ref, store.get_case, lambda: store.records_with_id_prefix("case", ref), "case id")
    if case is not None:
        return Subject("case", case.id, case)
    raise NotFound(f"no alert or case with id {ref!r} (`wardwatch alerts list` shows the ids)")


# --- state ---------------------------------------------------------------------------------------------

def get_state(store: Any, subject_id: str) -> TriageState:
    """The triage state of an alert or case id (resolved first); ``new`` for one never triaged."""
    subject = resolve(store, subject_id)
    return _state_of(store, subject)[0]


def _state_of(store: Any, subject: Subject) -> tuple[TriageState, int]:
    record = store.get_triage_record(subject.id)
    if record is None:
        return TriageState(subject.id, subject.kind), 0
    return TriageState.from_record(record), int(record["version"])


def states(store: Any, subject_ids: Sequence[str] | None = None) -> dict[str, TriageState]:
    """Stored triage states by subject id (subjects never triaged are absent)."""
    return {sid: TriageState.from_record(r) for sid, r in store.get_triage_records(subject_ids).items()}


def _change(store: Any, subject_id: str, kind: str, actor: str, at: str | None,
            apply: Callable[[TriageState, Subject], dict[str, Any]]) -> TriageState:
    """Read, ``apply`` one transition (it mutates the state and returns the audit detail), write back if
    nobody changed the record meanwhile (else re-read and apply again), then record it in the audit chain."""
    subject = resolve(store, subject_id)
    for _attempt in range(5):
        state, version = _state_of(store, subject)
        detail = apply(state, subject)
        state.updated = at or now_iso()
        try:
            store.put_triage_record({**state.to_dict(), "kind": subject.kind}, version)
        except StoreConflict:
            continue
        _audit(store, kind, actor=actor, subject=subject.id, detail={"record": subject.kind, **detail},
               at=state.updated)
        return state
    raise StoreConflict(f"the triage state of {subject.id} keeps changing; try again")


def _audit(store: Any, kind: str, *, actor: str, subject: str, detail: dict[str, Any], at: str | None) -> None:
    """One entry in the tamper-evident audit chain (engine.audit): who did what to which subject, when."""
    from engine import audit

    audit.record(store, kind, actor=actor, subject=subject, detail=detail, at=at)


def _open(state: TriageState, subject: Subject, action: str) -> None:
    if state.status == "closed":
        raise InvalidTransition(f"{subject.kind} {subject.id} is closed; {action} is not possible and reopen "
                                "is not supported")


def acknowledge(store: Any, subject_id: str, *, actor: str, at: str | None = None) -> TriageState:
    """new -> acknowledged: someone is looking at it."""

    def apply(state: TriageState, subject: Subject) -> dict[str, Any]:
        _open(state, subject, "acknowledging")
        if state.status == "acknowledged":
            raise InvalidTransition(f"{subject.kind} {subject.id} is already acknowledged")
        state.status = "acknowledged"
        return {"status": "acknowledged"}

    return _change(store, subject_id, "triage.acknowledge", actor, at, apply)


def assign(store: Any, subject_id: str, assignee: str, *, actor: str, at: str | None = None) -> TriageState:
    """Give it to ``assignee`` (any time before close). The assignee is told about later revisions."""
    if not assignee.strip():
        raise UsageError("the assignee must not be empty")

    def apply(state: TriageState, subject: Subject) -> dict[str, Any]:
        _open(state, subject, "assigning")
        previous, state.assignee = state.assignee, assignee
        state.seen_revision = subject.revision
        return {"assignee": assignee, "previous": previous}

    return _change(store, subject_id, "triage.assign", actor, at, apply)


def comment(store: Any, subject_id: str, text: str, *, actor: str, at: str | None = None) -> TriageState:
    """Add a comment (any time before close)."""
    if not text.strip():
        raise UsageError("the comment must not be empty")
    when = at or now_iso()

    def apply(state: TriageState, subject: Subject) -> dict[str, Any]:
        _open(state, subject, "commenting")
        state.comments.append({"author": actor, "at": when, "text": text})
        return {"text": text}

    return _change(store, subject_id, "triage.comment", actor, when, apply)


def suppression_seconds(suppress: str | None, justification: str | None, field: str | None, *,
                        names: tuple[str, str, str] = ("--suppress", "--justification", "--field")) -> float | None:
    """The ``suppress`` duration of a close as the CLI (``--suppress 30d``) and the API (``suppress_for``)
    take it: one parse and one set of messages, naming the option as the caller spells it."""
    from engine.config import parse_duration

    if suppress is None:
        if justification or field:
            raise UsageError(f"{names[1]} and {names[2]} only go with {names[0]} DURATION")
        return None
    try:
        return parse_duration(suppress)
    except ValueError as exc:
        raise UsageError(f"{names[0]} {suppress!r}: {exc}") from None


def close(store: Any, subject_id: str, reason: str, *, actor: str, comment: str | None = None,
          suppress_for: float | None = None, justification: str | None = None, field: str | None = None,
          at: str | None = None) -> tuple[TriageState, Any]:
    """Close with a reason from ``CLOSE_REASONS``; with ``suppress_for`` (seconds) also add an exception
    for this alert's rule and user (``field``: which group field; default the alert's user field), valid from
    now for that long (needs a ``justification``). Returns the state and the exception (or None)."""
    from engine.alerts import exceptions

    if reason not in CLOSE_REASONS:
        raise UsageError(f"--reason {reason!r} is not a close reason (one of: {', '.join(CLOSE_REASONS)})")
    when = at or now_iso()
    plan: tuple[str, str, Any] | None = None
    if suppress_for is not None:
        if suppress_for <= 0:
            raise UsageError("--suppress must be a positive duration (like 30d)")
        if not (justification or "").strip():
            raise UsageError("--suppress needs --justification TEXT (why this rule may stay quiet for this user)")
        subject = resolve(store, subject_id)
        if subject.kind != "alert":
            raise UsageError(f"--suppress works on alert ids, not on case {subject.id} (a case spans several "
                             "rules): close its alerts with --suppress")
        plan = (subject.record.rule_id, *suppression_target(subject.record, field))  # type: ignore[arg-type]

    def apply(state: TriageState, subject: Subject) -> dict[str, Any]:
        _open(state, subject, "closing")
        state.status, state.close_reason = "closed", reason
        if comment:
            state.comments.append({"author": actor, "at": when, "text": comment})
        return {"status": "closed", "reason": reason, **({"comment": comment} if comment else {})}

    state = _change(store, subject_id, "triage.close", actor, when, apply)
    exc = None
    if plan is not None:
        until = format_timestamp(_parse(when) + timedelta(seconds=float(suppress_for or 0)))
        exc = exceptions.add_exception(store, rule_id=plan[0], field=plan[1], value=plan[2], until=until,
                                       justification=str(justification), author=actor, created=when,
                                       source=state.subject_id)
    return state, exc


def suppression_target(alert: Alert, field: str | None = None) -> tuple[str, Any]:
    """(field, value) an exception from this alert keys on: ``field`` if given, else the alert's user field,
    else its only group field. An alert grouped by several non-user fields needs ``field``."""
    if field is not None:
        if field not in alert.group:
            raise UsageError(f"--field {field!r} is not a group field of alert {alert.id} "
                             f"(its group: {', '.join(alert.group) or 'none'})")
        return field, alert.group[field]
    from engine.alerts.triage_query import USER_FIELDS

    for name in USER_FIELDS:
        if alert.group.get(name) is not None:
            return name, alert.group[name]
    if len(alert.group) == 1:
        return next(iter(alert.group.items()))
    raise UsageError(f"alert {alert.id} has no user field in its group ({', '.join(alert.group) or 'none'}); "
                     "pass --field NAME")


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


# --- reading: the triage state over the records ----------------------------------------------------------------------

def overlay(store: Any, records: Sequence[Alert | Case]) -> list[Alert | Case]:
    """Copies of ``records`` whose ``status`` and ``assignee`` are the triage state (``new`` / None where
    never triaged). The stored alert is never changed: a new revision must not carry an old status."""
    found = states(store, [r.id for r in records]) if records else {}
    out: list[Alert | Case] = []
    for record in records:
        state = found.get(record.id)
        out.append(dataclasses.replace(record, status=state.status if state else "new",
                                       assignee=state.assignee if state else None))
    return out


# --- telling the assignee ------------------------------------------------------------------------------

def notify_assignees(store: Any, sinks: Sequence[Any]) -> int:
    """Send one ``assignee_update`` notice per new revision of an open, assigned alert or case (through
    ``engine.alerts.sinks.send_notice``, to sinks with ``notices: true``). Called after each delivery round;
    a revision is marked ``notified`` once sent, so a restart does not repeat it. Suppressed revisions are
    not news. Returns how many notices went out."""
    from engine.alerts.sinks import send_notice

    open_assigned = {sid: TriageState.from_record(r) for sid, r in store.open_assigned_triage_records().items()}
    if not open_assigned:
        return 0
    told = store.get_triage_marks("notified", list(open_assigned))
    held = store.get_triage_marks("suppressed", list(open_assigned))
    sent: list[tuple[str, int, str]] = []
    for sid, state in sorted(open_assigned.items()):
        record = store.get_alert(sid) if state.kind == "alert" else store.get_case(sid)
        if record is None:
            continue
        revision = int(record.revision)
        if revision <= state.seen_revision or revision in told.get(sid, {}) or revision in held.get(sid, {}):
            continue
        title = record.rule_title if state.kind == "alert" else f"case about {record.subject_kind}"  # type: ignore[union-attr]
        send_notice(sinks, {"kind": "assignee_update", "subject": sid, "to": state.assignee,
                            "revision": revision, "status": state.status,
                            "text": f"{state.kind} {sid[:12]} ({title}) has a new revision {revision}; "
                                    f"assigned to {state.assignee}"})
        sent.append((sid, revision, str(state.assignee)))
    store.put_triage_marks("notified", sent)
    return len(sent)


#: Reading and filtering (``alerts list``/``show``) live in ``engine.alerts.triage_query``; these names are
#: part of this module's interface too (PEP 562: resolved on first use, so neither module imports the other
#: at load time).
_QUERY_NAMES = frozenset({"AlertFilter", "find_alerts", "find_cases", "describe", "rule_ids_for",
                          "rule_matches_ref", "USER_FIELDS", "PATIENT_FIELDS"})


def __getattr__(name: str) -> Any:
    if name in _QUERY_NAMES:
        from engine.alerts import triage_query

        return getattr(triage_query, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
