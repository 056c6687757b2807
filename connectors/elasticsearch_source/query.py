"""Reading an index pattern in ``event.ingested`` order: a point in time, ``search_after``, and a cursor that
neither misses nor doubles documents around refreshes.

Why this shape (docs/connectors/elasticsearch-source.md, "Cursor and overlap"):

* **A point in time (PIT) + ``search_after``**, sorted by the cursor field then ``_shard_doc``: pages of one
  consistent snapshot, cheap deep paging, and a total order even when many documents share a millisecond.
* **The cursor field is ``event.ingested``** (the ingest pipeline's clock), not ``@timestamp``: a device that
  sends late, or an agent that catches up after an outage, writes old ``@timestamp`` values *now*; ordered
  by event time they would fall behind a cursor that already passed them.
* **An overlap window.** A document stamped at ``t`` becomes searchable only after the next refresh (1 s by
  default, more under load, plus ingest-pipeline and bulk lag), so a snapshot taken at ``t + ε`` can miss
  it while already holding later ones. Each new snapshot therefore starts ``overlap`` before the highest
  cursor time seen (default 2 minutes, far above a refresh interval).
* **The ids already emitted inside the overlap** are in the cursor, so what the overlap re-reads is skipped,
  not doubled. The set is bounded: only ids whose cursor time is at or after ``highest - overlap`` are kept
  (its size is roughly the event rate times the overlap).
* **The re-read is cheap.** The part of a fresh snapshot up to the highest time already emitted is paged
  without ``_source``; only hits not in the id set are fetched in full (one ``mget`` per page).
* **Inside one snapshot** the next page continues with ``search_after`` (the PIT id and the last sort values
  are in the cursor), so a backlog is read once, not once per page. A snapshot that has no more pages is
  closed; the next poll opens a fresh one from ``highest - overlap``. A PIT that expired or was closed
  (``keep_alive`` passed, a node restart) is reopened the same way: the overlap and the id set make that
  lossless and double-free.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import elasticsearch
from elasticsearch import Elasticsearch

CURSOR_VERSION = 1


def doc_key(index: str, doc_id: str) -> str:
    """A short key of a document for the cursor's id set (64 bits: collisions are not a practical concern
    within one overlap window, and the cursor stays small)."""
    return hashlib.blake2b(f"{index}\x00{doc_id}".encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


@dataclass
class CursorState:
    """The cursor as the connector works with it; ``to_dict``/``load`` are its committed JSON form."""

    #: highest cursor-field time (epoch ms) of any document emitted so far; None: nothing yet
    high_ms: int | None = None
    #: doc_key -> cursor time (ms) of documents emitted at or after ``high_ms - overlap``
    seen: dict[str, int] = field(default_factory=dict)
    #: the open snapshot: PIT id, the lower bound it was opened with, the sort values of the last hit read
    pit: str | None = None
    pit_since_ms: int | None = None
    after: list[Any] | None = None
    #: the snapshot's re-read window ends here (``high_ms`` when it was opened): pages up to it are fetched
    #: without ``_source`` and only the documents not emitted yet are fetched in full
    reread_to_ms: int | None = None

    @classmethod
    def load(cls, cursor: Mapping[str, Any] | None) -> "CursorState":
        """A private copy of a committed cursor (an unknown or damaged one starts from the beginning)."""
        if not cursor or cursor.get("v") != CURSOR_VERSION:
            return cls()
        seen = cursor.get("seen")
        after = cursor.get("after")
        high = cursor.get("high_ms")
        since = cursor.get("pit_since_ms")
        reread = cursor.get("reread_to_ms")
        pit = cursor.get("pit")
        if not isinstance(seen, dict) or not all(type(v) is int for v in seen.values()):
            seen = {}
        if not (isinstance(pit, str) and isinstance(after, list) and type(since) in (int, type(None))):
            pit, after, since = None, None, None  # no usable snapshot: a fresh one from high - overlap
        return cls(high_ms=high if type(high) is int else None, seen={str(k): v for k, v in seen.items()},
                   pit=pit, pit_since_ms=since, after=list(after) if after is not None else None,
                   reread_to_ms=reread if type(reread) is int and pit is not None else None)

    def to_dict(self) -> dict[str, Any]:
        return {"v": CURSOR_VERSION, "high_ms": self.high_ms, "seen": dict(self.seen), "pit": self.pit,
                "pit_since_ms": self.pit_since_ms, "after": self.after, "reread_to_ms": self.reread_to_ms}

    def since_ms(self, overlap_ms: int) -> int | None:
        """Where a fresh snapshot starts: ``overlap`` before the highest time seen."""
        return None if self.high_ms is None else self.high_ms - overlap_ms

    def emitted(self, key: str, at_ms: int) -> bool:
        """Record a document as emitted; False when it already was (an overlap re-read)."""
        if key in self.seen:
            return False
        self.seen[key] = at_ms
        if self.high_ms is None or at_ms > self.high_ms:
            self.high_ms = at_ms
        return True

    def trim(self, overlap_ms: int) -> None:
        """Forget ids that a fresh snapshot can no longer return (older than ``high - overlap``)."""
        since = self.since_ms(overlap_ms)
        if since is not None:
            self.seen = {k: v for k, v in self.seen.items() if v >= since}

    def start_snapshot(self, pit: str, overlap_ms: int) -> None:
        """A fresh snapshot from ``high - overlap``; what lies up to ``high`` is a re-read."""
        self.pit, self.pit_since_ms, self.after = pit, self.since_ms(overlap_ms), None
        self.reread_to_ms = self.high_ms

    def in_reread(self) -> bool:
        """Is the next page still inside the re-read window (documents mostly emitted already)?"""
        if self.reread_to_ms is None:
            return False
        if self.after and type(self.after[0]) is int and self.after[0] > self.reread_to_ms:
            self.reread_to_ms = None
            return False
        return True

    def end_snapshot(self) -> None:
        self.pit = self.pit_since_ms = self.after = self.reread_to_ms = None


class PitExpired(Exception):
    """The cursor's PIT is gone (expired, closed, node restarted): reopen from the cursor."""


@dataclass
class PageRequest:
    """What every page asks for: the pattern, the cursor field, the ``_source`` filter."""

    index: str
    cursor_field: str
    keep_alive: str
    source_includes: list[str] | None = None


def open_snapshot(es: Elasticsearch, request: PageRequest) -> str:
    """A new PIT over the pattern (its id)."""
    response = es.open_point_in_time(index=request.index, keep_alive=request.keep_alive,
                                     expand_wildcards="open", ignore_unavailable=False)
    return str(response["id"])


def close_snapshot(es: Elasticsearch, pit: str | None) -> None:
    """Free a PIT now instead of at its keep-alive (best effort: an expired one is already gone)."""
    if not pit:
        return
    try:
        es.close_point_in_time(id=pit)
    except (elasticsearch.ApiError, elasticsearch.TransportError):
        pass


def search_page(es: Elasticsearch, request: PageRequest, state: CursorState, size: int,
                *, ids_only: bool = False) -> list[dict[str, Any]]:
    """The next ``size`` hits of the open snapshot after ``state.after``; :class:`PitExpired` when gone.

    ``ids_only``: hits without ``_source`` (the overlap re-read: most are skipped, see :func:`fetch_sources`)."""
    body: dict[str, Any] = {
        "size": size,
        "pit": {"id": state.pit, "keep_alive": request.keep_alive},
        # numeric_type: one order across date and date_nanos indices; unmapped_type: an index of the
        # pattern that never had the field (an old Winlogbeat index) is empty for us, not an error
        "sort": [{request.cursor_field: {"order": "asc", "numeric_type": "date", "unmapped_type": "date"}},
                 {"_shard_doc": "asc"}],
        "track_total_hits": False,
        "query": _query(request.cursor_field, state.pit_since_ms),
    }
    if ids_only:
        body["_source"] = False
    elif request.source_includes is not None:
        body["_source"] = {"includes": request.source_includes}
    if state.after is not None:
        body["search_after"] = state.after
    try:
        response = es.search(**body)
    except elasticsearch.NotFoundError as exc:
        if _pit_gone(exc):
            raise PitExpired(str(exc)) from None
        raise
    except elasticsearch.ApiError as exc:
        if _pit_gone(exc):
            raise PitExpired(str(exc)) from None
        raise
    new_pit = response.get("pit_id")
    if isinstance(new_pit, str):
        state.pit = new_pit  # the id may change between pages (it must be the latest one)
    return list(response["hits"]["hits"])


def fetch_sources(es: Elasticsearch, request: PageRequest, hits: list[dict[str, Any]]) -> None:
    """Fill in ``_source`` of ids-only hits (one ``mget``). A document deleted meanwhile keeps none."""
    docs = [{"_index": h["_index"], "_id": h["_id"]} for h in hits]
    options: dict[str, Any] = {}
    if request.source_includes is not None:
        options["source_includes"] = request.source_includes
    response = es.mget(docs=docs, **options)
    for hit, doc in zip(hits, response["docs"]):
        if doc.get("found"):
            hit["_source"] = doc.get("_source", {})


def _query(cursor_field: str, since_ms: int | None) -> dict[str, Any]:
    """Documents that have the cursor field, at or after the snapshot's lower bound."""
    filters: list[dict[str, Any]] = [{"exists": {"field": cursor_field}}]
    if since_ms is not None:
        filters.append({"range": {cursor_field: {"gte": since_ms, "format": "epoch_millis"}}})
    return {"bool": {"filter": filters}}


def _pit_gone(exc: elasticsearch.ApiError) -> bool:
    text = str(exc).lower()
    return "search_context_missing" in text or "no search context found" in text or (
        "point in time" in text and ("not found" in text or "expired" in text))


def count_without(es: Elasticsearch, index: str, cursor_field: str) -> int:
    """How many documents lack the cursor field (they are never read: the operator should know)."""
    response = es.count(index=index, expand_wildcards="open", ignore_unavailable=True,
                        query={"bool": {"must_not": [{"exists": {"field": cursor_field}}]}})
    return int(response.get("count", 0))


def resolve_names(es: Elasticsearch, index: str) -> list[str]:
    """Every index, alias and data stream the pattern names now (to refuse our own store's indices)."""
    response = es.indices.resolve_index(name=index, expand_wildcards="open")
    names: list[str] = []
    for kind in ("indices", "aliases", "data_streams"):
        names.extend(str(entry.get("name", "")) for entry in response.get(kind, []))
    for entry in response.get("aliases", []):
        names.extend(str(i) for i in entry.get("indices", []))
    for entry in response.get("data_streams", []):
        names.extend(str(b) for b in entry.get("backing_indices", []))
    return names
