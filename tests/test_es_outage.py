"""Elasticsearch outages: the store raises StoreUnavailable after its retries, never advances a cursor past
data that was not acknowledged, and a retry after recovery stores every event exactly once.

The outage is a TCP proxy on 127.0.0.1 between the store and Elasticsearch that the test cuts (resets every
connection and refuses new ones), optionally after a number of bytes so the cut lands in the middle of a
multi-chunk bulk ingest. The shared cluster itself is never stopped, so other tests are unaffected.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from engine.store.base import CursorUpdate, SearchQuery, StoreUnavailable
from engine.store.elasticsearch import ElasticsearchStore
from tests.conftest import require_elasticsearch

pytestmark = pytest.mark.elasticsearch


class CuttableProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.up = True
        self.cut_after: int | None = None  # bytes client -> server before an automatic cut
        self.forwarded = 0
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                _reset(client)
                continue
            with self.lock:
                self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if upstream and self.cut_after is not None:
                    with self.lock:
                        room = self.cut_after - self.forwarded
                        self.forwarded += len(data)
                    if room <= 0:
                        self.cut()
                        return
                    if room < len(data):
                        dst.sendall(data[:room])
                        self.cut()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        self.up = False
        with self.lock:
            socks, self.sockets = self.sockets, []
        for s in socks:
            _reset(s)

    def restore(self) -> None:
        self.cut_after = None
        self.forwarded = 0
        self.up = True

    def close(self) -> None:
        self.running = False
        self.cut()
        self.listener.close()


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    except OSError:
        pass


@pytest.fixture
def env() -> Iterator[tuple[CuttableProxy, ElasticsearchStore, ElasticsearchStore]]:
    url = require_elasticsearch()
    parts = urlsplit(url)
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 9200))
    prefix = f"wwtest-outage-{uuid.uuid4().hex[:8]}"
    direct = ElasticsearchStore(hosts=[url], index_prefix=prefix, replicas=0)
    via = ElasticsearchStore(hosts=[proxy.url], index_prefix=prefix, replicas=0, request_timeout=3,
                             max_retries=2, retry_backoff_seconds=0.05, bulk_chunk_docs=50, search_page_size=10)
    try:
        yield proxy, via, direct
    finally:
        proxy.close()
        via.close()
        direct.delete_all()
        direct.close()


def _events(n: int) -> list[dict[str, object]]:
    return [{"@timestamp": f"2026-11-02T09:{i // 1000:02d}:{i // 10 % 60:02d}.{i % 1000:03d}Z",
             "event.id": f"ev-{i:05d}", "event.dataset": "ehr.audit", "user.name": f"user{i % 17}",
             "ehr.action": "read", "ehr.patient.id": f"p{i}"} for i in range(n)]


def _count(store: ElasticsearchStore) -> int:
    store.watermark()
    return store.es.count(index=f"{store.prefix}-events-*", allow_no_indices=True)["count"]


def test_outage_before_ingest_raises_and_keeps_cursor(env: tuple[CuttableProxy, ElasticsearchStore,
                                                                 ElasticsearchStore]) -> None:
    proxy, via, direct = env
    via.write(_events(5), CursorUpdate("ehr", {"offset": 5}))
    proxy.cut()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot reach Elasticsearch"):
        via.write(_events(100)[5:], CursorUpdate("ehr", {"offset": 100}))
    assert time.monotonic() - started < 20  # bounded by retries, not hanging
    assert direct.get_cursor("ehr") == {"offset": 5}
    proxy.restore()
    result = via.write(_events(100)[5:], CursorUpdate("ehr", {"offset": 100}))
    assert (result.written, result.duplicates) == (95, 0)
    assert direct.get_cursor("ehr") == {"offset": 100}
    assert _count(direct) == 100


def test_outage_during_ingest_no_cursor_advance_and_exactly_once_after(
        env: tuple[CuttableProxy, ElasticsearchStore, ElasticsearchStore]) -> None:
    proxy, via, direct = env
    batch = _events(500)  # 10 bulk chunks of 50
    via.write(batch[:1], CursorUpdate("ehr", {"offset": 1}))
    proxy.cut_after = 40_000  # a few chunks get through, then the connection dies mid-request
    with pytest.raises(StoreUnavailable):
        via.write(batch, CursorUpdate("ehr", {"offset": 500}))
    assert direct.get_cursor("ehr") == {"offset": 1}, "cursor advanced past unacknowledged data"
    partial = _count(direct)
    assert 1 < partial < 500, f"the cut should land mid-batch (stored {partial})"
    proxy.restore()
    result = via.write(batch, CursorUpdate("ehr", {"offset": 500}))
    assert result.written + result.duplicates == 500
    assert result.written == 500 - partial
    assert _count(direct) == 500
    assert direct.get_cursor("ehr") == {"offset": 500}
    ids = [e["event.id"] for e in direct.search(SearchQuery(fields=[]))]
    assert len(ids) == len(set(ids)) == 500


def test_outage_during_search_raises_after_retries(env: tuple[CuttableProxy, ElasticsearchStore,
                                                              ElasticsearchStore]) -> None:
    proxy, via, direct = env
    via.write(_events(60))
    stream = via.search(SearchQuery(datasets=["ehr.audit"]))
    first = [next(stream) for _ in range(10)]
    assert [e["event.id"] for e in first] == [f"ev-{i:05d}" for i in range(10)]
    proxy.cut()
    with pytest.raises(StoreUnavailable, match="search"):
        for _ in stream:
            pass
    with pytest.raises(StoreUnavailable):
        via.watermark()
    proxy.restore()
    assert len(list(via.search(SearchQuery(datasets=["ehr.audit"])))) == 60
