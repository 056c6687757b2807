"""What ``wardwatch rules list`` reads from the Elasticsearch store: the same reads as
:mod:`engine.store.sqlite_overview`, as one search each (never one request per rule)."""

from __future__ import annotations

from typing import Any, Sequence


class EsOverviewMixin:
    def checkpoint_updated(self, rule_ids: Sequence[str]) -> dict[str, str]:
        """rule id -> when its checkpoint state record was last written (rules never run are absent)."""
        ids = list(rule_ids)
        if not ids:
            return {}
        self._refresh(self.names["state"])  # type: ignore[attr-defined]
        resp: Any = self._call(lambda: self.es.search(  # type: ignore[attr-defined]
            index=self.names["state"], size=len(ids), track_total_hits=False,  # type: ignore[attr-defined]
            query={"bool": {"filter": [{"term": {"kind": "checkpoint"}}, {"terms": {"key": ids}}]}},
            source=["key", "updated"]), what="read checkpoints")
        return {h["_source"]["key"]: h["_source"]["updated"] for h in resp["hits"]["hits"]}

    def watermark_time(self, watermark: str | None) -> str | None:
        """An Elasticsearch watermark is an ingest time already."""
        return watermark

    def newest_ingested(self) -> str | None:
        """The greatest ``event.ingested`` of the events (a max aggregation; None: no events)."""
        from engine.store import es_layout as layout

        pattern = layout.events_pattern(self.prefix)  # type: ignore[attr-defined]
        self._refresh(pattern)  # type: ignore[attr-defined]
        resp: Any = self._call(lambda: self.es.search(  # type: ignore[attr-defined]
            index=pattern, size=0, track_total_hits=False, allow_no_indices=True, ignore_unavailable=True,
            aggs={"newest": {"max": {"field": "event.ingested"}}}), what="newest ingest time")
        value = resp.get("aggregations", {}).get("newest", {}).get("value_as_string")
        if value is None:
            return None
        from engine.events import normalise_timestamp

        return normalise_timestamp(value)

    def alert_counts(self, since: str) -> dict[str, int]:
        """rule id -> alerts whose last trigger is at or after ``since`` (a terms aggregation)."""
        self._refresh(self.names["alerts"])  # type: ignore[attr-defined]
        resp: Any = self._call(lambda: self.es.search(  # type: ignore[attr-defined]
            index=self.names["alerts"], size=0, track_total_hits=False,  # type: ignore[attr-defined]
            query={"range": {"last_trigger": {"gte": since}}},
            aggs={"rules": {"terms": {"field": "rule_id", "size": 65536}}}), what="count alerts")
        return {b["key"]: int(b["doc_count"]) for b in resp["aggregations"]["rules"]["buckets"]}
