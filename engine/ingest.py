"""Moving one connector's data into the store: read -> enrich -> write(batch + cursor).

The cursor is committed in the same store call as the events it covers, so a crash anywhere leaves the
store either before or after the whole batch. Dead letters are written before the events of their batch;
a crash in between may record the same dead letter twice, never lose one (they are diagnostics, not
detections).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from connectors.base import Connector
from engine.enrich import EnrichmentChain
from engine.logs import get_logger
from engine.store.base import CursorUpdate, Store

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

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def ingest_connector(
    store: Store,
    connector: Connector,
    enrichment: EnrichmentChain,
    batch_size: int,
    max_batches: int | None = None,
    on_batch: Callable[[IngestStats], Any] | None = None,
) -> IngestStats:
    """Read until the connector is exhausted (or ``max_batches``); return what happened."""
    stats = IngestStats(connector.name)
    started = time.monotonic()
    cursor = store.get_cursor(connector.name)
    while max_batches is None or stats.batches < max_batches:
        batch = connector.read(cursor, batch_size)
        update = CursorUpdate(connector.name, batch.cursor) if batch.cursor is not None else None
        events = enrichment.enrich_all(batch.events)
        if batch.dead_letters:
            store.dead_letter(batch.dead_letters, None if events else update)
            for letter in batch.dead_letters:
                log.warning("dead letter", connector=connector.name, location=letter.location, reason=letter.reason)
        if events:
            result = store.write(events, update)
            stats.written += result.written
            stats.duplicates += result.duplicates
        elif update is not None and not batch.dead_letters and batch.cursor != cursor:
            store.write([], update)
        acknowledge = getattr(connector, "acknowledge", None)
        if callable(acknowledge) and batch.cursor is not None:
            acknowledge(batch.cursor)
        stats.events += len(events)
        stats.dead_letters += len(batch.dead_letters)
        stats.batches += 1
        if batch.cursor is not None:
            cursor = batch.cursor
        if on_batch is not None:
            on_batch(stats)
        if batch.exhausted:
            break
    stats.seconds = time.monotonic() - started
    return stats
