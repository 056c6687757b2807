"""The store contract: what the engine asks of SQLite and Elasticsearch alike.

A store keeps four things: events, connector cursors, rule checkpoints and alerts (plus dead letters and a
delivery outbox for sinks). It runs the narrowing query it is handed and knows nothing of Sigma semantics:
the engine's evaluator decides what matches.

Ordering and visibility: the engine evaluates "what was ingested since the last checkpoint". A store exposes
that as an opaque ``Watermark`` (SQLite: a commit sequence number; Elasticsearch: an ingest time minus a
safety lag). ``watermark()`` promises that every event ingested at or before it is visible to ``search``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from engine import errors
from engine.alerts.case_model import Case
from engine.alerts.model import Alert
from engine.events import DATASET, EVENT_ID, TIMESTAMP, Event

Watermark = str


class StoreError(errors.StoreError):
    """Base class for store failures the service reports and retries (never swallows)."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached right now; callers back off and retry, nothing is dropped."""


class StoreConflict(StoreError):
    """Another engine changed the same state record concurrently (optimistic concurrency)."""


@dataclass(frozen=True)
class CursorUpdate:
    """A connector's position, committed together with (never before) the events it covers."""

    connector_id: str
    value: dict[str, Any]


@dataclass(frozen=True)
class DeadLetter:
    """Input that could not become an event. ``location`` names the file:line, URL or field at fault."""

    source: str
    reason: str
    location: str
    raw: str
    received_at: str = ""


@dataclass
class WriteResult:
    written: int = 0
    duplicates: int = 0
    dead_lettered: int = 0


@dataclass(frozen=True)
class SearchQuery:
    """What the engine wants to look at. All bounds optional; results are ordered by (@timestamp, event.id).

    ``start`` is inclusive and ``end`` exclusive on event time (``@timestamp``).
    ``ingested_after`` is exclusive and ``ingested_upto`` inclusive on the store's watermark.
    ``prefilter`` is a store-specific narrowing query (a superset of the true matches) or None.
    ``fields`` limits the returned fields (``None``: all); ``@timestamp``, ``event.id`` and
    ``event.dataset`` are always returned.
    ``fields_at_least``: the caller reads only ``fields`` and does not mind more (the evaluator): a store
    may then skip trimming each event when trimming costs more than it saves (the embedded store: a dict
    copy per event, more than its decode). Searches shown to people (hunt, search) keep the exact set.
    """

    datasets: Sequence[str] | None = None
    start: str | None = None
    end: str | None = None
    ingested_after: Watermark | None = None
    ingested_upto: Watermark | None = None
    prefilter: Any = None
    fields: Sequence[str] | None = None
    fields_at_least: bool = False


@dataclass
class RuleCheckpoint:
    """How far a rule has been evaluated. ``watermark`` None means never run."""

    rule_id: str
    watermark: Watermark | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PurgeResult:
    """What one retention step removed (in a dry run: would remove).

    ``transactions`` counts the bounded units the work was split into: committed delete batches on SQLite,
    index deletions and delete-by-query requests on Elasticsearch. ``indices_dropped`` lists whole indices.
    """

    deleted: int = 0
    transactions: int = 0
    indices_dropped: list[str] = field(default_factory=list)


# A canonical timestamp: 2026-11-02T09:15:30.123Z (24 characters). Checked cheaply on write because time-range
# search compares these strings lexically; a non-canonical one would silently fall out of every window.
_TS_LEN = 24


def check_event(event: Event) -> tuple[str, str, str]:
    """(@timestamp, event.id, event.dataset) of an event a store is asked to write, or ValueError.

    A missing key field is a programming error upstream (the normaliser must dead-letter such input), so
    every store raises instead of dropping the event silently.
    """
    try:
        ts = event[TIMESTAMP]
        eid = event[EVENT_ID]
        dataset = event[DATASET]
    except KeyError as exc:
        raise ValueError(f"event without {exc.args[0]!r}: every event needs @timestamp, event.id and "
                         f"event.dataset (event.id={event.get(EVENT_ID)!r})") from None
    if not isinstance(ts, str) or len(ts) != _TS_LEN or ts[-1] != "Z" or ts[10] != "T":
        raise ValueError(f"@timestamp {ts!r} is not canonical (like 2026-11-02T09:15:30.123Z; "
                         f"use engine.events.normalise_timestamp) in event {eid!r}")
    if not isinstance(eid, str) or not eid:
        raise ValueError(f"event.id must be a non-empty string, not {eid!r}")
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"event.dataset must be a non-empty string, not {dataset!r} (event {eid!r})")
    return ts, eid, dataset


class Store(abc.ABC):
    kind: str = "abstract"

    # --- events -------------------------------------------------------------------------------
    @abc.abstractmethod
    def write(self, batch: Sequence[Event], cursor: CursorUpdate | None = None) -> WriteResult:
        """Store events idempotently (a re-read event — same ``event.id`` and ``@timestamp`` — is a
        duplicate, not a second copy), set
        ``event.ingested``, and commit ``cursor`` atomically with them (or strictly after them)."""

    @abc.abstractmethod
    def search(self, query: SearchQuery) -> Iterator[Event]:
        """Stream matching events; memory is bounded by the page size, not by the result size."""

    @abc.abstractmethod
    def watermark(self) -> Watermark | None:
        """Position up to which every committed event is visible; None when the store has no events."""

    def watermark_step(self, after: Watermark | None, upto: Watermark, max_events: int) -> Watermark:
        """A watermark between ``after`` and ``upto`` covering at most about ``max_events`` events, so a
        large backlog can be evaluated in slices with bounded memory. Stores that cannot slice return
        ``upto`` (one slice)."""
        return upto

    # --- connector state ----------------------------------------------------------------------
    @abc.abstractmethod
    def get_cursor(self, connector_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def dead_letter(self, records: Sequence[DeadLetter], cursor: CursorUpdate | None = None) -> None:
        """Keep input that could not be normalised; with ``cursor`` so a skipped record is not re-read."""

    @abc.abstractmethod
    def list_dead_letters(self, limit: int = 100, *, newest: bool = False) -> list[DeadLetter]:
        """The first ``limit`` dead letters in commit order; with ``newest``, the last ``limit``, newest first
        (what ``wardwatch status`` shows: today's failure, not the first one ever kept)."""

    # --- rule state and alerts ----------------------------------------------------------------
    @abc.abstractmethod
    def get_checkpoint(self, rule_id: str) -> RuleCheckpoint: ...

    def get_checkpoints(self, rule_ids: Sequence[str]) -> dict[str, RuleCheckpoint]:
        """``get_checkpoint`` of many rules. A store overrides it with one query (an evaluation round of the
        SigmaHQ set asks for ~2,400 checkpoints; one round trip each was most of it on Elasticsearch)."""
        return {rule_id: self.get_checkpoint(rule_id) for rule_id in rule_ids}

    @abc.abstractmethod
    def commit_rule_run(self, checkpoint: RuleCheckpoint, alerts: Sequence[Alert]) -> None:
        """Upsert ``alerts`` (by id) and advance the checkpoint in one atomic step."""

    def commit_rule_runs(self, runs: Sequence[tuple[RuleCheckpoint, Sequence[Alert]]]) -> None:
        """Several rules' ``commit_rule_run``, in order. Each rule's alerts must still land no later than its
        checkpoint; a store overrides it to pay one commit (or request) per round instead of one per rule."""
        for checkpoint, alerts in runs:
            self.commit_rule_run(checkpoint, alerts)

    @abc.abstractmethod
    def get_alert(self, alert_id: str) -> Alert | None: ...

    def get_alerts(self, alert_ids: Sequence[str]) -> dict[str, Alert]:
        """The stored alerts among ``alert_ids``, by id (absent ids are left out). A store overrides it with
        one query: the evaluator asks once per round for every alert it is about to revise (issue 10: 6,720
        single reads were a third of the SigmaHQ evaluate phase)."""
        found = {}
        for alert_id in alert_ids:
            alert = self.get_alert(alert_id)
            if alert is not None:
                found[alert_id] = alert
        return found

    @abc.abstractmethod
    def latest_alert(self, rule_id: str, group_key: str) -> Alert | None:
        """The alert of this rule and group with the greatest ``last_trigger`` (episode merging)."""

    @abc.abstractmethod
    def list_alerts(self, rule_id: str | None = None, limit: int | None = None) -> list[Alert]:
        """Alerts ordered by (first_trigger, id)."""

    def count_alerts(self) -> int:
        """How many alerts the store holds. A store overrides it with a count query: ``run --once`` prints
        the total, and decoding every alert to count them was ~6% of a SigmaHQ run (issue 10)."""
        return len(self.list_alerts())

    # --- sink outbox --------------------------------------------------------------------------
    @abc.abstractmethod
    def pending_deliveries(self, sink: str, limit: int = 1000) -> list[Alert]:
        """Alert revisions not yet acknowledged by ``sink``, oldest first."""

    @abc.abstractmethod
    def mark_delivered(self, sink: str, alerts: Sequence[Alert]) -> None: ...

    # --- cases (engine/alerts/cases.py builds them; stores only keep them) -----------------------
    # Not abstract: a store without cases still satisfies the rest of the contract (cases then stay off).
    def put_cases(self, cases: Sequence[Case]) -> None:
        """Upsert ``cases`` (by id) with one case-outbox entry per (id, revision); storing a revision again
        refreshes it but keeps its place in the queue and its acknowledgements."""
        raise StoreError(f"the {self.kind} store does not support cases")

    def get_case(self, case_id: str) -> Case | None:
        raise StoreError(f"the {self.kind} store does not support cases")

    def get_cases(self, case_ids: Sequence[str]) -> dict[str, Case]:
        """The stored cases of ``case_ids`` (id -> case; unknown ids left out). A store may read them at once:
        the case builder asks for every case a delivery batch touches."""
        return {cid: case for cid in dict.fromkeys(case_ids) if (case := self.get_case(cid)) is not None}

    def list_cases(self, limit: int | None = None) -> list[Case]:
        """Cases ordered by (first_trigger, id)."""
        raise StoreError(f"the {self.kind} store does not support cases")

    def pending_case_deliveries(self, sink: str, limit: int = 1000) -> list[Case]:
        """Case revisions not yet acknowledged by ``sink``, oldest first."""
        raise StoreError(f"the {self.kind} store does not support cases")

    def mark_cases_delivered(self, sink: str, cases: Sequence[Case]) -> None:
        raise StoreError(f"the {self.kind} store does not support cases")

    # --- retention (engine.retention decides the cut-offs; stores only delete) -------------------
    # Not abstract: a store without retention still satisfies the rest of the contract.
    def event_datasets(self) -> list[str]:
        """Every dataset that has stored events (retention applies ``default`` to the unlisted ones)."""
        raise StoreError(f"the {self.kind} store does not support retention")

    def oldest_unevaluated(self, after: Watermark | None) -> str | None:
        """The smallest ``@timestamp`` among events ingested after ``after`` (None: every event), or None
        when there are none. A rule has not looked at those yet, so retention keeps them and their context."""
        raise StoreError(f"the {self.kind} store does not support retention")

    def purge_events(self, dataset: str, before: str, *, dry_run: bool = False,
                     batch_size: int = 5000) -> PurgeResult:
        """Delete ``dataset``'s events with ``@timestamp < before`` in units of at most ``batch_size``."""
        raise StoreError(f"the {self.kind} store does not support retention")

    def purge_alerts(self, before: str, *, dry_run: bool = False, batch_size: int = 5000) -> PurgeResult:
        """Delete alerts whose ``last_trigger < before``, with their outbox and delivery records."""
        raise StoreError(f"the {self.kind} store does not support retention")

    def purge_dead_letters(self, before: str, *, dry_run: bool = False, batch_size: int = 5000) -> PurgeResult:
        """Delete dead letters received before ``before``."""
        raise StoreError(f"the {self.kind} store does not support retention")

    def reclaim_space(self) -> str:
        """Give space freed by purges back (if the backend needs a step for it); a one-line description."""
        return "nothing to do"

    # --- lifecycle ----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {"store": self.kind, "ok": True}

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
