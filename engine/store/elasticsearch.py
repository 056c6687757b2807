"""The Elasticsearch store: events in monthly indices per dataset, state in small side indices.

Why this shape (details and trade-offs in docs/elasticsearch.md):

* **Idempotent writes.** ``_id`` = ``event.id`` and ``op_type: create``: a replay answers 409 per document,
  which we count as a duplicate instead of storing a second copy. The target index is a pure function of
  the event (dataset and the month of its ``@timestamp``, ``es_layout.events_index``), so a replay always
  meets its first copy; retention then drops whole expired months.
* **Cursor after data.** Elasticsearch has no multi-document transaction, so a connector cursor is written
  strictly after every document of its batch was acknowledged (and rejected ones were dead-lettered). A crash
  in between re-reads the batch, which lands as duplicates.
* **Watermark = ingest time.** There is no commit sequence; ``event.ingested`` is stamped by this store from
  a clock that never hands out a stamp at or below a watermark it already issued, writes in flight hold the
  watermark back, and ``watermark()`` refreshes the event indices so everything at or before it is
  searchable. ``ingest_lag_seconds`` covers *other* processes writing to the same prefix (their in-flight
  bulks are invisible to us).
* **The store narrows, the engine decides.** ``prefilter`` (a Lucene query string from pySigma's
  Elasticsearch backend) runs as ``query_string`` over keyword fields with a lowercase normalizer, so it is
  case-insensitive like Sigma; the engine re-checks every hit.
* **Optimistic concurrency on state.** Cursors and checkpoints are written with ``if_seq_no`` /
  ``if_primary_term`` of the version this store last saw: two engines never silently overwrite each other
  (``StoreConflict``).
"""

from __future__ import annotations

import itertools
from collections import deque
import logging
import random
import threading
import time
import uuid
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import orjson
from elastic_transport import Transport

import elasticsearch
from elasticsearch import Elasticsearch

from engine.alerts.case_model import Case
from engine.alerts.model import Alert
from engine.events import DATASET, EVENT_ID, INGESTED, TIMESTAMP, Event, format_timestamp, from_timestamp_ms
from engine.events import parse_timestamp, timestamp_ms
from engine.store import es_layout as layout
from engine.store.es_audit import EsAuditMixin
from engine.store.es_overview import EsOverviewMixin
from engine.store.es_triage import EsTriageMixin
from engine.store.base import (
    CursorUpdate,
    DeadLetter,
    PurgeResult,
    RuleCheckpoint,
    SearchQuery,
    Store,
    StoreConflict,
    StoreError,
    StoreUnavailable,
    Watermark,
    WriteResult,
    check_event,
)

__all__ = ["ElasticsearchStore", "SUPPORTED_MAJORS"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

SUPPORTED_MAJORS = (8, 9)
ALWAYS_RETURNED = (TIMESTAMP, EVENT_ID, DATASET)
_RETRY_STATUS = frozenset({429, 502, 503, 504})
_CLIENT_MAJOR = int(elasticsearch.__versionstr__.split(".")[0])


class _CompatTransport(Transport):
    """Rewrites the client's ``compatible-with=<client major>`` media types to the server's major.

    The 9.x Python client asks for ``compatible-with=9``, which an 8.x server rejects with 400
    ("Accept version must be either version 8 or 7"). Both 8.x and 9.x servers accept ``compatible-with=8``,
    so the first request (``GET /``) uses 8 and later requests use whatever the server is.
    """

    compat_major: int | None = 8

    def perform_request(self, method: str, target: str, *args: Any, headers: Any = None, **kwargs: Any) -> Any:
        major = self.compat_major
        if major is not None and major != _CLIENT_MAJOR and headers:
            old = f"compatible-with={_CLIENT_MAJOR}"
            new = f"compatible-with={major}"
            headers = type(headers)(headers) if not isinstance(headers, dict) else dict(headers)
            for key in list(headers.keys()):
                value = headers[key]
                if isinstance(value, str) and old in value:
                    headers[key] = value.replace(old, new)
        return super().perform_request(method, target, *args, headers=headers, **kwargs)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _ts(ms: int) -> str:
    return format_timestamp(from_timestamp_ms(ms))


class ElasticsearchStore(EsAuditMixin, EsOverviewMixin, EsTriageMixin, Store):
    kind = "elasticsearch"
    #: Kept in ``_source`` but not indexed (es_layout ``_OPAQUE``): a query on them matches nothing, so a
    #: rule that reads one must not be narrowed by a pushed-down query.
    unindexed_fields: frozenset[str] = frozenset({"event.original"})
    #: A rule's narrowing query longer than this (characters) is not sent: the store reads dataset + range.
    prefilter_max_chars: int = 16_384

    def __init__(
        self,
        hosts: Sequence[str] | str = ("http://127.0.0.1:9200",),
        *,
        api_key: str | tuple[str, str] | None = None,
        basic_auth: str | tuple[str, str] | None = None,
        ca_certs: str | None = None,
        ssl_assert_fingerprint: str | None = None,
        verify_certs: bool = True,
        request_timeout: float = 30,
        max_retries: int = 3,
        retry_backoff_seconds: float = 0.5,
        index_prefix: str = "wardwatch",
        refresh_on_write: bool = False,
        ingest_lag_seconds: float = 0.0,
        replicas: int = 1,
        bulk_chunk_docs: int = 5000,
        bulk_chunk_bytes: int = 20 * 1024 * 1024,
        search_page_size: int = 1000,
        prefilter_batch_rules: int = 25,
        prefilter_max_rules: int = 64,
    ) -> None:
        if isinstance(hosts, str):
            hosts = [hosts]
        if not hosts:
            raise ValueError("ElasticsearchStore needs at least one host URL")
        if not index_prefix or index_prefix != index_prefix.lower() or any(c in index_prefix for c in ' "*\\/<>|,#:?'):
            raise ValueError(f"index_prefix {index_prefix!r} must be a lowercase Elasticsearch index name part")
        if isinstance(basic_auth, str):
            user, sep, password = basic_auth.partition(":")
            if not sep:
                raise ValueError('basic_auth must be ("user", "password") or "user:password"')
            basic_auth = (user, password)
        self.hosts = list(hosts)
        self.prefix = index_prefix
        self.refresh_on_write = refresh_on_write
        self.ingest_lag_ms = int(round(ingest_lag_seconds * 1000))
        self.max_retries = max(0, int(max_retries))
        self.retry_backoff = float(retry_backoff_seconds)
        self.replicas = int(replicas)
        self.bulk_chunk_docs = int(bulk_chunk_docs)
        self.bulk_chunk_bytes = int(bulk_chunk_bytes)
        self.search_page_size = int(search_page_size)
        self.prefilter_batch_rules = int(prefilter_batch_rules)
        self.prefilter_max_rules = int(prefilter_max_rules)
        self.names = layout.state_indices(index_prefix)
        self._lock = threading.Lock()
        self._last_wm_ms = 0
        self._inflight: dict[int, int] = {}
        self._tokens = itertools.count()
        self._last_ordinal = 0
        self._versions: dict[str, tuple[int, int] | None] = {}
        self._has_events = False
        #: (dataset, field) pairs (and their "*" rollups) known to have held a value too long to index
        self._long_known: set[tuple[str, str]] = set()
        self._known_indices: set[str] = set()
        self._pit_supported = True
        self.monthly = True  # layout 2; False for a store created with one plain index per dataset (_install)
        self._where = ", ".join(_redact(h) for h in self.hosts)

        options: dict[str, Any] = {
            "request_timeout": request_timeout,
            # retries are ours (one policy for bulk items and whole requests, with backoff); see _call
            "max_retries": 0,
            "retry_on_timeout": False,
            "transport_class": _CompatTransport,
            "verify_certs": verify_certs,
        }
        if api_key is not None:
            options["api_key"] = api_key
        if basic_auth is not None:
            options["basic_auth"] = basic_auth
        if ca_certs is not None:
            options["ca_certs"] = ca_certs
        if ssl_assert_fingerprint is not None:
            options["ssl_assert_fingerprint"] = ssl_assert_fingerprint
        if not verify_certs:
            log.warning("TLS certificate verification is OFF for Elasticsearch at %s", self._where)
        try:
            self.es = Elasticsearch(self.hosts, **options)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"invalid Elasticsearch connection settings for {self._where}: {exc}") from None
        self._transport: _CompatTransport = self.es.transport  # type: ignore[assignment]
        try:
            self.server_version = self._connect()
            self._install()
            self._check_event_id_scheme()
        except BaseException:
            self.es.close()
            raise

    # --- connection -------------------------------------------------------------------------------
    def _connect(self) -> str:
        # `GET /_nodes/_local` first: the integ-test distribution has no rest-root module (no `GET /`), and a
        # 405 there would mark the node dead for a second in the client's pool. `GET /` is the fallback.
        version = flavour = ""
        try:
            nodes = self._call(lambda: self.es.nodes.info(node_id="_local", metric="_none"), what="connect")
            node = next(iter((nodes.get("nodes") or {}).values()), {})
            version = str(node.get("version") or "")
            flavour = str(node.get("build_flavor") or "")
        except StoreError as exc:
            if isinstance(exc, StoreUnavailable) or "credentials" in str(exc):
                raise
        if not version:
            info = self._call(lambda: self.es.info(), what="connect")
            version = str(info.get("version", {}).get("number", "?"))
            flavour = str(info.get("version", {}).get("build_flavor", ""))
        try:
            major = int(version.split(".")[0])
        except ValueError:
            raise StoreError(f"{self._where} did not report an Elasticsearch version (got {version!r})") from None
        if major < min(SUPPORTED_MAJORS):
            raise StoreError(
                f"Elasticsearch {version} at {self._where} is not supported: Wardwatch needs 8.x or 9.x")
        if major > max(SUPPORTED_MAJORS):
            log.warning("Elasticsearch %s is newer than Wardwatch was tested with (%s)", version,
                        "/".join(map(str, SUPPORTED_MAJORS)))
        # native media types when the server speaks the client's major, compatible-with=8 for 8.x
        self._transport.compat_major = None if major >= _CLIENT_MAJOR else major
        self.server_major = major
        self.server_flavour = flavour
        return version

    def _install(self) -> None:
        """Install or upgrade the events template, push additive mapping changes into existing event
        indices, and create the state indices."""
        prefix = self.prefix
        self._call(lambda: self.es.indices.put_index_template(
            name=layout.template_name(prefix), **layout.events_template(prefix, self.replicas)), what="install")
        existing = self._call(lambda: self.es.indices.get(
            index=layout.events_pattern(prefix), allow_no_indices=True, ignore_unavailable=True,
            expand_wildcards="open"), what="install")
        if existing:
            mappings = layout.events_mappings()
            try:
                # the pattern, not the names: hundreds of monthly indices overflow the 4 KB HTTP line
                self._call(lambda: self.es.indices.put_mapping(
                    index=layout.events_pattern(prefix), expand_wildcards="open", allow_no_indices=True,
                    **mappings), what="install")
            except StoreError as exc:
                raise StoreError(f"cannot upgrade the mappings of {prefix} event indices: {exc}") from None
            self._known_indices.update(existing)
            # A layout-1 store keeps its plain per-dataset indices: writing a replayed event into a monthly
            # index would miss its first copy and store it twice. See docs/elasticsearch.md ("Retention").
            legacy = sorted(n for n in existing if layout.index_month(n) is None)
            if legacy:
                self.monthly = False
                log.warning("%d event indices use layout 1 (one plain index per dataset); retention falls back "
                            "to delete-by-query there, see docs/elasticsearch.md", len(legacy))
        for key, mapping in layout.state_mappings().items():
            name = self.names[key]
            if self._ensure_index(name, mapping):
                self._call(lambda: self.es.indices.put_mapping(index=name, **mapping), what="install")

    def _ensure_index(self, name: str, mapping: Mapping[str, Any]) -> bool:
        """Create the one-shard state index ``name`` unless it exists; True when it was there already
        (also when another process created it at the same moment). Shared by the store's own state indices
        and the triage and audit mixins."""
        if self._call(lambda: self.es.indices.exists(index=name), what="install"):
            return True
        try:
            self.es.indices.create(index=name, mappings=mapping, settings={
                "index": {"number_of_shards": 1, "number_of_replicas": self.replicas}})
        except elasticsearch.ApiError as exc:
            if _error_type(exc) != "resource_already_exists_exception":
                raise self._translate(exc, "install") from None
            return True
        except elasticsearch.TransportError as exc:
            raise self._translate(exc, "install") from None
        return False

    def _check_event_id_scheme(self) -> None:
        """Record ``event_id_scheme`` in a cluster without events; refuse events that predate it (their
        connector-named ids would let every re-read record be stored a second time)."""
        from engine.identity import SCHEME

        if self._get_state("meta", "event_id_scheme") is not None:
            return
        pattern = layout.events_pattern(self.prefix)
        found = self._call(lambda: self.es.count(index=pattern, allow_no_indices=True, ignore_unavailable=True),
                           what="check event ids")
        if found.get("count", 0):
            raise StoreError(f"{self._where} (index prefix {self.prefix}): events were written with "
                             "connector-named ids (scheme 1); delete the indices and ingest again "
                             "(see docs/elasticsearch.md)")
        self._put_state("meta", "event_id_scheme", SCHEME)

    def _call(self, fn: Callable[[], _T], *, what: str) -> _T:
        """Run one request with our retry policy: connection errors, timeouts, 429 and 502/503/504 are
        retried with exponential backoff; after ``max_retries`` the store raises ``StoreUnavailable``."""
        attempt = 0
        while True:
            try:
                return fn()
            except elasticsearch.ApiError as exc:
                status = _status(exc)
                if status not in _RETRY_STATUS or attempt >= self.max_retries:
                    raise self._translate(exc, what, attempt + 1) from None
                reason: Any = exc
            except elasticsearch.TransportError as exc:  # connection refused/reset, timeout, TLS
                if attempt >= self.max_retries or isinstance(exc, elasticsearch.SSLError):
                    raise self._translate(exc, what, attempt + 1) from None
                reason = exc
            self._sleep(attempt)
            attempt += 1
            log.info("retrying Elasticsearch %s (attempt %d) after %s", what, attempt + 1, type(reason).__name__)

    def _sleep(self, attempt: int) -> None:
        delay = min(30.0, self.retry_backoff * (2 ** attempt))
        time.sleep(delay * (0.75 + random.random() / 2))

    def _translate(self, exc: Exception, what: str, attempts: int = 1) -> StoreError:
        tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}" if attempts > 1 else ""
        if isinstance(exc, elasticsearch.SSLError):
            return StoreUnavailable(f"TLS to Elasticsearch at {self._where} failed ({what}): {_short(exc)}")
        if isinstance(exc, elasticsearch.TransportError):
            return StoreUnavailable(
                f"cannot reach Elasticsearch at {self._where} ({what}{tries}): {_short(exc)}")
        if isinstance(exc, elasticsearch.ApiError):
            status = _status(exc)
            if status == 401:
                return StoreError(f"Elasticsearch at {self._where} rejected the credentials (401 Unauthorized); "
                                  "check api_key / basic_auth")
            if status == 403:
                return StoreError(f"Elasticsearch at {self._where} denied {what} (403 Forbidden): "
                                  f"{_short(exc)}; the user needs index and manage rights on {self.prefix}-*")
            if status in _RETRY_STATUS:
                return StoreUnavailable(f"Elasticsearch at {self._where} is overloaded or unavailable ({what}"
                                        f"{tries}): {status} {_short(exc)}")
            if status == 409:
                return StoreConflict(f"Elasticsearch version conflict ({what}): {_short(exc)}")
            return StoreError(f"Elasticsearch at {self._where} refused {what}: {status} {_short(exc)}")
        return StoreError(f"Elasticsearch {what} failed: {exc}")

    # --- events -------------------------------------------------------------------------------------
    def _stamp(self) -> tuple[int, int]:
        with self._lock:
            ms = max(_now_ms(), self._last_wm_ms + 1)
            token = next(self._tokens)
            self._inflight[token] = ms
            return token, ms

    def write(self, batch: Sequence[Event], cursor: CursorUpdate | None = None) -> WriteResult:
        for event in batch:
            check_event(event)
        result = WriteResult()
        token, ms = self._stamp()
        try:
            ingested = _ts(ms)
            pending: list[tuple[bytes, bytes, Event]] = []
            long_valued: set[tuple[str, str]] = set()
            for event in batch:
                doc = dict(event)
                doc[INGESTED] = ingested
                index = self._event_index(event)
                action = b'{"create":{"_index":' + orjson.dumps(index) + b',"_id":' + orjson.dumps(
                    event[EVENT_ID]) + b"}}\n"
                body = orjson.dumps(doc)
                if len(body) > layout.IGNORE_ABOVE:  # no string is longer than the document that holds it
                    long_valued.update(_long_fields(event))
                pending.append((action, body + b"\n", event))
            self._note_long_values(long_valued)
            rejected: list[tuple[Event, str, str]] = []
            for chunk in self._chunks(pending):
                self._bulk_chunk(chunk, result, rejected)
            if rejected:
                now = _ts(_now_ms())
                self._write_dead_letters([
                    DeadLetter(source=f"elasticsearch:{index}", reason=reason,
                               location=f"{index}/{event.get(EVENT_ID)}",
                               raw=orjson.dumps(event).decode(), received_at=now)
                    for event, index, reason in rejected])
                result.dead_lettered = len(rejected)
            if result.written or result.duplicates:
                self._has_events = True
            if cursor is not None:
                self._put_state("cursor", cursor.connector_id, cursor.value)
        finally:
            with self._lock:
                self._inflight.pop(token, None)
        return result

    # --- values too long to index ------------------------------------------------------------------------
    # A keyword value longer than ``ignore_above`` stays in ``_source`` but is not indexed, so no query on its
    # field can find it: a pushed-down prefilter would drop an event the rule matches (a SigmaHQ
    # ScriptBlockText of 13-20k characters, issue 10). The store records, before such an event is written,
    # which (dataset, field) held one; a search whose fields include one runs without its prefilter.
    def _note_long_values(self, pairs: set[tuple[str, str]]) -> None:
        """Persist the new (dataset, field) pairs with their rollups (dataset, *), (*, field), (*, *): every
        engine on this prefix sees them, also one that evaluates while another ingests."""
        rolled = {p for dataset, name in pairs for p in ((dataset, name), (dataset, "*"), ("*", name), ("*", "*"))}
        with self._lock:
            new = rolled - self._long_known
        if not new:
            return
        lines: list[dict[str, Any]] = []
        for doc_id, (dataset, name) in self._long_ids_of(new).items():
            lines.append({"index": {"_index": self.names["state"], "_id": doc_id}})
            lines.append({"kind": "long_values", "key": [dataset, name], "updated": _ts(_now_ms())})
        self._bulk_simple(lines, "record long values")
        with self._lock:
            self._long_known |= new

    def _long_ids_of(self, pairs: set[tuple[str, str]]) -> dict[str, tuple[str, str]]:
        return {self._state_id("long_values", orjson.dumps(list(pair)).decode()): pair for pair in sorted(pairs)}

    def _has_long_values(self, datasets: Sequence[str] | None, fields: Sequence[str] | None) -> bool:
        """Whether any of ``fields`` (None: any field) of ``datasets`` (None: any) ever held an unindexed
        value. Known pairs are answered from memory; the rest with one ``_mget`` (realtime, no refresh)."""
        wanted = {(d, f) for d in (datasets or ("*",)) for f in (fields or ("*",))}
        with self._lock:
            if wanted & self._long_known:
                return True
        found = self._mget(self.names["state"], list(self._long_ids_of(wanted)), "read long values")
        if not found:
            return False
        with self._lock:
            self._long_known |= {tuple(doc["_source"]["key"]) for doc in found.values()}  # type: ignore[misc]
        return True

    def _event_index(self, event: Event) -> str:
        if self.monthly:
            return layout.events_index(self.prefix, event[DATASET], event[TIMESTAMP])
        return layout.dataset_base(self.prefix, event[DATASET])

    def _dataset_indices(self, dataset: str) -> list[str]:
        """Index names/patterns that may hold ``dataset``'s events (plus its plain index on a layout-1 store)."""
        names = [layout.dataset_pattern(self.prefix, dataset)]
        if not self.monthly:
            names.append(layout.dataset_base(self.prefix, dataset))
        return names

    def _chunks(self, pending: list[tuple[bytes, bytes, Event]]) -> Iterator[list[tuple[bytes, bytes, Event]]]:
        chunk: list[tuple[bytes, bytes, Event]] = []
        size = 0
        for item in pending:
            item_size = len(item[0]) + len(item[1])
            if chunk and (len(chunk) >= self.bulk_chunk_docs or size + item_size > self.bulk_chunk_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(item)
            size += item_size
        if chunk:
            yield chunk

    def _bulk_chunk(self, chunk: list[tuple[bytes, bytes, Event]], result: WriteResult,
                    rejected: list[tuple[Event, str, str]]) -> None:
        attempt = 0
        todo = chunk
        while todo:
            body = b"".join(a + d for a, d, _ in todo)
            refresh = "wait_for" if self.refresh_on_write else None
            try:
                resp = self.es.bulk(operations=body, refresh=refresh)
            except elasticsearch.ApiError as exc:
                if _status(exc) not in _RETRY_STATUS or attempt >= self.max_retries:
                    raise self._translate(exc, "bulk write", attempt + 1) from None
                self._sleep(attempt)
                attempt += 1
                continue
            except elasticsearch.TransportError as exc:
                if attempt >= self.max_retries:
                    raise self._translate(exc, "bulk write", attempt + 1) from None
                self._sleep(attempt)
                attempt += 1
                continue
            retry: list[tuple[bytes, bytes, Event]] = []
            last_reason = ""
            for item, entry in zip(resp["items"], todo):
                info = item.get("create") or next(iter(item.values()))
                status = info.get("status", 0)
                if 200 <= status < 300:
                    result.written += 1
                    self._known_indices.add(info.get("_index", ""))
                elif status == 409:
                    result.duplicates += 1
                elif status in _RETRY_STATUS or status >= 500:
                    retry.append(entry)
                    last_reason = _item_reason(info)
                else:
                    rejected.append((entry[2], info.get("_index", ""), _item_reason(info)))
            if retry:
                if attempt >= self.max_retries:
                    raise StoreUnavailable(
                        f"Elasticsearch at {self._where} kept rejecting {len(retry)} documents after "
                        f"{attempt + 1} attempts: {last_reason}")
                self._sleep(attempt)
                attempt += 1
            todo = retry

    def watermark(self) -> Watermark | None:
        with self._lock:
            now = _now_ms()
            wm = now - self.ingest_lag_ms
            if self._inflight:
                wm = min(wm, min(self._inflight.values()) - 1)
            wm = max(wm, self._last_wm_ms)
            self._last_wm_ms = wm
        # everything stamped at or before wm was acknowledged before we took it: make it searchable now
        self._refresh(layout.events_pattern(self.prefix))
        if not self._has_events:
            count = self._call(lambda: self.es.count(
                index=layout.events_pattern(self.prefix), allow_no_indices=True, ignore_unavailable=True),
                what="watermark")
            if not count.get("count"):
                return None
            self._has_events = True
        return _ts(wm)

    def watermark_step(self, after: Watermark | None, upto: Watermark, max_events: int) -> Watermark:
        """An ingest time splitting (after, upto] after about ``max_events`` events (a percentile of
        ``event.ingested``: approximate is fine, any time in between is a valid watermark)."""
        lo, hi = _parse_watermark(after, "after"), _parse_watermark(upto, "upto")
        ingested: dict[str, Any] = {"lte": hi}
        if lo is not None:
            ingested["gt"] = lo
        body = {"size": 0, "track_total_hits": True, "query": {"range": {INGESTED: ingested}},
                "aggs": {"step": {"percentiles": {"field": INGESTED, "percents": [50.0]}}}}
        total = self._call(lambda: self.es.count(index=layout.events_pattern(self.prefix), allow_no_indices=True,
                                                 ignore_unavailable=True, query=body["query"]),
                           what="watermark step")["count"]
        if total <= max_events:
            return upto
        body["aggs"]["step"]["percentiles"]["percents"] = [100.0 * max_events / total]
        response = self._call(lambda: self.es.search(index=layout.events_pattern(self.prefix), **body),
                              what="watermark step")
        value = next(iter(response["aggregations"]["step"]["values"].values()), None)
        if value is None:
            return upto
        step = _ts(int(value))
        if (lo is not None and step <= lo) or step >= hi:
            return upto
        return step

    def _refresh(self, index: str) -> None:
        self._call(lambda: self.es.indices.refresh(index=index, allow_no_indices=True, ignore_unavailable=True),
                   what="refresh")

    def search(self, query: SearchQuery) -> Iterator[Event]:
        if isinstance(query.datasets, str):
            raise TypeError("SearchQuery.datasets must be a sequence of dataset names, not a string")
        if isinstance(query.fields, str):
            raise TypeError("SearchQuery.fields must be a sequence of field names, not a string")
        after = _parse_watermark(query.ingested_after, "ingested_after")
        upto = _parse_watermark(query.ingested_upto, "ingested_upto")
        filters: list[dict[str, Any]] = []
        if query.datasets is not None:
            datasets = sorted(set(query.datasets))
            if not datasets:
                return iter(())
            index: str = ",".join(sorted({p for d in datasets for p in self._dataset_indices(d)}))
            filters.append({"terms": {DATASET: datasets}})
        else:
            index = layout.events_pattern(self.prefix)
        ts_range: dict[str, Any] = {}
        if query.start is not None:
            ts_range["gte"] = query.start
        if query.end is not None:
            ts_range["lt"] = query.end
        if ts_range:
            filters.append({"range": {TIMESTAMP: ts_range}})
        ing_range: dict[str, Any] = {}
        if after is not None:
            ing_range["gt"] = after
        if upto is not None:
            ing_range["lte"] = upto
        if ing_range:
            filters.append({"range": {INGESTED: ing_range}})
        source: Any = True
        if query.fields is not None:
            source = sorted(set(query.fields).union(ALWAYS_RETURNED))
        if query.prefilter is not None and self._has_long_values(datasets if query.datasets is not None else None,
                                                                 None if query.fields is None else list(query.fields)):
            pass  # the prefilter could miss an event by its unindexed value: dataset + range, the engine decides
        elif query.prefilter is not None:
            if isinstance(query.prefilter, dict):
                filters.append(query.prefilter)
            else:
                parts = split_or(str(query.prefilter))
                if max(map(len, parts)) > self.prefilter_max_chars:
                    # One rule's query of thousands of leading wildcards (SigmaHQ "Vulnerable Driver Load":
                    # 250k characters, 8,864 hashes) trips the cluster's memory breaker on every shard (429
                    # after retries): reading the dataset + range is exact and cheaper than never answering.
                    return self._stream(index, {"bool": {"filter": filters}}, source)
                if self.prefilter_max_rules > 0 and len(parts) > self.prefilter_max_rules:
                    # Past a few dozen rules the narrowing queries cost the cluster more than reading the
                    # dataset + range (evtx-samples: 25 SigmaHQ rules 17 s batched vs all 23,222 events in
                    # 1 s; 100 rules time out; docs/benchmarks.md). Dropping a prefilter is exact: it only
                    # narrows, the engine decides. The rule pack (35 rules) stays pushed down.
                    return self._stream(index, {"bool": {"filter": filters}}, source)
                if self.prefilter_batch_rules > 0 and len(parts) > self.prefilter_batch_rules:
                    step = self.prefilter_batch_rules
                    batches = [parts[i:i + step] for i in range(0, len(parts), step)]
                    return self._stream_batches(index, filters, batches, source)
                filters.append(_query_string(str(query.prefilter)))
        return self._stream(index, {"bool": {"filter": filters}}, source)

    def _check_complete(self, resp: Mapping[str, Any], index: str) -> None:
        """Refuse a page some shards did not answer. By default Elasticsearch answers a search whose shards
        partly failed (rejected under load, a query one index's mapping cannot run) with the others' hits
        and no error: the evaluator would then checkpoint past events it never saw (issue 10: SigmaHQ
        matches went missing on a loaded cluster). Searches ask ``allow_partial_search_results: false``;
        this catches a server that answers partially anyway."""
        shards = resp.get("_shards") or {}
        if resp.get("timed_out") or shards.get("failed"):
            failures = shards.get("failures") or [{}]
            raise StoreUnavailable(f"Elasticsearch at {self._where} answered a search of {index} from only "
                                   f"{shards.get('successful')} of {shards.get('total')} shards: "
                                   f"{_item_reason({'error': failures[0].get('reason')})}"[:600])

    def _stream_batches(self, index: str, filters: list[dict[str, Any]], batches: list[list[str]],
                        source: Any) -> Iterator[Event]:
        """The OR of many rules' prefilters as one ``_msearch`` per page: each batch of rules is one search
        (a ``bool.should`` of their queries, each named by its position so a hit says which rules it may
        match), all batches share one point in time, and their sorted pages are merged into the store's
        (``@timestamp``, ``event.id``) order with each event once. Why: one query string of thousands of
        rules is parsed and run as one giant Lucene query (minutes, or a timeout); batches run side by side
        on the cluster's search threads and never exceed its clause limit. Exact: the union of the batches is
        the OR of the parts."""
        sort = [{TIMESTAMP: "asc"}, {EVENT_ID: "asc"}]
        self._refresh(index)
        missing, pit_id = self._open_pit(index)
        if missing:
            return
        offset = 0
        queries = []
        for batch in batches:
            should = [{"query_string": dict(_query_string(part)["query_string"], _name=str(offset + n))}
                      for n, part in enumerate(batch)]
            offset += len(batch)
            queries.append({"bool": {"filter": filters + [{"bool": {"should": should, "minimum_should_match": 1}}]}})
        buffers: list[deque[dict[str, Any]]] = [deque() for _ in batches]
        after: list[list[Any] | None] = [None] * len(batches)
        done = [False] * len(batches)
        last_key: tuple[Any, Any] | None = None
        try:
            while True:
                need = [i for i in range(len(batches)) if not buffers[i] and not done[i]]
                if need:
                    lines: list[dict[str, Any]] = []
                    for i in need:
                        body: dict[str, Any] = {"query": queries[i], "sort": sort, "size": self.search_page_size,
                                                "_source": source, "track_total_hits": False}
                        if after[i] is not None:
                            body["search_after"] = after[i]
                        if pit_id is not None:
                            body["pit"] = {"id": pit_id, "keep_alive": "2m"}
                            lines.append({"allow_partial_search_results": False})
                        else:
                            lines.append({"index": index, "ignore_unavailable": True, "allow_no_indices": True,
                                          "allow_partial_search_results": False})
                        lines.append(body)
                    resp = self._call(lambda: self.es.msearch(searches=lines), what="search")
                    for i, answer in zip(need, resp["responses"]):
                        if "error" in answer:
                            err = answer["error"]
                            reason = err.get("reason", "") if isinstance(err, dict) else str(err)
                            raise StoreError(f"Elasticsearch at {self._where} rejected a batched search of "
                                             f"index {index}: {reason}"[:600])
                        self._check_complete(answer, index)
                        hits = answer["hits"]["hits"]
                        buffers[i] = deque(hits)
                        if len(hits) < self.search_page_size:
                            done[i] = True
                        if hits:
                            after[i] = hits[-1]["sort"]
                live = [i for i in range(len(batches)) if buffers[i]]
                if not live:
                    return
                # a batch whose buffer ran dry but is not done is refilled before anything sorts past it
                if any(not buffers[i] and not done[i] for i in range(len(batches))):
                    continue
                best = min(live, key=lambda i: _sort_key(buffers[i][0]))
                hit = buffers[best].popleft()
                key = _sort_key(hit)
                if key != last_key:
                    last_key = key
                    yield hit["_source"]
        finally:
            self._close_pit(pit_id)

    def _close_pit(self, pit_id: str | None) -> None:
        if pit_id is not None:
            try:
                self.es.close_point_in_time(id=pit_id)
            except Exception:  # noqa: BLE001 - a PIT expires on its own after keep_alive
                pass

    def _open_pit(self, index: str) -> tuple[bool, str | None]:
        """(no such index, point-in-time id or None where PIT is unavailable: plain search_after then)."""
        if not self._pit_supported:
            return False, None
        try:
            return False, self._call(lambda: self.es.open_point_in_time(
                index=index, keep_alive="2m", ignore_unavailable=True), what="search")["id"]
        except StoreUnavailable:
            raise
        except StoreError as exc:
            if "index_not_found" in str(exc) or "no such index" in str(exc):
                return True, None
            log.info("point in time unavailable (%s); paging with search_after only", exc)
            self._pit_supported = False
            return False, None

    def _stream(self, index: str, es_query: dict[str, Any], source: Any) -> Iterator[Event]:
        sort = [{TIMESTAMP: "asc"}, {EVENT_ID: "asc"}]
        # read-your-writes like the embedded store: whatever was acknowledged before the search is seen
        # (cheap when nothing changed); the point in time then fixes the view for the whole stream
        self._refresh(index)
        missing, pit_id = self._open_pit(index)
        if missing:
            return
        try:
            search_after: list[Any] | None = None
            while True:
                kwargs: dict[str, Any] = {"query": es_query, "sort": sort, "size": self.search_page_size,
                                          "_source": source, "track_total_hits": False}
                if search_after is not None:
                    kwargs["search_after"] = search_after
                if pit_id is not None:
                    kwargs["pit"] = {"id": pit_id, "keep_alive": "2m"}
                else:
                    kwargs["index"] = index
                    kwargs["ignore_unavailable"] = True
                    kwargs["allow_no_indices"] = True
                kwargs["allow_partial_search_results"] = False
                resp = self._call(lambda: self.es.search(**kwargs), what="search")
                self._check_complete(resp, index)
                if pit_id is not None and resp.get("pit_id"):
                    pit_id = resp["pit_id"]
                hits = resp["hits"]["hits"]
                for hit in hits:
                    yield hit["_source"]
                if len(hits) < self.search_page_size:
                    return
                search_after = hits[-1]["sort"]
        finally:
            self._close_pit(pit_id)

    # --- state with optimistic concurrency ----------------------------------------------------------
    def _state_id(self, kind: str, key: str) -> str:
        return f"{kind}:{key}"

    def _get_doc(self, index: str, doc_id: str, what: str) -> dict[str, Any] | None:
        """One document by id, or None when it (or its index) does not exist."""
        try:
            return self._call(lambda: self.es.get(index=index, id=doc_id), what=what)
        except StoreError as exc:
            if "404" in str(exc) or "not_found" in str(exc).lower():
                return None
            raise

    def _get_state_doc(self, doc_id: str) -> dict[str, Any] | None:
        return self._get_doc(self.names["state"], doc_id, "read state")

    def _get_state(self, kind: str, key: str) -> Any:
        doc_id = self._state_id(kind, key)
        resp = self._get_state_doc(doc_id)
        if resp is None:
            with self._lock:
                self._versions[doc_id] = None  # seen absent: our next write must create it
            return None
        with self._lock:
            self._versions[doc_id] = (resp["_seq_no"], resp["_primary_term"])
        return orjson.loads(resp["_source"]["value_json"])

    def _put_state(self, kind: str, key: str, value: Any) -> None:
        """Write a state record only if it is still at the version this store last saw (or absent when it
        saw none). A store that never read the record reads it first: it adopts the current version."""
        doc_id = self._state_id(kind, key)
        with self._lock:
            seen = doc_id in self._versions
        if not seen:
            self._get_state(kind, key)
        with self._lock:
            known = self._versions.get(doc_id)
        doc = {"kind": kind, "key": key, "value_json": orjson.dumps(value).decode(), "updated": _ts(_now_ms())}
        kwargs: dict[str, Any] = {"index": self.names["state"], "id": doc_id, "document": doc}
        if known is None:
            kwargs["op_type"] = "create"
        else:
            kwargs["if_seq_no"], kwargs["if_primary_term"] = known
        try:
            resp = self._call(lambda: self.es.index(**kwargs), what=f"write {kind}")
        except StoreConflict:
            self._settle_conflict(doc_id, kind, key, doc["value_json"], self._get_state_doc(doc_id))
            return
        with self._lock:
            self._versions[doc_id] = (resp["_seq_no"], resp["_primary_term"])

    def _settle_conflict(self, doc_id: str, kind: str, key: str, value_json: str,
                         current: dict[str, Any] | None) -> None:
        """A state write refused for its version. A retried request whose first attempt did land (time-out
        after the write) conflicts with itself: if the record now holds exactly our value, the write
        succeeded and its version is adopted; otherwise another engine wrote it."""
        with self._lock:
            self._versions.pop(doc_id, None)
        if current is not None and current["_source"].get("value_json") == value_json:
            with self._lock:
                self._versions[doc_id] = (current["_seq_no"], current["_primary_term"])
            return
        raise StoreConflict(
            f"{kind} {key!r} was changed by another engine since this one read it; re-read and retry "
            "(two engines must not run the same connector or rule on one index prefix)") from None

    def _mget(self, index: str, ids: Sequence[str], what: str, chunk: int = 1000) -> dict[str, dict[str, Any]]:
        """The documents found among ``ids``, by id: one ``_mget`` per ``chunk`` ids instead of one GET each
        (issue 10). A missing index holds none of them; any other per-document error is raised."""
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), chunk):
            part = list(ids[i:i + chunk])
            resp = self._call(lambda p=part: self.es.mget(index=index, ids=p), what=what)
            for doc in resp["docs"]:
                err = doc.get("error")
                if doc.get("found"):
                    found[doc["_id"]] = doc
                elif err is not None and not (isinstance(err, dict) and err.get("type") == "index_not_found_exception"):
                    raise StoreError(f"{what}: {_item_reason(doc)}")
        return found

    def _get_states(self, kind: str, keys: Sequence[str]) -> dict[str, Any]:
        """``_get_state`` of many keys in one ``_mget``: values of the present ones, versions of all."""
        ids = {self._state_id(kind, key): key for key in keys}
        docs = self._mget(self.names["state"], list(ids), f"read {kind}s")
        values = {}
        with self._lock:
            for doc_id, key in ids.items():
                doc = docs.get(doc_id)
                self._versions[doc_id] = None if doc is None else (doc["_seq_no"], doc["_primary_term"])
                if doc is not None:
                    values[key] = orjson.loads(doc["_source"]["value_json"])
        return values

    def _put_states(self, kind: str, values: Mapping[str, Any]) -> None:
        """``_put_state`` of many keys in one ``_bulk`` (each still conditional on the version this store
        saw; the unseen are read first, in one ``_mget``). Items are independent: the ones that land keep
        their new version even when another fails, and the failure is raised after."""
        ids = {self._state_id(kind, key): key for key in values}
        with self._lock:
            unseen = [key for doc_id, key in ids.items() if doc_id not in self._versions]
        if unseen:
            self._get_states(kind, unseen)
        now = _ts(_now_ms())
        lines: list[bytes] = []
        docs: dict[str, dict[str, Any]] = {}
        with self._lock:
            for doc_id, key in ids.items():
                doc = docs[doc_id] = {"kind": kind, "key": key, "value_json": orjson.dumps(values[key]).decode(),
                                      "updated": now}
                known = self._versions.get(doc_id)
                action: dict[str, Any] = {"_index": self.names["state"], "_id": doc_id}
                if known is None:
                    action["op_type"] = "create"
                else:
                    action["if_seq_no"], action["if_primary_term"] = known
                lines += [orjson.dumps({"index": action}), orjson.dumps(doc)]
        if not lines:
            return
        body = b"\n".join(lines) + b"\n"
        resp = self._call(lambda: self.es.bulk(operations=body), what=f"write {kind}s")
        conflicts, failed = [], []
        for item in resp["items"]:
            info = next(iter(item.values()))
            if info.get("status", 0) < 300:
                with self._lock:
                    self._versions[info["_id"]] = (info["_seq_no"], info["_primary_term"])
            elif info.get("status") == 409:
                conflicts.append(info["_id"])
            else:
                failed.append(info)
        if conflicts:
            current = self._mget(self.names["state"], conflicts, f"read {kind}s")
            for doc_id in conflicts:
                self._settle_conflict(doc_id, kind, ids[doc_id], docs[doc_id]["value_json"], current.get(doc_id))
        if failed:
            message = f"write {kind}s: {len(failed)} of {len(lines) // 2} failed: {_item_reason(failed[0])}"
            if {f.get("status") for f in failed} & _RETRY_STATUS:
                raise StoreUnavailable(message)
            raise StoreError(message)

    def get_cursor(self, connector_id: str) -> dict[str, Any] | None:
        return self._get_state("cursor", connector_id)

    def get_checkpoint(self, rule_id: str) -> RuleCheckpoint:
        return _checkpoint(rule_id, self._get_state("checkpoint", rule_id))

    def get_checkpoints(self, rule_ids: Sequence[str]) -> dict[str, RuleCheckpoint]:
        values = self._get_states("checkpoint", rule_ids)
        return {rule_id: _checkpoint(rule_id, values.get(rule_id)) for rule_id in rule_ids}

    # --- dead letters -------------------------------------------------------------------------------
    def _ordinal(self) -> int:
        """Insertion order across processes: microsecond wall clock, strictly increasing per store."""
        with self._lock:
            self._last_ordinal = max(time.time_ns() // 1000, self._last_ordinal + 1)
            return self._last_ordinal

    def _write_dead_letters(self, records: Sequence[DeadLetter]) -> None:
        if not records:
            return
        now = _ts(_now_ms())
        lines = []
        for r in records:
            lines.append({"index": {"_index": self.names["dead_letters"], "_id": uuid.uuid4().hex}})
            lines.append({"source": r.source, "reason": r.reason, "location": r.location, "raw": r.raw,
                          "received_at": r.received_at or now, "ordinal": self._ordinal()})
        self._bulk_simple(lines, "write dead letters")

    def _bulk_simple(self, lines: list[dict[str, Any]], what: str) -> None:
        body = b"".join(orjson.dumps(line) + b"\n" for line in lines)
        resp = self._call(lambda: self.es.bulk(operations=body, refresh=self.refresh_on_write and "wait_for"
                                               or None), what=what)
        if resp.get("errors"):
            bad = [next(iter(i.values())) for i in resp["items"] if next(iter(i.values())).get("status", 0) >= 300]
            statuses = {b.get("status") for b in bad}
            message = f"{what}: {len(bad)} of {len(resp['items'])} documents failed: {_item_reason(bad[0])}"
            if statuses & _RETRY_STATUS:
                raise StoreUnavailable(message)
            raise StoreError(message)

    def dead_letter(self, records: Sequence[DeadLetter], cursor: CursorUpdate | None = None) -> None:
        self._write_dead_letters(records)
        if cursor is not None:
            self._put_state("cursor", cursor.connector_id, cursor.value)

    def list_dead_letters(self, limit: int = 100, *, newest: bool = False) -> list[DeadLetter]:
        self._refresh(self.names["dead_letters"])
        order = "desc" if newest else "asc"
        resp = self._call(lambda: self.es.search(index=self.names["dead_letters"], size=int(limit),
                                                 sort=[{"ordinal": order}], track_total_hits=False),
                          what="list dead letters")
        return [DeadLetter(source=s["source"], reason=s["reason"], location=s["location"], raw=s["raw"],
                           received_at=s.get("received_at", "")) for s in (h["_source"] for h in resp["hits"]["hits"])]

    # --- alerts, checkpoints, outbox ----------------------------------------------------------------
    def commit_rule_run(self, checkpoint: RuleCheckpoint, alerts: Sequence[Alert]) -> None:
        """Alerts (and their outbox entries) first, then the checkpoint. Not atomic: a crash in between
        re-runs the rule from the old checkpoint, and because alert ids are deterministic the re-run
        overwrites the same alert documents instead of adding new ones (docs/elasticsearch.md)."""
        self._write_alerts(alerts)
        self._put_state("checkpoint", checkpoint.rule_id,
                        {"watermark": checkpoint.watermark, "extra": checkpoint.extra})

    def commit_rule_runs(self, runs: Sequence[tuple[RuleCheckpoint, Sequence[Alert]]]) -> None:
        """A round's ``commit_rule_run`` in two requests instead of up to two per rule (issue 10): every
        alert in one ``_bulk``, then, only once all of them landed, every checkpoint in one ``_bulk``. The
        order per rule is kept (alerts before their checkpoint), so a crash or failed item in between only
        re-runs rules from their old checkpoints, as with ``commit_rule_run``."""
        self._write_alerts([alert for _, alerts in runs for alert in alerts])
        self._put_states("checkpoint", {cp.rule_id: {"watermark": cp.watermark, "extra": cp.extra}
                                        for cp, _ in runs})

    def _write_alerts(self, alerts: Sequence[Alert]) -> None:
        if alerts:
            lines: list[dict[str, Any]] = []
            for alert in alerts:
                data = alert.to_dict()
                data_json = orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
                lines.append({"index": {"_index": self.names["alerts"], "_id": alert.id}})
                lines.append(data)
                outbox_id = f"{alert.id}:{int(alert.revision)}"
                lines.append({"update": {"_index": self.names["outbox"], "_id": outbox_id}})
                # an existing (alert, revision) keeps its place in the queue; only its content is refreshed
                lines.append({"doc": {"alert_json": data_json},
                              "upsert": {"alert_id": alert.id, "revision": int(alert.revision),
                                         "ordinal": self._ordinal(), "alert_json": data_json}})
            self._bulk_simple(lines, "write alerts")

    def get_alert(self, alert_id: str) -> Alert | None:
        resp = self._get_doc(self.names["alerts"], alert_id, "read alert")
        return None if resp is None else Alert.from_dict(resp["_source"])

    def count_alerts(self) -> int:
        self._refresh(self.names["alerts"])
        resp = self._call(lambda: self.es.count(index=self.names["alerts"], allow_no_indices=True,
                                                ignore_unavailable=True), what="count alerts")
        return int(resp["count"])

    def get_alerts(self, alert_ids: Sequence[str]) -> dict[str, Alert]:
        docs = self._mget(self.names["alerts"], list(dict.fromkeys(alert_ids)), "read alerts")
        return {alert_id: Alert.from_dict(doc["_source"]) for alert_id, doc in docs.items()}

    def latest_alert(self, rule_id: str, group_key: str) -> Alert | None:
        self._refresh(self.names["alerts"])
        resp = self._call(lambda: self.es.search(
            index=self.names["alerts"], size=1, track_total_hits=False,
            query={"bool": {"filter": [{"term": {"rule_id": rule_id}}, {"term": {"group_key": group_key}}]}},
            sort=[{"last_trigger": "desc"}, {"id": "desc"}]), what="read alerts")
        hits = resp["hits"]["hits"]
        return Alert.from_dict(hits[0]["_source"]) if hits else None

    def list_alerts(self, rule_id: str | None = None, limit: int | None = None) -> list[Alert]:
        query: dict[str, Any] = {"term": {"rule_id": rule_id}} if rule_id is not None else {"match_all": {}}
        return self._list_sorted(self.names["alerts"], query, limit, Alert.from_dict, "list alerts")

    def _list_sorted(self, index: str, query: dict[str, Any], limit: int | None, build: Any, what: str) -> list[Any]:
        """Documents of ``index`` in (first_trigger, id) order, paged with search_after."""
        self._refresh(index)
        out: list[Any] = []
        search_after = None
        while limit is None or len(out) < limit:
            size = self.search_page_size if limit is None else min(self.search_page_size, limit - len(out))
            kwargs: dict[str, Any] = {"index": index, "size": size, "query": query,
                                      "sort": [{"first_trigger": "asc"}, {"id": "asc"}], "track_total_hits": False}
            if search_after is not None:
                kwargs["search_after"] = search_after
            hits = self._call(lambda: self.es.search(**kwargs), what=what)["hits"]["hits"]
            out.extend(build(h["_source"]) for h in hits)
            if len(hits) < size:
                break
            search_after = hits[-1]["sort"]
        return out

    def pending_deliveries(self, sink: str, limit: int = 1000) -> list[Alert]:
        return self._pending("outbox", "deliveries", "alert_json", Alert.from_dict, sink, limit)

    def _pending(self, outbox: str, deliveries: str, json_key: str, build: Any, sink: str, limit: int) -> list[Any]:
        """Outbox entries (in ``ordinal`` order) without a delivery record of ``sink``: alerts and cases."""
        outbox, deliveries = self.names[outbox], self.names[deliveries]
        self._refresh(outbox)
        self._refresh(deliveries)
        out: list[Any] = []
        search_after = None
        page = max(100, min(self.search_page_size, 1000))
        while len(out) < limit:
            kwargs: dict[str, Any] = {"index": outbox, "size": page, "sort": [{"ordinal": "asc"}],
                                      "track_total_hits": False}
            if search_after is not None:
                kwargs["search_after"] = search_after
            hits = self._call(lambda: self.es.search(**kwargs), what="read outbox")["hits"]["hits"]
            if not hits:
                break
            ids = [f"{sink}:{h['_id']}" for h in hits]
            done = self._call(lambda: self.es.mget(index=deliveries, ids=ids, _source=False),
                              what="read deliveries")
            delivered = {d["_id"] for d in done["docs"] if d.get("found")}
            for hit, did in zip(hits, ids):
                if did not in delivered:
                    out.append(build(orjson.loads(hit["_source"][json_key])))
                    if len(out) >= limit:
                        break
            if len(hits) < page:
                break
            search_after = hits[-1]["sort"]
        return out

    def mark_delivered(self, sink: str, alerts: Sequence[Alert]) -> None:
        lines: list[dict[str, Any]] = []
        for a in alerts:
            lines.append({"index": {"_index": self.names["deliveries"], "_id": f"{sink}:{a.id}:{int(a.revision)}"}})
            lines.append({"sink": sink, "alert_id": a.id, "revision": int(a.revision)})
        if lines:
            self._bulk_simple(lines, "mark delivered")

    # --- cases --------------------------------------------------------------------------------------
    def put_cases(self, cases: Sequence[Case]) -> None:
        """Outbox entries before the case documents: a partial bulk failure is retried by the case builder,
        which stores the same revisions again (both writes are idempotent)."""
        lines: list[dict[str, Any]] = []
        for case in cases:
            data = case.to_dict()
            data_json = orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
            lines.append({"update": {"_index": self.names["case_outbox"], "_id": f"{case.id}:{int(case.revision)}"}})
            lines.append({"doc": {"case_json": data_json},
                          "upsert": {"case_id": case.id, "revision": int(case.revision),
                                     "ordinal": self._ordinal(), "case_json": data_json}})
            lines.append({"index": {"_index": self.names["cases"], "_id": case.id}})
            lines.append(data)
        if lines:
            self._bulk_simple(lines, "write cases")

    def get_case(self, case_id: str) -> Case | None:
        resp = self._get_doc(self.names["cases"], case_id, "read case")
        return None if resp is None else Case.from_dict(resp["_source"])

    def list_cases(self, limit: int | None = None) -> list[Case]:
        return self._list_sorted(self.names["cases"], {"match_all": {}}, limit, Case.from_dict, "list cases")

    def pending_case_deliveries(self, sink: str, limit: int = 1000) -> list[Case]:
        return self._pending("case_outbox", "case_deliveries", "case_json", Case.from_dict, sink, limit)

    def mark_cases_delivered(self, sink: str, cases: Sequence[Case]) -> None:
        lines: list[dict[str, Any]] = []
        for c in cases:
            lines.append({"index": {"_index": self.names["case_deliveries"], "_id": f"{sink}:{c.id}:{int(c.revision)}"}})
            lines.append({"sink": sink, "case_id": c.id, "revision": int(c.revision)})
        if lines:
            self._bulk_simple(lines, "mark cases delivered")

    # --- lifecycle ----------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        try:
            health = self._call(lambda: self.es.cluster.health(), what="health")
        except StoreError as exc:
            return {"store": self.kind, "ok": False, "hosts": self._where, "error": str(exc)}
        return {"store": self.kind, "ok": health.get("status") in ("green", "yellow"), "hosts": self._where,
                "cluster_status": health.get("status"), "server_version": self.server_version,
                "index_prefix": self.prefix}

    def close(self) -> None:
        try:
            self.es.close()
        except Exception:  # noqa: BLE001
            pass

    # --- retention ----------------------------------------------------------------------------------
    def event_datasets(self) -> list[str]:
        pattern = layout.events_pattern(self.prefix)
        resp = self._call(lambda: self.es.search(
            index=pattern, size=0, allow_no_indices=True, ignore_unavailable=True,
            aggs={"ds": {"terms": {"field": DATASET, "size": 10_000}}}), what="retention")
        return sorted(b["key"] for b in resp.get("aggregations", {}).get("ds", {}).get("buckets", []))

    def oldest_unevaluated(self, after: Watermark | None) -> str | None:
        lo = _parse_watermark(after, "after")
        query: dict[str, Any] = {"range": {INGESTED: {"gt": lo}}} if lo is not None else {"match_all": {}}
        pattern = layout.events_pattern(self.prefix)
        self._refresh(pattern)
        resp = self._call(lambda: self.es.search(
            index=pattern, size=0, query=query, allow_no_indices=True, ignore_unavailable=True,
            aggs={"oldest": {"min": {"field": TIMESTAMP}}}), what="retention")
        value = resp.get("aggregations", {}).get("oldest", {}).get("value")
        return None if value is None else _ts(int(value))

    def ilm_status(self) -> str | None:
        """``RUNNING``/``STOPPED`` where the cluster has index lifecycle management, None where it lacks it
        (the integ-test distribution answers ``GET _ilm/status`` with 400 "no handler found")."""
        try:
            resp = self._call(lambda: self.es.perform_request("GET", "/_ilm/status"), what="ILM status")
        except StoreUnavailable:
            raise
        except StoreError:
            return None
        return str(resp.get("operation_mode") or "") or None

    def purge_events(self, dataset: str, before: str, *, dry_run: bool = False,
                     batch_size: int = 5000) -> PurgeResult:
        """Drop every monthly index of ``dataset`` whose whole month is before ``before`` (one request, no
        per-document work); trim the boundary month - and layout-1 plain indices - with bounded
        delete-by-query requests of ``batch_size`` documents."""
        base = layout.dataset_base(self.prefix, dataset)
        names = self._call(lambda: self.es.indices.get(
            index=",".join(self._dataset_indices(dataset)), allow_no_indices=True, ignore_unavailable=True,
            expand_wildcards="open"), what="retention")
        result = PurgeResult()
        only = {"bool": {"filter": [{"term": {DATASET: dataset}}, {"range": {TIMESTAMP: {"lt": before}}}]}}
        for name in sorted(names):
            month = layout.index_month(name)
            if month is not None and month[0] == base:
                start, end = _month_bounds(month[1], month[2])
                if start >= before:
                    continue
                if end <= before:
                    count = self._call(lambda: self.es.count(index=name), what="retention")["count"]
                    if not dry_run:
                        self._call(lambda: self.es.indices.delete(index=name), what="retention")
                        self._known_indices.discard(name)
                        result.transactions += 1
                    result.deleted += count
                    result.indices_dropped.append(name)
                    continue
            elif name != base:
                continue  # another dataset whose name extends this one
            part = self._delete_by_query(name, only, dry_run, batch_size)
            result.deleted += part.deleted
            result.transactions += part.transactions
        return result

    def purge_alerts(self, before: str, *, dry_run: bool = False, batch_size: int = 5000) -> PurgeResult:
        query = {"range": {"last_trigger": {"lt": before}}}
        if dry_run:
            return PurgeResult(deleted=self._call(lambda: self.es.count(
                index=self.names["alerts"], query=query), what="retention")["count"])
        result = PurgeResult()
        batch = max(1, int(batch_size))
        while True:
            self._refresh(self.names["alerts"])
            hits = self._call(lambda: self.es.search(
                index=self.names["alerts"], query=query, size=batch, _source=False, track_total_hits=False),
                what="retention")["hits"]["hits"]
            ids_ = [h["_id"] for h in hits]
            if not ids_:
                self._purge_cases(before)
                return result
            # outbox and deliveries first: a crash in between leaves an alert that the next pass removes
            for key in ("outbox", "deliveries"):
                self._delete_by_query(self.names[key], {"terms": {"alert_id": ids_}}, False, 10_000)
            self._bulk_simple([{"delete": {"_index": self.names["alerts"], "_id": i}} for i in ids_],
                              "retention")
            result.deleted += len(ids_)
            result.transactions += 1
            if len(ids_) < batch:
                self._purge_cases(before)
                return result

    def _purge_cases(self, before: str) -> None:
        """Cases go with their alerts (see the SQLite store): outbox and deliveries first, then the cases."""
        while True:
            self._refresh(self.names["cases"])
            hits = self._call(lambda: self.es.search(
                index=self.names["cases"], query={"range": {"last_trigger": {"lt": before}}}, size=1000,
                _source=False, track_total_hits=False), what="retention")["hits"]["hits"]
            ids_ = [h["_id"] for h in hits]
            if not ids_:
                return
            for key in ("case_outbox", "case_deliveries"):
                self._delete_by_query(self.names[key], {"terms": {"case_id": ids_}}, False, 10_000)
            self._bulk_simple([{"delete": {"_index": self.names["cases"], "_id": i}} for i in ids_], "retention")
            if len(ids_) < 1000:
                return

    def purge_dead_letters(self, before: str, *, dry_run: bool = False, batch_size: int = 5000) -> PurgeResult:
        return self._delete_by_query(self.names["dead_letters"], {"range": {"received_at": {"lt": before}}},
                                     dry_run, batch_size)

    def _delete_by_query(self, index: str, query: dict[str, Any], dry_run: bool, batch_size: int) -> PurgeResult:
        """Delete matching documents ``batch_size`` at a time: a search for their ids, then one bulk delete.

        Not ``_delete_by_query``: that lives in the reindex module, which the integ-test distribution lacks
        (docs/elasticsearch.md). A crash between batches leaves the rest for the next pass."""
        self._refresh(index)
        if dry_run:
            return PurgeResult(deleted=self._call(lambda: self.es.count(
                index=index, query=query, allow_no_indices=True, ignore_unavailable=True),
                what="retention")["count"])
        result = PurgeResult()
        batch = max(1, int(batch_size))
        while True:
            hits = self._call(lambda: self.es.search(
                index=index, query=query, size=batch, _source=False, track_total_hits=False,
                allow_no_indices=True, ignore_unavailable=True), what="retention")["hits"]["hits"]
            if not hits:
                return result
            self._bulk_simple([{"delete": {"_index": h["_index"], "_id": h["_id"]}} for h in hits], "retention")
            self._refresh(index)
            result.deleted += len(hits)
            result.transactions += 1
            if len(hits) < batch:
                return result

    def reclaim_space(self) -> str:
        ilm = self.ilm_status()
        where = f"ILM is {ilm}" if ilm else "this cluster has no ILM"
        return f"dropped indices free their disk at once; {where}, so Wardwatch deletes expired indices itself"

    # --- test/ops helpers ---------------------------------------------------------------------------
    def delete_all(self) -> None:
        """Delete every index and the template of this prefix (tests, ``wardwatch reset``)."""
        names = list(self._call(lambda: self.es.indices.get(
            index=f"{self.prefix}-*", allow_no_indices=True, ignore_unavailable=True,
            expand_wildcards="all"), what="delete"))
        # only indices of *this* prefix: another prefix may start with ours plus a dash
        mine = set(self.names.values())
        names = [n for n in names if n in mine or n.startswith(f"{self.prefix}-events-")]
        for i in range(0, len(names), 50):
            part = names[i:i + 50]
            self._call(lambda: self.es.indices.delete(index=",".join(part), ignore_unavailable=True), what="delete")
        try:
            self.es.indices.delete_index_template(name=layout.template_name(self.prefix))
        except elasticsearch.NotFoundError:
            pass


# --- helpers ----------------------------------------------------------------------------------------
def _query_string(text: str) -> dict[str, Any]:
    return {"query_string": {"query": text, "lenient": True, "analyze_wildcard": True}}


def _sort_key(hit: dict[str, Any]) -> tuple[Any, Any]:
    """(@timestamp, event.id) of a hit: the PIT tiebreaker (_shard_doc) differs between batches."""
    values = hit["sort"]
    return values[0], values[1]


def split_or(text: str) -> list[str]:
    """The parts of ``(a) OR (b) OR ...`` (the evaluator's OR of rule prefilters), or ``[text]`` when the
    string is not exactly that shape. Quotes, backslash escapes and nested parentheses are respected; a part
    is split off only at depth 0 between two balanced groups, so the OR of the parts is the whole query."""
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    n = len(text)
    in_quote = False
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if in_quote:
            if c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == "(":
            if depth == 0 and i != start:
                return [text]  # something outside the groups at top level
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return [text]
            if depth == 0:
                parts.append(text[start:i + 1])
                if i + 1 == n:
                    return parts
                if not text.startswith(" OR ", i + 1):
                    return [text]
                i += 5
                start = i
                continue
        elif depth == 0:
            return [text]
        i += 1
    return [text]


def _month_bounds(year: int, month: int) -> tuple[str, str]:
    """Canonical timestamps of the first instant of a month and of the next one."""
    nxt = (year + 1, 1) if month == 12 else (year, month + 1)
    return f"{year:04d}-{month:02d}-01T00:00:00.000Z", f"{nxt[0]:04d}-{nxt[1]:02d}-01T00:00:00.000Z"


def _parse_watermark(value: Watermark | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        return _ts(timestamp_ms(parse_timestamp(value)))
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not an Elasticsearch watermark (an ISO 8601 ingest time)") from None


def _status(exc: Exception) -> int:
    meta = getattr(exc, "meta", None)
    status = getattr(meta, "status", None)
    if isinstance(status, int):
        return status
    status = getattr(exc, "status_code", 0)
    return status if isinstance(status, int) else 0


def _error_type(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("type", ""))
    return ""


def _long_fields(event: Event) -> Iterator[tuple[str, str]]:
    """(dataset, field) of each string (or string in a list) longer than the keyword ``ignore_above``."""
    limit = layout.IGNORE_ABOVE
    for name, value in event.items():
        if (type(value) is str and len(value) > limit) or (
                type(value) is list and any(type(v) is str and len(v) > limit for v in value)):
            yield event[DATASET], name


def _checkpoint(rule_id: str, value: Mapping[str, Any] | None) -> RuleCheckpoint:
    if value is None:
        return RuleCheckpoint(rule_id=rule_id)
    return RuleCheckpoint(rule_id=rule_id, watermark=value.get("watermark"), extra=value.get("extra") or {})


def _item_reason(info: dict[str, Any]) -> str:
    err = info.get("error")
    if isinstance(err, dict):
        text = f"{err.get('type', 'error')}: {err.get('reason', '')}"
        cause = err.get("caused_by")
        if isinstance(cause, dict):
            text += f" (caused by {cause.get('type', '')}: {cause.get('reason', '')})"
        return text
    return str(err or f"status {info.get('status')}")


def _short(exc: Exception) -> str:
    if isinstance(exc, elasticsearch.ApiError):
        body = exc.body
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            err = body["error"]
            return f"{err.get('type', '')}: {err.get('reason', '')}"[:500]
        return str(exc.message)[:500]
    text = str(exc)
    return text[:500]


def _redact(host: str) -> str:
    """Never log credentials embedded in a URL."""
    if "@" in host and "://" in host:
        scheme, rest = host.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return host
