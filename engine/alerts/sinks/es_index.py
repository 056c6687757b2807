"""The ``elasticsearch`` sink: the latest revision of every alert (and case) as one document, for Kibana.

Indices ``<index_prefix>-alerts`` and ``<index_prefix>-cases`` get an explicit mapping
(:mod:`engine.alerts.sinks.es_documents`). The document id is the alert (case) id and the revision is the
document's *external version*: Elasticsearch keeps a document only if its version is higher than the one
stored, so

* a revision handed over twice (crash between indexing and the outbox acknowledgement) is a 409 conflict,
  which means "already there" - still one document, delivery exactly once;
* an older revision arriving after a newer one (a replayed outbox) can never overwrite it.

The connection options are the ``elasticsearch-source`` connector's (hosts, credentials only from
``*_file``/``*_env``, CA, fingerprint), checked and built by the same code
(:mod:`connectors.elasticsearch_source.client`). The index prefix must not be the store's: the store keeps
its own ``<prefix>-alerts`` with another mapping, and the sink refuses an index it did not create.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import elasticsearch

from connectors.elasticsearch_source import client as es_client
from engine.alerts.sinks.base import Sink, SinkOptions
from engine.alerts.sinks.es_documents import ALERT_PROPERTIES, CASE_PROPERTIES, META, document, index_body
from engine.errors import SinkRejected, SinkUnavailable
from engine.events import format_timestamp
from engine.plugins import InvalidOption

_TRANSIENT = frozenset({401, 403, 408, 429, 500, 502, 503, 504})


@dataclass(kw_only=True)
class ElasticsearchSinkOptions(SinkOptions, es_client.ConnectionOptions):
    """``alerts.sinks[]`` options of ``type: elasticsearch`` (docs/alerts.md); the connection keys are the
    ``elasticsearch-source`` connector's (:class:`~connectors.elasticsearch_source.client.ConnectionOptions`)."""

    deliver: str = "both"
    #: indices ``<index_prefix>-alerts`` and ``<index_prefix>-cases``; not the store's prefix
    index_prefix: str = "wardwatch-soc"
    #: make each document searchable before the call returns (tests, tiny sites); costs a refresh per write
    refresh: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        prefix = self.index_prefix
        if not prefix or prefix != prefix.lower() or any(c in prefix for c in ' "*\\/<>|,#:?'):
            raise InvalidOption("index_prefix", f"{prefix!r} must be a lowercase Elasticsearch index name part")
        es_client.check_connection_options(self)


class ElasticsearchSink(Sink):
    """One document per alert / case id, always its newest revision (see the module docstring)."""

    type_name = "elasticsearch"
    summary = "alerts and cases as Elasticsearch documents (latest revision wins), for Kibana"
    Options = ElasticsearchSinkOptions
    #: one request per revision: a refused document is dead-lettered alone, never with its neighbours
    batch_size = 1

    def __init__(self, options: ElasticsearchSinkOptions | Mapping[str, Any] | None = None, **kwargs: Any):
        super().__init__(options, **kwargs)
        opts: ElasticsearchSinkOptions = self.settings
        self.indices = {"alert": f"{opts.index_prefix}-alerts", "case": f"{opts.index_prefix}-cases"}
        self.es = es_client.build_client(opts)
        self._ready: set[str] = set()
        self._where = es_client.where(opts.hosts)

    def default_name(self) -> str:
        return f"elasticsearch:{self.settings.index_prefix}"

    def send_alerts(self, payloads: Sequence[dict[str, Any]]) -> None:
        for payload in payloads:
            self._index("alert", payload)

    def send_cases(self, payloads: Sequence[dict[str, Any]]) -> None:
        for payload in payloads:
            self._index("case", payload)

    def _index(self, record: str, payload: Mapping[str, Any]) -> None:
        index = self.indices[record]
        self._ensure(record)
        now = format_timestamp(datetime.now(timezone.utc))
        try:
            self.es.index(index=index, id=str(payload["id"]), document=document(payload, now),
                          version=int(payload.get("revision", 1)), version_type="external",
                          refresh=self.settings.refresh)
        except elasticsearch.ConflictError:
            return  # this revision (or a newer one) is there already: exactly once
        except elasticsearch.ApiError as exc:
            if exc.meta.status == 404:
                self._ready.discard(record)  # the index was deleted under us: recreate it next round
            raise self._classify(exc, f"{record} {payload['id']} revision {payload.get('revision', 1)}") from None
        except elasticsearch.TransportError as exc:
            raise SinkUnavailable(f"elasticsearch {self._where}: {type(exc).__name__}") from None

    def _ensure(self, record: str) -> None:
        """Create the index with its mapping once; refuse one that exists but is not this sink's.

        Every failure here is :class:`SinkUnavailable`, whatever the status: an index that cannot be
        created or a mapping conflict is the operator's to fix, and the revisions must wait in the outbox
        meanwhile rather than be dead-lettered one by one as if Elasticsearch had refused each alert.
        """
        if record in self._ready:
            return
        index = self.indices[record]
        body = index_body(ALERT_PROPERTIES if record == "alert" else CASE_PROPERTIES)
        try:
            if self.es.indices.exists(index=index):
                mapping = self.es.indices.get_mapping(index=index)
                meta = next(iter(mapping.values()), {}).get("mappings", {}).get("_meta", {})
                if meta.get("wardwatch") != META["wardwatch"]:
                    raise SinkUnavailable(f"elasticsearch {self._where}: index {index} exists and is not this "
                                       "sink's (the store's own index?); choose another index_prefix")
                self.es.indices.put_mapping(index=index, properties=body["mappings"]["properties"])
            else:
                self.es.indices.create(index=index, settings=body["settings"], mappings=body["mappings"])
        except elasticsearch.ApiError as exc:
            if "resource_already_exists" not in str(exc):  # a concurrent create: fine
                raise SinkUnavailable(f"elasticsearch {self._where}: index {index}: HTTP {exc.meta.status} "
                                      f"{exc.error}") from None
        except elasticsearch.TransportError as exc:
            raise SinkUnavailable(f"elasticsearch {self._where}: {type(exc).__name__}") from None
        self._ready.add(record)

    def _classify(self, exc: elasticsearch.ApiError, what: str) -> Exception:
        status = exc.meta.status
        reason = f"elasticsearch {self._where}: {what}: HTTP {status} {exc.error}"
        return SinkUnavailable(reason) if status in _TRANSIENT or status == 404 else SinkRejected(reason)

    def close(self) -> None:
        self.es.close()
