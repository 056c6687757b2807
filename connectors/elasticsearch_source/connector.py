"""``elasticsearch-source``: Windows, Cisco ASA, FortiGate and PAN-OS logs that hospitals already ship into
Elasticsearch with Winlogbeat or Elastic Agent, read from their indices or data streams.

Why a connector rather than "point Wardwatch's store at those indices": the store owns its indices (its
layout, ids and mappings); these belong to someone else's pipeline. So they are read like any other source
(a cursor the engine commits with the batch, dead letters for what cannot be mapped) and mapped into our
schema (:mod:`connectors.elasticsearch_source.mapping`). The paging and the cursor (PIT, ``search_after``,
``event.ingested`` with an overlap) are in :mod:`connectors.elasticsearch_source.query`.

It never writes to the cluster it reads (a read-only API key is enough: ``read`` and
``view_index_metadata`` on the pattern) and refuses a pattern that would read Wardwatch's own store.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, Mapping

import elasticsearch
import orjson

from connectors.base import Batch, Connector, ConnectorConfigError
from connectors.elasticsearch_source import client as es_client
from connectors.elasticsearch_source.mapping import MappingError, MappingSettings, map_document, windows_mapper
from connectors.elasticsearch_source.query import CursorState, PageRequest, PitExpired, close_snapshot
from connectors.elasticsearch_source.query import count_without, doc_key, fetch_sources, open_snapshot
from connectors.elasticsearch_source.query import resolve_names, search_page
from connectors.vpn.base import parse_timezone
from engine.events import Event, format_timestamp
from engine.logs import get_logger
from engine.plugins import InvalidOption, duration_option
from engine.store.base import DeadLetter

log = get_logger("wardwatch.connectors.elasticsearch_source")

MAX_DEAD_LETTER_RAW = 65536


@dataclass
class ElasticsearchSourceOptions(es_client.ConnectionOptions):
    """Options of ``elasticsearch-source`` (docs/connectors/elasticsearch-source.md); the connection keys
    (hosts, credentials, TLS) are :class:`~connectors.elasticsearch_source.client.ConnectionOptions`."""

    #: index, alias, data stream or pattern, comma-separated (``logs-system.security-*``)
    index: str = dataclasses.field(default=dataclasses.MISSING)  # type: ignore[assignment]
    #: fields (wildcards allowed) fetched from ``_source``; None: the whole document
    fields: list[str] | None = None
    #: ``event.dataset`` of documents that name none (no ``data_stream.dataset``/``event.dataset``)
    dataset: str = "elasticsearch"
    #: ``event.dataset`` of mapped Cisco ASA / FortiGate / PAN-OS documents (``product: vpn``)
    vpn_dataset: str = "vpn.auth"
    #: the event's time (``@timestamp``)
    time_field: str = "@timestamp"
    #: the field the cursor follows: the ingest time, so late events are not behind the cursor
    cursor_field: str = "event.ingested"
    #: how far before the highest cursor time each new snapshot starts (> refresh interval + ingest lag)
    overlap: float = duration_option(120.0)
    #: how long Elasticsearch keeps a snapshot between two pages
    keep_alive: float = duration_option(60.0)
    #: documents per search page
    batch_size: int = 1000
    #: the device's time zone for vendor times without an offset (``event.original`` re-parsed)
    timezone: str = "UTC"
    #: Wardwatch's store index prefix (``store.elasticsearch.index_prefix``): those indices are refused
    store_index_prefix: str = "wardwatch"

    def __post_init__(self) -> None:
        for key in ("index", "dataset", "vpn_dataset", "time_field", "cursor_field", "store_index_prefix"):
            if not getattr(self, key):
                raise InvalidOption(key, "must be a non-empty string")
        if self.batch_size < 1 or self.batch_size > 10000:
            raise InvalidOption("batch_size", "must be 1..10000 (Elasticsearch's page limit)")
        if self.keep_alive < 1:
            raise InvalidOption("keep_alive", "must be at least 1s")
        if self.fields is not None and not all(self.fields):
            raise InvalidOption("fields", "must be a list of non-empty field names")
        try:
            parse_timezone(self.timezone)
        except ValueError as exc:
            raise InvalidOption("timezone", str(exc)) from None
        if "/" in self.index or "\\" in self.index:
            raise InvalidOption("index", f"{self.index!r} is not an index name or pattern (no '/' or '\\')")
        for part in self.index.split(","):
            if own_index(part.strip(), self.store_index_prefix):
                raise InvalidOption("index", f"{part.strip()!r} would read Wardwatch's own store indices "
                                             f"({self.store_index_prefix}-*); name the source indices")
        es_client.check_connection_options(self)


def own_index(name: str, prefix: str) -> bool:
    """True when ``name`` (a pattern part or a resolved name) is or may expand to a store index."""
    if name.startswith("-"):  # "-wardwatch-*" excludes those indices: exactly what we want
        return False
    if name in ("*", "_all"):
        return True
    if name.startswith(f"{prefix}-"):
        return True
    star = name.find("*")
    return star >= 0 and f"{prefix}-".startswith(name[:star])


class ElasticsearchSourceConnector(Connector):
    """Reads an index pattern in ``event.ingested`` order and maps each document into our schema."""

    type_name: ClassVar[str] = "elasticsearch-source"
    summary: ClassVar[str] = "Winlogbeat / Elastic Agent documents already in Elasticsearch (PIT + search_after)"
    source_option: ClassVar[str] = "index"
    Options: ClassVar[type] = ElasticsearchSourceOptions

    def __init__(self, name: str, options: Mapping[str, Any]):
        super().__init__(name, options)
        opts: ElasticsearchSourceOptions = self.settings
        self.opts = opts
        try:
            self.es = es_client.build_client(opts)
        except InvalidOption as exc:
            raise ConnectorConfigError(f"connector {name!r}: {exc}") from None
        self.where = es_client.where(opts.hosts)
        self.overlap_ms = int(opts.overlap * 1000)
        self.request = PageRequest(index=opts.index, cursor_field=opts.cursor_field,
                                   keep_alive=f"{max(1, int(opts.keep_alive))}s",
                                   source_includes=self._includes(opts))
        self.mapping = MappingSettings(dataset=opts.dataset, time_field=opts.time_field, timezone=opts.timezone,
                                       vpn_dataset=opts.vpn_dataset)
        self.windows = windows_mapper()
        self._checked = False

    @staticmethod
    def _includes(opts: ElasticsearchSourceOptions) -> list[str] | None:
        """``fields`` plus what every event needs: its time, its dataset, its Windows identity."""
        if opts.fields is None:
            return None
        needed = [opts.time_field, opts.cursor_field, "data_stream.dataset", "event.dataset",
                  "winlog.computer_name", "winlog.channel", "winlog.record_id"]
        return list(dict.fromkeys([*opts.fields, *needed]))

    # --- reading ----------------------------------------------------------------------------------------
    def read(self, cursor: dict[str, Any] | None, max_events: int) -> Batch:
        if max_events <= 0:
            return Batch(cursor=CursorState.load(cursor).to_dict(), exhausted=False)
        state = CursorState.load(cursor)
        batch = Batch(cursor=None, exhausted=True)
        try:
            if not self._checked:
                self._check_target()
            batch.exhausted = self._fill(state, batch, max_events)
        except (elasticsearch.ConnectionError, elasticsearch.ConnectionTimeout) as exc:
            return self._unavailable(cursor, f"Elasticsearch at {self.where} is unreachable "
                                             f"({type(exc).__name__})")
        except elasticsearch.ApiError as exc:
            return self._unavailable(cursor, self._api_problem(exc))
        except elasticsearch.TransportError as exc:
            return self._unavailable(cursor, f"Elasticsearch at {self.where}: {type(exc).__name__}")
        except PitExpired:
            return self._unavailable(cursor, f"Elasticsearch at {self.where} dropped two points in time in a "
                                             f"row (keep_alive {self.request.keep_alive}; node restarts?)")
        state.trim(self.overlap_ms)
        batch.cursor = state.to_dict()
        return batch

    def _unavailable(self, cursor: Mapping[str, Any] | None, reason: str) -> Batch:
        """Nothing read, the committed cursor unchanged: the next poll retries from where we were."""
        return Batch(cursor=CursorState.load(cursor).to_dict(), exhausted=True,
                     unavailable=f"connector {self.name!r}: {reason}")

    def _api_problem(self, exc: elasticsearch.ApiError) -> str:
        status = getattr(exc, "status_code", None) or getattr(getattr(exc, "meta", None), "status", None)
        kind = getattr(exc, "error", "") or type(exc).__name__
        if status in (401, 403):
            return (f"Elasticsearch at {self.where} refused the credentials for index {self.opts.index!r} "
                    f"(HTTP {status}; the key needs read and view_index_metadata)")
        if "index_not_found" in str(kind) or status == 404:
            return f"index {self.opts.index!r} does not exist on {self.where}"
        return f"Elasticsearch at {self.where} answered HTTP {status} ({kind})"

    def _check_target(self) -> None:
        """Once per instance: never our own store; say when documents lack the cursor field."""
        own = sorted({n for n in resolve_names(self.es, self.opts.index)
                      if own_index(n.removeprefix(".ds-"), self.opts.store_index_prefix)})
        if own:
            raise ConnectorConfigError(
                f"connector {self.name!r}: index {self.opts.index!r} matches Wardwatch's own store indices "
                f"({', '.join(own[:3])}{', ...' if len(own) > 3 else ''}); name the source indices only")
        missing = count_without(self.es, self.opts.index, self.opts.cursor_field)
        if missing:
            log.warning("documents without the cursor field are not read", connector=self.name,
                        count=missing, cursor_field=self.opts.cursor_field)
        self._checked = True

    def _fill(self, state: CursorState, batch: Batch, max_events: int) -> bool:
        """Add up to ``max_events`` events/dead letters to ``batch``; True when the source is exhausted."""
        taken = 0
        reopened = False
        while taken < max_events:
            if state.pit is None:
                state.start_snapshot(open_snapshot(self.es, self.request), self.overlap_ms)
            size = min(self.opts.batch_size, max_events - taken)
            ids_only = state.in_reread()
            try:
                hits = search_page(self.es, self.request, state, size, ids_only=ids_only)
            except PitExpired:
                if reopened:
                    raise
                log.info("point in time expired, reopening from the cursor", connector=self.name)
                state.end_snapshot()
                reopened = True
                continue
            if ids_only:
                fresh = [h for h in hits if doc_key(str(h.get("_index")), str(h.get("_id"))) not in state.seen]
                if fresh:  # late-refreshed documents: the reason for the overlap
                    fetch_sources(self.es, self.request, fresh)
            for hit in hits:
                if ids_only and "_source" not in hit:  # emitted already (or deleted since the snapshot)
                    state.after = hit.get("sort") or state.after
                    continue
                taken += self._take(hit, state, batch)
            if len(hits) < size:
                close_snapshot(self.es, state.pit)
                state.end_snapshot()
                return True
        return False

    def _take(self, hit: dict[str, Any], state: CursorState, batch: Batch) -> int:
        """One hit: skipped (already emitted inside the overlap) -> 0, else an event or a dead letter -> 1."""
        sort = hit.get("sort") or []
        state.after = sort
        at_ms = sort[0] if sort and type(sort[0]) is int else (state.high_ms or 0)
        index, doc_id = str(hit.get("_index", "")), str(hit.get("_id", ""))
        if not state.emitted(doc_key(index, doc_id), at_ms):
            return 0
        try:
            batch.events.append(self.map(hit))
        except MappingError as exc:
            batch.dead_letters.append(self._dead(hit, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a mapping bug must cost one document, not the source
            log.error("unexpected error mapping a document", connector=self.name, error=type(exc).__name__)
            batch.dead_letters.append(self._dead(hit, f"internal error: {type(exc).__name__}"))
        return 1

    def map(self, hit: Mapping[str, Any]) -> Event:
        """One hit -> an event (:class:`MappingError` when it cannot be one)."""
        return map_document(hit, self.mapping, self.windows)

    def _dead(self, hit: Mapping[str, Any], reason: str) -> DeadLetter:
        raw = orjson.dumps(hit.get("_source"), default=str).decode("utf-8")[:MAX_DEAD_LETTER_RAW]
        return DeadLetter(source=self.source_identity, reason=reason,
                          location=f"{hit.get('_index')}/{hit.get('_id')}", raw=raw,
                          received_at=format_timestamp(datetime.now(timezone.utc)))

    def close(self) -> None:
        self.es.close()
