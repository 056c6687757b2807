"""Elasticsearch-specific behaviour of ElasticsearchStore (the shared contract lives in test_store_contract.py).

Needs a real cluster at WARDWATCH_TEST_ES_URL (scripts/elasticsearch-dev start). Every test uses its own
index prefix and deletes its indices and template afterwards. The few tests that need a misbehaving server
(401, an old version) use a tiny fake HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import uuid
from typing import Any, Iterator

import pytest

from engine.alerts.model import Alert
from engine.store import es_layout
from engine.store.base import CursorUpdate, RuleCheckpoint, SearchQuery, StoreConflict, StoreError, StoreUnavailable
from engine.store.elasticsearch import ElasticsearchStore
from tests.conftest import require_elasticsearch

pytestmark = pytest.mark.elasticsearch


def _prefix() -> str:
    return f"wwtest-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def es_url() -> str:
    return require_elasticsearch()


@pytest.fixture
def store(es_url: str) -> Iterator[ElasticsearchStore]:
    s = ElasticsearchStore(hosts=[es_url], index_prefix=_prefix(), replicas=0)
    try:
        yield s
    finally:
        s.delete_all()
        s.close()


def ev(i: int, **fields: Any) -> dict[str, Any]:
    event = {
        "@timestamp": f"2026-11-02T09:15:{i // 1000 % 60:02d}.{i % 1000:03d}Z",
        "event.id": f"e{i:06d}",
        "event.dataset": "ehr.audit",
    }
    event.update(fields)
    return event


def ids(events: Any) -> list[str]:
    return [e["event.id"] for e in events]


# --- template and mappings ------------------------------------------------------------------------
def test_template_installed_with_explicit_mappings(store: ElasticsearchStore) -> None:
    name = es_layout.template_name(store.prefix)
    templates = store.es.indices.get_index_template(name=name)["index_templates"]
    assert len(templates) == 1
    body = templates[0]["index_template"]
    assert body["index_patterns"] == [f"{store.prefix}-events-*"]
    props = body["template"]["mappings"]["properties"]
    assert props["@timestamp"]["type"] == "date"
    assert props["event"]["properties"]["ingested"]["type"] == "date"
    assert props["event"]["properties"]["original"]["index"] is False
    assert props["source"]["properties"]["ip"] == {"type": "ip", "ignore_malformed": True}

    store.write([ev(1, **{"user.name": "Alice", "source.ip": "10.1.2.3"})])
    index = es_layout.events_index(store.prefix, "ehr.audit", ev(1)["@timestamp"])
    mapping = store.es.indices.get_mapping(index=index)[index]["mappings"]
    user_name = mapping["properties"]["user"]["properties"]["name"]
    assert user_name["type"] == "keyword" and user_name["normalizer"] == "lowercase"


def test_template_install_is_idempotent_and_upgrades(es_url: str, store: ElasticsearchStore) -> None:
    store.write([ev(1)])
    again = ElasticsearchStore(hosts=[es_url], index_prefix=store.prefix, replicas=0)  # reinstalls in place
    try:
        assert again.server_version == store.server_version
        assert again.write([ev(1)]).duplicates == 1
    finally:
        again.close()


# --- case-insensitive matching ----------------------------------------------------------------------
def test_keyword_normalizer_matches_case_insensitively_and_keeps_case(store: ElasticsearchStore) -> None:
    store.write([ev(1, **{"user.name": "admin"}), ev(2, **{"user.name": "ADMIN"}), ev(3, **{"user.name": "bob"})])
    store.watermark()  # refreshes
    index = es_layout.dataset_pattern(store.prefix, "ehr.audit")
    term = store.es.search(index=index, query={"term": {"user.name": "ADMIN"}})["hits"]["hits"]
    assert sorted(h["_source"]["user.name"] for h in term) == ["ADMIN", "admin"]

    for prefilter in ("user.name:ADMIN", "user.name:admin", "user.name:AdM*", "user.name:*DMI*"):
        got = list(store.search(SearchQuery(prefilter=prefilter)))
        assert ids(got) == ["e000001", "e000002"], prefilter
        # _source keeps the original case
        assert [e["user.name"] for e in got] == ["admin", "ADMIN"]


def test_keyword_search_without_field_is_case_insensitive(store: ElasticsearchStore) -> None:
    store.write([ev(1, **{"process.command_line": "C:\\Windows\\PSEXESVC.exe"}), ev(2, **{"x": "nothing"})])
    got = list(store.search(SearchQuery(prefilter="*psexesvc*")))
    assert ids(got) == ["e000001"]


# --- event.original ---------------------------------------------------------------------------------
def test_event_original_is_returned_but_not_searchable(store: ElasticsearchStore) -> None:
    store.write([ev(1, **{"event.original": "raw PATIENT 4711 record"})])
    assert list(store.search(SearchQuery(prefilter='event.original:"raw PATIENT 4711 record"'))) == []
    assert list(store.search(SearchQuery(prefilter="event.original:*4711*"))) == []
    [event] = list(store.search(SearchQuery()))
    assert event["event.original"] == "raw PATIENT 4711 record"


def test_malformed_ip_is_tolerated(store: ElasticsearchStore) -> None:
    result = store.write([ev(1, **{"source.ip": "not-an-ip"}), ev(2, **{"source.ip": "10.0.0.7"})])
    assert result.written == 2 and result.dead_lettered == 0
    assert ids(store.search(SearchQuery(prefilter='source.ip:"10.0.0.0/8"'))) == ["e000002"]
    assert [e["source.ip"] for e in store.search(SearchQuery())] == ["not-an-ip", "10.0.0.7"]


# --- writes ---------------------------------------------------------------------------------------
def test_replay_counts_duplicates_and_stores_once(store: ElasticsearchStore) -> None:
    batch = [ev(i) for i in range(20)]
    assert store.write(batch, CursorUpdate("c", {"pos": 20})).written == 20
    again = store.write(batch, CursorUpdate("c", {"pos": 20}))
    assert (again.written, again.duplicates) == (0, 20)
    half = store.write([ev(i) for i in range(10, 30)])
    assert (half.written, half.duplicates) == (10, 10)
    store.watermark()
    assert store.es.count(index=f"{store.prefix}-events-*")["count"] == 30


def test_mapping_conflict_goes_to_dead_letters_with_reason(store: ElasticsearchStore) -> None:
    store.write([ev(1, EventID=4625)])  # EventID becomes a long
    result = store.write([ev(2, EventID="not-a-number"), ev(3, EventID=4624)], CursorUpdate("c", {"line": 3}))
    assert (result.written, result.dead_lettered) == (1, 1)
    [letter] = store.list_dead_letters()
    assert "EventID" in letter.reason and "parsing" in letter.reason
    assert letter.location.endswith("/e000002")
    assert json.loads(letter.raw)["EventID"] == "not-a-number"
    assert store.get_cursor("c") == {"line": 3}  # the rejected record is kept, not re-read forever
    assert ids(store.search(SearchQuery())) == ["e000001", "e000003"]


def test_invalid_event_raises_before_anything_is_written(store: ElasticsearchStore) -> None:
    with pytest.raises(ValueError, match="canonical"):
        store.write([ev(1), {"@timestamp": "2026-11-02 09:15", "event.id": "x", "event.dataset": "d"}])
    assert store.watermark() is None


# --- watermark and search ---------------------------------------------------------------------------
def test_watermark_covers_acknowledged_writes_and_not_in_flight_ones(store: ElasticsearchStore) -> None:
    assert store.watermark() is None
    store.write([ev(i) for i in range(5)])
    w1 = store.watermark()
    assert w1 is not None
    assert len(list(store.search(SearchQuery(ingested_upto=w1)))) == 5
    # a write in flight (stamped, not acknowledged) holds the watermark back
    token, stamp = store._stamp()
    try:
        w2 = store.watermark()
        assert w2 is not None and w2 < store_ts(stamp)
    finally:
        store._inflight.pop(token)
    store.write([ev(i) for i in range(5, 8)])
    w3 = store.watermark()
    assert w3 is not None and w3 > w1
    new = list(store.search(SearchQuery(ingested_after=w1, ingested_upto=w3)))
    assert ids(new) == ["e000005", "e000006", "e000007"]
    assert all(w1 < e["event.ingested"] <= w3 for e in new)


def store_ts(ms: int) -> str:
    from engine.store.elasticsearch import _ts

    return _ts(ms)


def test_search_pages_in_order_with_fields_and_ranges(es_url: str) -> None:
    s = ElasticsearchStore(hosts=[es_url], index_prefix=_prefix(), replicas=0, search_page_size=7)
    try:
        events = [ev(i, **{"user.name": f"u{i}", "extra": "x"}) for i in range(50)]
        events += [dict(ev(i, **{"user.name": "v"}), **{"event.dataset": "vpn.session", "event.id": f"v{i}"})
                   for i in range(5)]
        s.write(list(reversed(events)))
        got = list(s.search(SearchQuery(datasets=["ehr.audit"], fields=["user.name"])))
        assert ids(got) == [f"e{i:06d}" for i in range(50)]
        assert set(got[0]) == {"@timestamp", "event.id", "event.dataset", "user.name"}
        window = list(s.search(SearchQuery(start=ev(10)["@timestamp"], end=ev(20)["@timestamp"],
                                           datasets=["ehr.audit"])))
        assert ids(window) == [f"e{i:06d}" for i in range(10, 20)]
        everything = list(s.search(SearchQuery()))
        assert len(everything) == 55
        assert ids(s.search(SearchQuery(datasets=["vpn.session", "nope"]))) == [f"v{i}" for i in range(5)]
        assert list(s.search(SearchQuery(datasets=[]))) == []
    finally:
        s.delete_all()
        s.close()


def test_search_with_no_indices_is_empty(store: ElasticsearchStore) -> None:
    assert list(store.search(SearchQuery())) == []
    assert list(store.search(SearchQuery(datasets=["ehr.audit"], prefilter="user.name:x"))) == []


# --- state: optimistic concurrency ---------------------------------------------------------------
def test_two_engines_cannot_silently_overwrite_a_checkpoint(es_url: str, store: ElasticsearchStore) -> None:
    other = ElasticsearchStore(hosts=[es_url], index_prefix=store.prefix, replicas=0)
    try:
        store.commit_rule_run(RuleCheckpoint("r1", watermark="2026-11-02T09:00:00.000Z"), [])
        assert store.get_checkpoint("r1").watermark == other.get_checkpoint("r1").watermark
        store.commit_rule_run(RuleCheckpoint("r1", watermark="2026-11-02T09:05:00.000Z"), [])
        with pytest.raises(StoreConflict, match="another engine"):
            other.commit_rule_run(RuleCheckpoint("r1", watermark="2026-11-02T09:01:00.000Z"), [])
        assert store.get_checkpoint("r1").watermark == "2026-11-02T09:05:00.000Z"
        # after re-reading, the other engine may go on
        other.get_checkpoint("r1")
        other.commit_rule_run(RuleCheckpoint("r1", watermark="2026-11-02T09:10:00.000Z"), [])
        assert store.get_checkpoint("r1").watermark == "2026-11-02T09:10:00.000Z"
    finally:
        other.close()


def test_two_engines_cannot_silently_overwrite_a_cursor(es_url: str, store: ElasticsearchStore) -> None:
    other = ElasticsearchStore(hosts=[es_url], index_prefix=store.prefix, replicas=0)
    try:
        assert store.get_cursor("c") is None and other.get_cursor("c") is None
        store.write([ev(1)], CursorUpdate("c", {"pos": 1}))
        with pytest.raises(StoreConflict):
            other.write([ev(2)], CursorUpdate("c", {"pos": 2}))
        assert store.get_cursor("c") == {"pos": 1}
    finally:
        other.close()


def _alert(i: int, revision: int = 1, rule: str = "r1", group: str = "g") -> Alert:
    return Alert(id=f"a{i}", rule_id=rule, rule_title="t", rule_level="high", rule_tags=["attack.t1078"],
                 kind="match", group={"user.name": "x"}, group_key=group,
                 window_start="2026-11-02T09:00:00.000Z", window_end="2026-11-02T09:05:00.000Z",
                 first_trigger=f"2026-11-02T09:0{i}:00.000Z", last_trigger=f"2026-11-02T09:0{i}:30.000Z",
                 evidence=["e1"], evidence_total=1, revision=revision)


def test_alerts_upsert_and_outbox(store: ElasticsearchStore) -> None:
    store.commit_rule_run(RuleCheckpoint("r1", watermark="w1"), [_alert(1), _alert(2)])
    store.commit_rule_run(RuleCheckpoint("r1", watermark="w2"), [_alert(1)])  # replay: same alert id
    assert [a.id for a in store.list_alerts()] == ["a1", "a2"]
    assert store.get_alert("a1") == _alert(1) and store.get_alert("nope") is None
    assert store.latest_alert("r1", "g") == _alert(2)
    assert [a.id for a in store.pending_deliveries("jsonl")] == ["a1", "a2"]
    store.mark_delivered("jsonl", [_alert(1)])
    assert [a.id for a in store.pending_deliveries("jsonl")] == ["a2"]
    store.commit_rule_run(RuleCheckpoint("r1", watermark="w3"), [_alert(1, revision=2)])
    assert [(a.id, a.revision) for a in store.pending_deliveries("jsonl")] == [("a2", 1), ("a1", 2)]
    assert store.get_checkpoint("r1").watermark == "w3"


# --- connection errors ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_host_is_a_clear_store_unavailable() -> None:
    port = _free_port()
    with pytest.raises(StoreUnavailable, match=rf"cannot reach Elasticsearch at http://127.0.0.1:{port}"):
        ElasticsearchStore(hosts=[f"http://127.0.0.1:{port}"], max_retries=1, retry_backoff_seconds=0.01,
                           request_timeout=2)


class _Fake(http.server.BaseHTTPRequestHandler):
    status = 200
    payload: dict[str, Any] = {}

    def _reply(self) -> None:
        body = json.dumps(self.payload).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _reply  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_server() -> Iterator[Any]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(status: int, payload: dict[str, Any]) -> str:
        handler = type("Handler", (_Fake,), {"status": status, "payload": payload})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_wrong_credentials_is_a_clear_error(fake_server: Any) -> None:
    url = fake_server(401, {"error": {"type": "security_exception", "reason": "unable to authenticate user"},
                            "status": 401})
    with pytest.raises(StoreError, match="rejected the credentials") as info:
        ElasticsearchStore(hosts=[url], basic_auth="elastic:wrong")
    assert "wrong" not in str(info.value)  # never echo a secret
    assert not isinstance(info.value, StoreUnavailable)


def test_unsupported_server_major_is_refused(fake_server: Any) -> None:
    url = fake_server(200, {"version": {"number": "7.17.25"}, "tagline": "You Know, for Search"})
    with pytest.raises(StoreError, match=r"7\.17\.25 .* not supported: Wardwatch needs 8.x or 9.x"):
        ElasticsearchStore(hosts=[url])


def test_credentials_in_a_url_are_redacted_in_messages() -> None:
    port = _free_port()
    with pytest.raises(StoreUnavailable) as info:
        ElasticsearchStore(hosts=[f"http://elastic:s3cret@127.0.0.1:{port}"], max_retries=0, request_timeout=2)
    assert "s3cret" not in str(info.value)
