"""Moving one connector's data into the store: read -> enrich -> write(batch + cursor).

The cursor is committed in the same store call as the events it covers, so a crash anywhere leaves the
store either before or after the whole batch. Dead letters are written before the events of their batch;
a crash in between may record the same dead letter twice, never lose one (they are diagnostics, not
detections).

``ingest_once`` is the one-shot form (``run --once``, ``ingest``): it turns "could not read the source" and
"every record was rejected" into a ``SourceProblem`` the CLI prints as one line and exits 1 on, and records
it in the connector's persisted health so ``wardwatch status`` shows it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from connectors.base import Connector, ConnectorError
from engine.enrich import EnrichmentChain
from engine.errors import SourceUnavailable, WardwatchError
from engine.gc_pause import cyclic_gc_paused
from engine.health import HealthBook
from engine.ingest_worker import run_worker_pipeline, worker_refusal
from engine.logs import get_logger
from engine.malloc_tuning import keep_heap_between_batches
from engine.store.base import CursorUpdate, Store, StoreError

log = get_logger("wardwatch.ingest")


@dataclass
class IngestStats:
    connector: str
    events: int = 0
    written: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    batches: int = 0
    seconds: float = 0.0
    #: The reason the source could not be reached on its last read (``Batch.unavailable``), or None.
    unavailable: str | None = None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def ingest_workers(option: int | str) -> int | None:
    """``scheduler.ingest_workers`` (0, 1 or "auto") as ``ingest_connector``'s ``workers`` argument.

    0 by default, by measurement: on the shared 2-core machine the worker was slower (docs/benchmarks.md,
    "Embedded pipeline"): it costs ~25% more CPU in all (the hand-over), which only pays when a core is free."""
    return None if option == "auto" else int(option)


def ingest_connector(
    store: Store,
    connector: Connector,
    enrichment: EnrichmentChain,
    batch_size: int,
    max_batches: int | None = None,
    on_batch: Callable[[IngestStats], Any] | None = None,
    *,
    workers: int | None = 0,
) -> IngestStats:
    """Read until the connector is exhausted (or ``max_batches``); return what happened.

    ``workers``: 0 reads in this process; 1 (or more: one is all that helps, the store is the other
    core) reads, maps, enriches and encodes in a forked worker process where that is safe
    (engine/ingest_worker.py); None chooses (a worker when safe, with 2+ CPUs and no other threads)."""
    stats = IngestStats(connector.name)
    started = time.monotonic()
    keep_heap_between_batches()  # each batch re-faulted the memory the last one freed (engine/malloc_tuning.py)
    cursor = store.get_cursor(connector.name)
    if workers != 0:
        refusal = worker_refusal(store, connector, enrichment, auto=workers is None)
        if refusal is None:
            run_worker_pipeline(store, connector, enrichment, batch_size, cursor, stats, max_batches,
                                commit_batch, on_batch)
            stats.seconds = time.monotonic() - started
            return stats
        if workers is not None:
            log.info("ingest worker not used", connector=connector.name, reason=refusal)
    while max_batches is None or stats.batches < max_batches:
        with cyclic_gc_paused():  # one batch: ~13% of the pipeline's CPU went to collections freeing nothing
            batch = _ingest_batch(store, connector, enrichment, batch_size, cursor, stats)
            read_cursor, exhausted = batch.cursor, batch.exhausted
            # the batch dies here, while the collector is off: alive when it comes back on, its thousands of
            # young events were walked by the next collection for nothing (~1.5 us per event with encounter
            # and baseline lookups), and held in memory while the next batch was read
            del batch
        if read_cursor is not None:
            cursor = read_cursor
        if on_batch is not None:
            on_batch(stats)
        if exhausted:
            break
    stats.seconds = time.monotonic() - started
    return stats


def _ingest_batch(store: Store, connector: Connector, enrichment: EnrichmentChain, batch_size: int,
                  cursor: Any, stats: IngestStats) -> Any:
    """Read, enrich and write one batch with its cursor; ``stats`` is updated. Returns the batch read."""
    batch = connector.read(cursor, batch_size)
    events = enrichment.enrich_all(batch.events)
    # per-user baselines (engine.baselines): flags from store-held history, facts committed with the batch
    baselines = enrichment.baselines
    facts = baselines.apply(events, store) if baselines is not None and events else []

    def write(update: CursorUpdate | None) -> tuple[int, int]:
        try:
            result = store.write(events + facts if facts else events, update)
        except BaseException:
            if baselines is not None:
                baselines.reset()  # its facts did not reach the store: relearn from what did
            raise
        if facts:  # facts hold only new knowledge: count them as written, never as duplicates
            written = max(0, result.written - len(facts))
            return written, len(events) - written
        return result.written, result.duplicates

    commit_batch(store, connector.name, batch, len(events), write, cursor, stats)
    acknowledge = getattr(connector, "acknowledge", None)
    if callable(acknowledge) and batch.cursor is not None:
        acknowledge(batch.cursor)
    return batch


def commit_batch(store: Store, connector_name: str, batch: Any, events: int,
                 write: Callable[[CursorUpdate | None], tuple[int, int]], cursor: Any, stats: IngestStats) -> None:
    """Store one read batch: its dead letters, then ``write(cursor update)`` of its ``events`` events
    (returns written, duplicates). One function for the in-process and the worker-process pipeline
    (engine/ingest_worker.py), so both commit a cursor with exactly the same data."""
    update = CursorUpdate(connector_name, batch.cursor) if batch.cursor is not None else None
    if batch.dead_letters:
        store.dead_letter(batch.dead_letters, None if events else update)
        for letter in batch.dead_letters:
            log.warning("dead letter", connector=connector_name, location=letter.location, reason=letter.reason)
    if events:
        written, duplicates = write(update)
        stats.written += written
        stats.duplicates += duplicates
    elif update is not None and not batch.dead_letters and batch.cursor != cursor:
        store.write([], update)
    stats.events += events
    stats.dead_letters += len(batch.dead_letters)
    stats.batches += 1
    stats.unavailable = batch.unavailable


@dataclass(frozen=True)
class SourceProblem:
    """Why a one-shot run could not trust what it read from one connector (the CLI's one error line)."""

    connector: str
    message: str

    def __str__(self) -> str:
        return self.message if repr(self.connector) in self.message else f"connector {self.connector!r}: {self.message}"


def ingest_once(
    store: Store,
    connector: Connector,
    enrichment: EnrichmentChain,
    batch_size: int,
    health: HealthBook,
    on_batch: Callable[[IngestStats], Any] | None = None,
    *,
    workers: int | None = 0,
) -> tuple[IngestStats, SourceProblem | None]:
    """Read a source to the end once; a source that cannot be read is a problem, not zero events.

    Store errors propagate (the store, not the source, failed); connector errors and I/O errors become the
    returned problem, as do an unreachable source and a run where every record was a dead letter.
    ``workers`` as for ``ingest_connector`` (the CLI passes ``scheduler.ingest_workers``).
    """
    try:
        stats = ingest_connector(store, connector, enrichment, batch_size, on_batch=on_batch, workers=workers)
    except StoreError:
        raise
    except (ConnectorError, WardwatchError, OSError) as exc:
        health.failed(connector.name, exc)
        return IngestStats(connector.name), SourceProblem(connector.name, str(exc) or type(exc).__name__)
    problem = None
    if stats.unavailable:
        problem = SourceProblem(connector.name, stats.unavailable)
    elif stats.dead_letters and not stats.events:
        problem = SourceProblem(connector.name, f"all {stats.dead_letters} record(s) rejected as dead letters, "
                                                "0 events (`wardwatch status` lists them)")
    if problem is None:
        health.ok(connector.name)
    else:
        health.failed(connector.name, SourceUnavailable(str(problem)))
    return stats, problem
