"""Outbox delivery: hand every undelivered alert (and case) revision to every sink, then acknowledge it.

Why here and not in each sink: the guarantees are the engine's, not a sink's. The store keeps one outbox
per sink name; a revision leaves it only when the sink returned (delivered) or the revision was
dead-lettered (``store.dead_letter`` with source ``sink:<name>``), so nothing is lost across a crash and a
sink that is down only delays its own outbox.

* ``SinkUnavailable`` (or an ``OSError``): the revision stays; the sink is skipped for a backoff that
  doubles per failed round (``retry.backoff`` .. ``retry.max_backoff``). After ``retry.attempts`` failed
  rounds on the *same* revision that one revision is dead-lettered and acknowledged, so one poison alert
  (one the peer answers 500 to forever) never blocks the rest.
* ``SinkRejected``: the peer refused the revision for good; it is dead-lettered and acknowledged at once.

Dead letters name the revision (``alert <id> revision <n>``) and the reason (HTTP status, peer origin);
never the payload, which names patients and staff: the alert itself is still in the store.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import orjson

from engine.alerts.exceptions import deliverable
from engine.alerts.sinks.base import RetryState
from engine.alerts.triage import notify_assignees
from engine.errors import SinkError, SinkRejected
from engine.gc_pause import cyclic_gc_paused
from engine.logs import get_logger
from engine.store.base import DeadLetter, Store

log = get_logger("wardwatch.sinks")

#: Internal consumers that only read the alert revisions they are handed (``@audit`` hashes them, ``@cases``
#: builds cases from them, both unfiltered or triage-blind so no overlay copy is made for them): within one
#: delivery round they are handed the same decoded object for the same stored revision, instead of one decode
#: each (issue 10: the SigmaHQ first run decoded its 6,720 alerts twice). Every other sink gets objects of its
#: own, so a sink that changed what it was handed cannot change what another consumer sees
#: (tests/test_delivery_shared.py holds both halves of that).
SHARED_DECODE_CONSUMERS = frozenset({"@audit", "@cases"})
#: Decoded revisions kept for one round at most; past it the memo starts again (sharing saves work, nothing
#: depends on it), so a first run over a long outbox history stays bounded.
SHARED_DECODE_CAP = 20_000


def deliver_pending(store: Store, sinks: Sequence[Any], batch: int = 1000,
                    clock: Callable[[], float] = time.monotonic) -> int:
    """Hand every undelivered revision to every sink; returns how many were delivered (not dead-lettered).

    Without a case builder among the sinks (``alerts.cases.enabled: false``) every sink gets alerts,
    whatever it asked for: nothing would ever fill the case outbox.

    The cyclic GC is paused for the round: it decodes and builds thousands of alert and case objects and
    makes no reference cycles, yet each collection walked everything the evaluation left alive (issue 10:
    0.1-0.14 of 0.55-0.7 CPU-s in a SigmaHQ ``run --once``; engine/gc_pause.py)."""
    cases_on = any(getattr(s, "name", "") == "@cases" for s in sinks)
    now = clock()
    delivered = 0
    decoded: dict[str, Any] = {}  # stored alert revision (its JSON text) -> the one decoded object, this round
    with cyclic_gc_paused():
        for sink in sinks:
            wants = getattr(sink, "wants", frozenset({"alerts"})) if cases_on else frozenset({"alerts"})
            if not getattr(sink, "takes_cases", hasattr(sink, "deliver_cases")):
                wants = frozenset({"alerts"})
            if "alerts" in wants:
                delivered += _drain(store, sink, "alert", batch, now, decoded)
            if "cases" in wants:
                delivered += _drain(store, sink, "case", batch, now, decoded)
        notify_assignees(store, sinks)  # a new revision of an assigned alert or case: tell the assignee
    return delivered


def _streams(store: Store, sink: Any, record: str, decoded: dict[str, Any]
             ) -> tuple[Callable[[int], list[Any]], Callable[[list[Any]], None], Callable[[list[Any]], None]]:
    """(fetch, hand over, acknowledge) of one outbox stream. The hand-over goes through the triage
    exceptions (engine/alerts/exceptions.py), which also give each revision its current ``status`` and
    ``assignee`` so a ticket or a chat message says who has it (the stored revision is not changed).
    ``decoded``: the round's shared decodes, used for ``SHARED_DECODE_CONSUMERS`` on a store that offers it
    (``reuses_decoded_alerts``: its ``pending_deliveries`` takes ``decoded=``)."""
    name = sink.name
    if record == "alert":
        if name in SHARED_DECODE_CONSUMERS and getattr(store, "reuses_decoded_alerts", False):
            def fetch(limit: int) -> list[Any]:
                if len(decoded) > SHARED_DECODE_CAP:
                    decoded.clear()
                return store.pending_deliveries(name, limit=limit, decoded=decoded)  # type: ignore[call-arg]
        else:
            def fetch(limit: int) -> list[Any]:
                return store.pending_deliveries(name, limit=limit)
        return fetch, deliverable(store, name, sink.deliver), lambda done: store.mark_delivered(name, done)
    return (lambda limit: store.pending_case_deliveries(name, limit=limit),
            deliverable(store, name, sink.deliver_cases),
            lambda done: store.mark_cases_delivered(name, done))


def _drain(store: Store, sink: Any, record: str, batch: int, now: float, decoded: dict[str, Any]) -> int:
    """Fetch, hand over, acknowledge, until this sink's outbox stream is empty or the sink fails."""
    states: dict[str, RetryState] | None = getattr(sink, "retry_state", None)
    state = states.setdefault(record, RetryState()) if states is not None else None
    if state is not None and now < state.not_before:
        return 0  # still backing off after a failed round
    ready = getattr(sink, "ready", None)
    if ready is not None and not ready(record):
        return 0  # a digest sink's period is still open: its revisions wait, unacknowledged, in the outbox
    fetch, hand, acknowledge = _streams(store, sink, record, decoded)
    # ``fetch_size``: an internal consumer that works per fetched batch (the case builder rebuilds every case
    # a batch touches from all its members) reads more at once; it still hands over and acknowledges per fetch
    fetched = max(batch, int(getattr(sink, "fetch_size", batch)))
    size = max(1, min(fetched, getattr(sink, "batch_size", fetched)))
    delivered = 0
    while True:
        pending = fetch(fetched)
        if not pending:
            break
        for start in range(0, len(pending), size):
            chunk = pending[start:start + size]
            try:
                hand(chunk)
            except SinkRejected as exc:
                _dead_letter(store, sink.name, record, chunk, f"rejected: {exc}")
                acknowledge(chunk)
                continue
            except (SinkError, OSError) as exc:  # SinkUnavailable, or an error the sink did not classify
                _failed(store, sink, record, chunk[0], exc, state, now, acknowledge)
                return delivered
            acknowledge(chunk)
            delivered += len(chunk)
            if state is not None:
                state.head, state.failures, state.not_before = None, 0, 0.0
        if len(pending) < fetched:
            break
    return delivered


def _failed(store: Store, sink: Any, record: str, head: Any, exc: Exception, state: RetryState | None,
            now: float, acknowledge: Callable[[list[Any]], None]) -> None:
    """A transient failure: back off, or dead-letter the head revision once it has failed too often."""
    if state is None:  # a sink without the base class: retried next round, as before the contract
        log.error("sink delivery failed; will retry", sink=sink.name, error=str(exc))
        return
    key = (head.id, head.revision)
    state.failures = state.failures + 1 if state.head == key else 1
    state.head = key
    if state.failures >= sink.retry.attempts:
        _dead_letter(store, sink.name, record, [head],
                     f"undeliverable after {state.failures} attempts: {exc}")
        acknowledge([head])
        state.head, state.failures, state.not_before = None, 0, 0.0
        return
    asked = getattr(exc, "retry_after", None) or 0.0  # the peer's Retry-After, where it gave one
    delay = min(max(sink.retry.delay(state.failures), asked), sink.retry.max_backoff)
    state.not_before = now + delay
    log.warning("sink delivery failed; will retry", sink=sink.name, error=str(exc), attempt=state.failures,
                retry_in_seconds=round(delay, 3))


def _dead_letter(store: Store, name: str, record: str, items: Sequence[Any], reason: str) -> None:
    """Park revisions the sink will never take. Only ids: the alert (with its PHI) stays in the store."""
    store.dead_letter([DeadLetter(source=f"sink:{name}", reason=reason,
                                  location=f"{record} {item.id} revision {item.revision}",
                                  raw=orjson.dumps({"record": record, "id": item.id,
                                                    "revision": item.revision}).decode())
                       for item in items])
    log.error("sink dead-lettered revisions", sink=name, count=len(items), reason=reason)


def send_notice(sinks: Sequence[Any], notice: Mapping[str, Any]) -> int:
    """Hand one notice (deadline reminder, assignee update) to every sink with ``notices: true``.

    Notices are not in the outbox: a reminder that comes late is worth less than the next one, so a
    failing sink logs and the others still get it. Returns how many sinks took it."""
    taken = 0
    for sink in sinks:
        if not getattr(getattr(sink, "settings", None), "notices", False):
            continue
        try:
            sink.send_notice(sink.policy.apply(notice))
            taken += 1
        except (SinkError, OSError) as exc:
            log.warning("sink notice failed", sink=sink.name, kind=notice.get("kind"), error=str(exc))
    return taken
