"""A batch's events are gone before the next batch is read and before the cyclic collector runs again.

Why a user sees it: ingest pauses the collector for each batch (engine/gc_pause.py). A batch still alive
when the collector comes back on is young to it, so the first collection after every batch walked all of its
~5,000 events and their lists, freeing nothing: measured, ~1.5 us per event on the issue 11 FHIR bench with
encounter and baseline lookups (whose long-lived caches keep the allocation count above the threshold at
each batch boundary), and twice the peak memory of one batch (the last batch was held while the next one
was read and enriched).
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

from connectors.base import Batch, Connector
from engine.enrich import EnrichmentChain
from engine.ingest import ingest_connector
from engine.store.sqlite import SqliteStore


class Events(list):
    """A batch's event list that can be watched with a weak reference (a plain list cannot)."""


class WatchedConnector(Connector):
    """Five batches of 50 events; it records which earlier batch lists are still alive when asked."""

    type_name = "watched"

    def __init__(self) -> None:
        super().__init__("watched", {})
        self.lists: list[weakref.ref[Events]] = []
        self.alive_at_read: list[int] = []

    def alive(self) -> int:
        return sum(ref() is not None for ref in self.lists)

    def read(self, cursor: dict[str, Any] | None, max_events: int) -> Batch:
        n = (cursor or {}).get("n", 0)
        self.alive_at_read.append(self.alive())
        events = Events({"@timestamp": f"2026-11-02T10:{n:02d}:{i:02d}.000Z", "event.dataset": "test",
                         "event.id": f"e-{n}-{i}", "event.kind": "event", "tags": [f"t{i}"]}
                        for i in range(50))
        self.lists.append(weakref.ref(events))
        return Batch(events=events, cursor={"n": n + 1}, exhausted=n + 1 >= 5)


def test_no_batch_outlives_its_turn(tmp_path) -> None:
    store = SqliteStore(tmp_path / "w.db")
    connector = WatchedConnector()
    alive_at_collection: list[int] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            alive_at_collection.append(connector.alive())

    gc.collect()
    gc.callbacks.append(on_gc)
    threshold = gc.get_threshold()
    gc.set_threshold(1)  # a collection at the first allocation the collector is allowed to see
    try:
        stats = ingest_connector(store, connector, EnrichmentChain(), 50, workers=0)
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(on_gc)
        store.close()
    assert stats.written == 250
    assert connector.alive_at_read == [0, 0, 0, 0, 0]
    assert alive_at_collection, "the collector never ran: the test saw nothing"
    assert set(alive_at_collection) == {0}
