"""``elasticsearch-source`` against the real Elasticsearch: every document once, whatever the paging, the
refreshes, the reruns and the PIT's fate; the mapping as our own connectors map; clear failures.

Documents come from tests/data/elasticsearch_source/documents.ndjson (our generator, seed 9); each test
indexes them into its own ``wwsrc-<uuid>-*`` indices through an ingest pipeline that stamps
``event.ingested`` the way Elastic's integrations do, and deletes what it created.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import ConnectorConfigError
from connectors.elasticsearch_source import mapping
from connectors.elasticsearch_source.connector import ElasticsearchSourceConnector
from connectors.elasticsearch_source.mapping import MappingError, MappingSettings, map_document
from connectors.vpn.connectors import CiscoAsaConnector, FortiGateConnector
from connectors.windows.record import WindowsRecord
from engine.cli import main
from engine.config import ConfigError, load_config
from engine.events import CANONICAL_TIMESTAMP
from engine.identity import windows_id
from tests.conftest import require_elasticsearch

DATA = Path(__file__).resolve().parent / "data" / "elasticsearch_source" / "documents.ndjson"
DOCS: list[dict[str, Any]] = [orjson.loads(line) for line in DATA.read_bytes().splitlines()]


# --- cluster fixtures ------------------------------------------------------------------------------------

@pytest.fixture
def cluster() -> Iterator["Cluster"]:
    url = require_elasticsearch()
    c = Cluster(url)
    try:
        yield c
    finally:
        c.cleanup()


class Cluster:
    """A unique namespace on the shared test cluster: indices, a pipeline, templates; all deleted after."""

    def __init__(self, url: str):
        from elasticsearch import Elasticsearch

        self.url = url
        self.es = Elasticsearch(url, request_timeout=30)
        self.prefix = f"wwsrc-{uuid.uuid4().hex[:10]}"
        self.pipeline = f"{self.prefix}-ingested"
        self.templates: list[str] = []
        try:
            self.es.ingest.put_pipeline(id=self.pipeline, processors=[
                {"set": {"field": "event.ingested", "value": "{{_ingest.timestamp}}"}}])
        except Exception as exc:  # noqa: BLE001 - a minimal distribution has no ingest-common module
            if "No processor type exists" not in str(exc):
                raise
            self.pipeline = None  # stamp event.ingested in the bulk request instead, at the moment it is sent

    def index(self, suffix: str, *, nanos: bool = False, manual_refresh: bool = False) -> str:
        """A new index with the pipeline as default (``event.ingested`` as date or date_nanos)."""
        name = f"{self.prefix}-{suffix}"
        settings_: dict[str, Any] = {"number_of_shards": 2, "number_of_replicas": 0}
        if self.pipeline:
            settings_["default_pipeline"] = self.pipeline
        if manual_refresh:
            settings_["refresh_interval"] = "-1"
        self.es.indices.create(index=name, settings=settings_, mappings={"properties": {
            "@timestamp": {"type": "date"},
            "event": {"properties": {"ingested": {"type": "date_nanos" if nanos else "date"}}}}})
        return name

    def put(self, index: str, docs: list[dict[str, Any]], *, refresh: bool = True, op_type: str = "index") -> None:
        from elasticsearch import helpers

        sources = [d["_source"] for d in docs]
        if self.pipeline is None:  # what the set processor would write: the time the document is ingested
            now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
            sources = [{**src, "event": {**src.get("event", {}), "ingested": now}} for src in sources]
        actions = [{"_op_type": op_type, "_index": index, "_id": d["_id"], "_source": src}
                   for d, src in zip(docs, sources)]
        ok, errors = helpers.bulk(self.es, actions, refresh="true" if refresh else "false", raise_on_error=False)
        assert not errors and ok == len(docs)

    def connector(self, index: str | None = None, **options: Any) -> ElasticsearchSourceConnector:
        options.setdefault("hosts", [self.url])
        return ElasticsearchSourceConnector("es-src", {"index": index or f"{self.prefix}-*", **options})

    def cleanup(self) -> None:
        # the cluster refuses wildcard deletes (action.destructive_requires_name): delete by name
        streams = self.es.options(ignore_status=(400, 404)).indices.get_data_stream(name=f"{self.prefix}-*")
        for stream in streams.get("data_streams", []) if isinstance(streams.body, dict) else []:
            self.es.options(ignore_status=404).indices.delete_data_stream(name=stream["name"])
        names = list(self.es.indices.get(index=f"{self.prefix}-*", expand_wildcards="all",
                                         allow_no_indices=True, ignore_unavailable=True))
        # a data stream's write index cannot be deleted, and without the data stream API (the integ-test
        # distribution) neither can the stream: it stays, empty-named and uniquely prefixed, in that cluster
        names = [n for n in names if not n.startswith(".ds-")]
        if names:
            self.es.options(ignore_status=404).indices.delete(index=",".join(names))
        for name in self.templates:
            self.es.options(ignore_status=(400, 404)).indices.delete_index_template(name=name)
        if self.pipeline:
            self.es.options(ignore_status=404).ingest.delete_pipeline(id=self.pipeline)
        self.es.close()


def read_all(conn: ElasticsearchSourceConnector, cursor: dict[str, Any] | None = None,
             max_events: int = 50) -> tuple[list[dict[str, Any]], list[Any], dict[str, Any] | None]:
    """Read until the source is exhausted, as the engine does (committing each batch's cursor)."""
    events: list[dict[str, Any]] = []
    dead: list[Any] = []
    for _ in range(10_000):
        batch = conn.read(cursor, max_events)
        assert batch.unavailable is None, batch.unavailable
        events += batch.events
        dead += batch.dead_letters
        cursor = batch.cursor
        if batch.exhausted:
            return events, dead, cursor
    raise AssertionError("never exhausted")


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["event.id"] for e in events]


# --- reading ---------------------------------------------------------------------------------------------

@pytest.mark.elasticsearch
def test_every_document_once_across_many_pages_and_reruns(cluster):
    index = cluster.index("logs")
    cluster.put(index, DOCS)
    conn = cluster.connector(batch_size=7, timezone="Europe/Berlin")
    events, dead, cursor = read_all(conn, max_events=40)
    assert not dead
    assert len(events) == len(DOCS) == len(set(ids(events)))
    datasets = Counter(e["event.dataset"] for e in events)
    assert datasets == {"windows.security": 153, "vpn.auth": 249, "system.auth": 46, "elasticsearch": 24}
    # a rerun from the committed cursor finds nothing new; a rerun from scratch finds the same ids
    again, _, cursor2 = read_all(conn, cursor)
    assert again == []
    fresh, _, _ = read_all(cluster.connector(batch_size=500), None, max_events=1000)
    assert sorted(ids(fresh)) == sorted(ids(events))
    # the cursor stays small: only ids inside the overlap window are remembered
    assert len(orjson.dumps(cursor2)) < 40 * len(DOCS)
    conn.close()


@pytest.mark.elasticsearch
def test_the_vpn_rules_fire_on_documents_read_from_elasticsearch(cluster):
    """The fixture's password guessing against mhorn (12 failures then a success on each gateway) raises
    "VPN brute force followed by successful login" for mhorn only, as it does for the syslog fixtures."""
    from engine.app import alerts_over_sample
    from engine.sigma import load_rules

    index = cluster.index("logs")
    cluster.put(index, DOCS)
    events, _, _ = read_all(cluster.connector(timezone="Europe/Berlin"), max_events=500)
    rule = Path(__file__).resolve().parents[1] / "rules/healthcare/vpn_bruteforce_then_success.yml"
    ruleset = load_rules([str(rule)])
    assert not ruleset.errors
    alerts = alerts_over_sample(ruleset, events)
    assert {(a.rule_title, a.group["user.name"]) for a in alerts} == {
        ("VPN brute force followed by successful login", "mhorn")}


@pytest.mark.elasticsearch
def test_documents_indexed_during_a_read_are_not_missed(cluster):
    index = cluster.index("logs")
    cluster.put(index, DOCS[:200])
    conn = cluster.connector(batch_size=25)
    first = conn.read(None, 60)
    assert not first.exhausted and first.cursor["pit"]  # mid-snapshot
    cluster.put(index, DOCS[200:])  # arrives while the snapshot is open: not in it
    rest, _, cursor = read_all(conn, first.cursor, max_events=60)
    assert len(first.events + rest) == 200  # the snapshot ends where it began
    next_poll, _, cursor = read_all(conn, cursor, max_events=60)  # a fresh snapshot from high - overlap
    events = first.events + rest + next_poll
    assert sorted(ids(events)) == sorted(ids(map_all(DOCS, index)))
    assert len(set(ids(events))) == len(DOCS)


@pytest.mark.elasticsearch
@pytest.mark.parametrize("overlap, found", [("2m", True), ("0s", False)])
def test_a_late_refreshed_document_inside_the_overlap_is_read_once(cluster, overlap, found):
    slow = cluster.index("slow", manual_refresh=True)  # refreshes only when told: the "late" shard
    fast = cluster.index("fast", nanos=True)           # date_nanos here, date there: one sort still
    late, later = DOCS[0], DOCS[1]
    cluster.put(slow, [late], refresh=False)           # stamped first, searchable later
    time.sleep(0.05)
    cluster.put(fast, [later])
    conn = cluster.connector(overlap=overlap)
    seen, _, cursor = read_all(conn)
    assert ids(seen) == ids(map_all([later], fast))
    cluster.es.indices.refresh(index=slow)
    after, _, cursor = read_all(conn, cursor)
    # with the overlap the late document is found and the other one is not read twice; without, it is lost
    assert ids(after) == (ids(map_all([late], slow)) if found else [])


@pytest.mark.elasticsearch
def test_a_closed_or_expired_point_in_time_is_reopened_from_the_cursor(cluster):
    index = cluster.index("logs")
    cluster.put(index, DOCS)
    conn = cluster.connector(batch_size=30)
    first = conn.read(None, 100)
    assert first.cursor["pit"]
    cluster.es.close_point_in_time(id=first.cursor["pit"])  # as if keep_alive had passed
    rest, dead, _ = read_all(conn, first.cursor, max_events=100)
    events = first.events + rest
    assert not dead
    assert len(events) == len(set(ids(events))) == len(DOCS)


@pytest.mark.elasticsearch
def test_documents_without_event_ingested_are_counted_in_a_warning_and_an_old_index_is_no_error(cluster):
    from structlog.testing import capture_logs

    index = cluster.index("logs")
    cluster.put(index, DOCS[:30])
    old = f"{cluster.prefix}-old"  # written without a pipeline, event.ingested never mapped there
    cluster.es.indices.create(index=old, settings={"number_of_replicas": 0})
    cluster.es.index(index=old, id="o1", document=DOCS[40]["_source"], refresh=True)
    with capture_logs() as logs:
        events, _, _ = read_all(cluster.connector())
    assert len(events) == 30
    [warning] = [entry for entry in logs if entry["log_level"] == "warning"]
    assert warning["count"] == 1 and warning["cursor_field"] == "event.ingested"
    # the event-time cursor the docs recommend for such indices reads it too
    by_time, _, _ = read_all(cluster.connector(old, cursor_field="@timestamp"))
    assert len(by_time) == 1


@pytest.mark.elasticsearch
def test_a_document_without_a_time_is_a_dead_letter_at_its_index_and_id_and_the_cursor_moves_past(cluster):
    index = cluster.index("logs")
    bad = {"_id": "no-time", "_source": {"message": "heartbeat", "host": {"name": "pacs01"}}}
    cluster.put(index, [DOCS[0], bad, DOCS[1]])
    events, dead, cursor = read_all(cluster.connector())
    assert len(events) == 2
    [letter] = dead
    assert (letter.location, letter.reason) == (f"{index}/no-time", "field '@timestamp': missing timestamp")
    raw = orjson.loads(letter.raw)
    raw.pop("event")  # event.ingested, stamped on the way in
    assert raw == bad["_source"] and letter.source == "elasticsearch-source:es-src"
    again, dead_again, _ = read_all(cluster.connector(), cursor)
    assert again == [] and dead_again == []


@pytest.mark.elasticsearch
def test_fields_cuts_documents_down_to_what_rules_need(cluster):
    index = cluster.index("logs")
    generic = [d for d in DOCS if d["_source"].get("data_stream", {}).get("dataset") == "system.auth"]
    cluster.put(index, generic)
    events, _, _ = read_all(cluster.connector(fields=["user.name", "source.*", "event.outcome"]))
    assert len(events) == len(generic)
    keys = set().union(*(e.keys() for e in events))
    assert keys == {"@timestamp", "event.id", "event.dataset", "data_stream.dataset", "user.name", "source.ip",
                    "event.outcome"}
    full, _, _ = read_all(cluster.connector())
    assert {"message", "host.name", "process.name"} <= set().union(*(e.keys() for e in full))


@pytest.mark.elasticsearch
def test_a_data_stream_is_read_and_its_backing_index_is_the_identity(cluster):
    name = f"{cluster.prefix}-ds"
    template = f"{cluster.prefix}-template"
    # The integ-test distribution CI runs creates data streams but has no _data_stream API (no GET, no
    # DELETE): the backing index is found through the index API, and the (empty-named, uniquely prefixed)
    # stream stays behind in that throw-away cluster.
    index_settings: dict[str, Any] = {"number_of_replicas": 0}
    if cluster.pipeline:
        index_settings["default_pipeline"] = cluster.pipeline
    cluster.es.indices.put_index_template(name=template, index_patterns=[f"{name}*"], data_stream={},
                                          priority=500, template={"settings": index_settings})
    cluster.templates.append(template)
    cluster.put(name, DOCS[:60], op_type="create")
    events, _, _ = read_all(cluster.connector(name))
    assert len(events) == 60
    backing_indices = [i for i in cluster.es.indices.get(index=name) if i.startswith(".ds-")]
    assert len(backing_indices) == 1
    backing = backing_indices[0]
    generic = [e for e in events if e["event.dataset"] == "elasticsearch"]
    assert generic and all(e["event.id"] == mapping.document_id(backing, e_id)
                           for e, e_id in zip(generic, doc_ids_of(events, generic)))


def doc_ids_of(events: list[dict[str, Any]], subset: list[dict[str, Any]]) -> list[str]:
    """The fixture ``_id`` of each event in ``subset`` (matched through the message it carries)."""
    by_message = {d["_source"].get("message"): d["_id"] for d in DOCS[:60]}
    return [by_message[e["message"]] for e in subset]


def map_all(docs: list[dict[str, Any]], index: str) -> list[dict[str, Any]]:
    s = MappingSettings()
    return [map_document({"_index": index, "_id": d["_id"], "_source": d["_source"]}, s, mapping.windows_mapper())
            for d in docs]


# --- refusals and failures -------------------------------------------------------------------------------

@pytest.mark.elasticsearch
def test_an_alias_onto_the_store_indices_is_refused_with_one_line(cluster):
    store_prefix = f"{cluster.prefix}-store"
    cluster.es.indices.create(index=f"{store_prefix}-events-vpn.auth-2026.11")
    cluster.es.indices.put_alias(index=f"{store_prefix}-events-vpn.auth-2026.11", name=f"{cluster.prefix}-alias")
    conn = cluster.connector(f"{cluster.prefix}-alias", store_index_prefix=store_prefix)
    with pytest.raises(ConnectorConfigError, match=r"matches Wardwatch's own store indices"):
        conn.read(None, 10)


@pytest.mark.elasticsearch
def test_a_missing_index_is_unavailable_naming_it(cluster):
    batch = cluster.connector(f"{cluster.prefix}-nope").read(None, 10)
    assert batch.unavailable == (f"connector 'es-src': index '{cluster.prefix}-nope' does not exist on "
                                 f"{cluster.url}")
    assert batch.events == [] and batch.cursor["high_ms"] is None


@pytest.mark.elasticsearch
def test_wardwatch_ingest_reads_an_index_once_into_the_store(cluster, tmp_path, capsys, monkeypatch):
    index = cluster.index("logs")
    cluster.put(index, DOCS)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wardwatch.yaml").write_text("store:\n  sqlite: {path: w.db}\nconnectors: []\nalerts:\n  sinks: []\n")
    argv = ["ingest", "elasticsearch-source", index, "-o", f"index={index}", "-o", f"hosts=[{cluster.url}]"]
    assert main(argv) == 0
    assert f"{len(DOCS)} events read, {len(DOCS)} stored" in capsys.readouterr().out
    assert main(argv) == 0  # the committed cursor: nothing new, nothing stored twice
    assert "0 events read, 0 stored" in capsys.readouterr().out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_cluster_is_unavailable_and_the_cli_exits_1(tmp_path, capsys, monkeypatch):
    host = f"http://127.0.0.1:{_free_port()}"
    conn = ElasticsearchSourceConnector("hospital-es", {"index": "logs-system.security-*", "hosts": [host],
                                                        "request_timeout": 2})
    cursor = {"v": 1, "high_ms": 5, "seen": {}, "pit": None, "pit_since_ms": None, "after": None}
    batch = conn.read(cursor, 10)
    assert batch.unavailable == f"connector 'hospital-es': Elasticsearch at {host} is unreachable (ConnectionError)"
    assert batch.cursor["high_ms"] == 5 and batch.events == []  # the cursor is kept: nothing lost
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wardwatch.yaml").write_text("store:\n  sqlite: {path: w.db}\nconnectors: []\nalerts:\n  sinks: []\n")
    code = main(["ingest", "elasticsearch-source", "logs-x", "-o", "index=logs-system.security-*",
                 "-o", f"hosts=[{host}]", "-o", "request_timeout=2"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "unreachable" in out + err and "Traceback" not in out + err


@pytest.mark.parametrize("entry, key, message", [
    ({"index": "wardwatch-events-*"}, "connectors[0].index", "own store indices"),
    ({"index": "*"}, "connectors[0].index", "own store indices"),
    ({"index": "logs-*", "batch_size": "lots"}, "connectors[0].batch_size", "expected an integer"),
    ({"index": "logs-*", "overlap": "soon"}, "connectors[0].overlap", "not a duration"),
    ({"index": "logs-*", "password": "hunter2"}, "connectors[0].password", "password_file"),
    ({"index": "logs-*", "indexx": "x"}, "connectors[0].indexx", "unknown option"),
    ({"index": "logs-*", "username": "reader"}, "connectors[0].username", "password_file"),
    ({"index": "logs-*", "hosts": ["http://es.hospital.example:9200"], "api_key_file": "/run/k"},
     "connectors[0].hosts", "plain http://"),
    ({}, "connectors[0].index", "required"),
    ({"index": "logs-*", "store": "hospital"}, "connectors[0].store_index_prefix",
     "must equal store.elasticsearch.index_prefix ('hospital')"),
])
def test_config_errors_name_the_key(tmp_path, entry, key, message):
    import yaml

    config: dict[str, Any] = {}
    entry = dict(entry)
    if "store" in entry:  # an Elasticsearch store with its own prefix the connector was not told about
        config["store"] = {"kind": "elasticsearch", "elasticsearch": {"index_prefix": entry.pop("store")}}
    config["connectors"] = [{"name": "es", "type": "elasticsearch-source", **entry}]
    path = tmp_path / "wardwatch.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    text = str(info.value)
    assert key in text and message in text and "hunter2" not in text


@pytest.mark.parametrize("pattern, refused", [
    ("logs-system.security-*", False), ("winlogbeat-*", False), ("logs-*,winlogbeat-*", False),
    ("ward*", True), ("w*", True), ("*", True), ("_all", True), ("wardwatch-events-*", True),
    ("logs-*,wardwatch-state", True), ("-wardwatch-*", False), ("wardwatchers-logs", False),
])
def test_patterns_that_could_name_the_store_indices_are_refused(pattern, refused):
    from connectors.elasticsearch_source.connector import ElasticsearchSourceOptions
    from engine.plugins import InvalidOption, parse_options

    if refused:
        with pytest.raises(InvalidOption, match=r"would read Wardwatch's own store indices \(wardwatch-\*\)"):
            parse_options(ElasticsearchSourceOptions, {"index": pattern})
    else:
        assert parse_options(ElasticsearchSourceOptions, {"index": pattern}).index == pattern


def test_a_missing_secret_file_is_one_line_naming_its_option(tmp_path):
    with pytest.raises(ConnectorConfigError, match=r"connector 'es': api_key_file: cannot read secret file "
                                                   r".*/missing-key: No such file"):
        ElasticsearchSourceConnector("es", {"index": "logs-*", "hosts": ["https://es.hospital.example:9200"],
                                            "api_key_file": str(tmp_path / "missing-key")})
    import base64

    key = tmp_path / "key"
    encoded = base64.b64encode(b"ww-key-id-01:ww-secret-01").decode()
    headers = []
    for text in ("ww-key-id-01:ww-secret-01\n", encoded):  # as Kibana shows it, or its "encoded" form
        key.write_text(text)
        conn = ElasticsearchSourceConnector("es", {"index": "logs-*", "hosts": ["https://es.hospital.example:9200"],
                                                   "api_key_file": str(key)})
        headers.append(conn.es._headers["authorization"])  # built once by the client from what we gave it
        conn.close()
    assert headers == [f"ApiKey {encoded}", f"ApiKey {encoded}"]


# --- mapping (no cluster) --------------------------------------------------------------------------------

def _hit(doc: dict[str, Any], index: str = "logs-idx") -> dict[str, Any]:
    return {"_index": index, "_id": doc["_id"], "_source": doc["_source"]}


def _first(predicate) -> dict[str, Any]:
    return next(d for d in DOCS if predicate(d["_source"]))


@pytest.mark.parametrize("cls, dataset", [(CiscoAsaConnector, "cisco_asa.log"),
                                          (FortiGateConnector, "fortinet_fortigate.log")])
def test_a_vpn_document_maps_exactly_as_our_syslog_connector_maps_its_line(tmp_path, cls, dataset):
    doc = _first(lambda s: s["data_stream"].get("dataset") == dataset if "data_stream" in s and "original"
                 in s.get("event", {}) else False)
    line = doc["_source"]["event"]["original"]
    (tmp_path / "vpn.log").write_text(line + "\n")
    syslog = cls("file", {"path": str(tmp_path / "vpn.log"), "timezone": "Europe/Berlin"})
    syslog.read_to_end()
    [from_file] = syslog.read(None, 10).events
    from_es = map_document(_hit(doc), MappingSettings(timezone="Europe/Berlin"))
    assert from_es.pop("event.id") != from_file.pop("event.id")  # ids: index+_id vs line position
    assert from_es == from_file


@pytest.mark.parametrize("dataset, expected", [
    ("cisco_asa.log", {"event.code": "113005", "event.action": "vpn-login", "event.outcome": "failure",
                       "user.name": "mhorn", "source.ip": "203.0.113.201", "vpn.reason": "AAA failure"}),
    ("fortinet_fortigate.log", {"event.code": "0101039426", "event.action": "vpn-login",
                                "event.outcome": "failure", "user.name": "mhorn", "user.domain": "klinikum",
                                "source.ip": "203.0.113.201", "vpn.reason": "sslvpn_login_permission_denied"}),
    ("panw.panos", {"event.action": "vpn-login", "event.outcome": "failure", "user.name": "mhorn",
                    "source.ip": "203.0.113.201", "vpn.portal": "GP-Portal-KLINIKUM"}),
])
def test_vpn_documents_without_event_original_are_rebuilt_into_our_vocabulary(dataset, expected):
    doc = _first(lambda s: s.get("data_stream", {}).get("dataset") == dataset
                 and "original" not in s.get("event", {}) and s.get("source", {}).get("ip") == "203.0.113.201")
    event = map_document(_hit(doc), MappingSettings())
    assert {k: event.get(k) for k in expected} == expected
    assert event["event.dataset"] == "vpn.auth" and "event.original" not in event
    assert event["@timestamp"] == doc["_source"]["@timestamp"]


def test_windows_documents_go_through_the_windows_record_contract_and_keep_the_windows_identity():
    doc = _first(lambda s: "winlog" in s and s["winlog"]["event_id"] == "4625")
    calls: list[Any] = []

    def stub(source: dict[str, Any]) -> WindowsRecord:  # the contract: Winlogbeat document -> WindowsRecord
        calls.append(source)
        w = source["winlog"]
        return WindowsRecord(channel=w["channel"], provider=w["provider_name"], event_id=int(w["event_id"]),
                             record_id=int(w["record_id"]), computer=w["computer_name"],
                             time=source["@timestamp"], data=w["event_data"], keywords="0x8010000000000000")

    event = map_document(_hit(doc), MappingSettings(), windows=stub)
    assert calls and event["EventID"] == 4625 and event["TargetUserName"] == doc["_source"]["winlog"][
        "event_data"]["TargetUserName"]
    assert event["event.dataset"] == "windows.security" and event["event.outcome"] == "failure"
    w = doc["_source"]["winlog"]
    assert event["event.id"] == windows_id(w["computer_name"], w["channel"], int(w["record_id"]),
                                        event["@timestamp"][:19])
    # without the Winlogbeat module the document is kept as ECS, and still one Windows identity
    plain = map_document(_hit(doc, "other-index"), MappingSettings(), windows=None)
    assert plain["event.id"] == windows_id(w["computer_name"], w["channel"], w["record_id"], plain["@timestamp"][:19])
    assert plain["winlog.event_data.TargetUserName"] == event["TargetUserName"]


def test_windows_documents_with_the_real_winlogbeat_records_module():
    real = mapping.windows_mapper()
    if real is None:
        pytest.skip("connectors.windows.winlogbeat_records is not installed yet")
    doc = _first(lambda s: "winlog" in s)
    event = map_document(_hit(doc), MappingSettings(), windows=real)
    w = doc["_source"]["winlog"]
    assert event["EventID"] == int(w["event_id"]) and event["event.dataset"] == "windows.security"
    second = event["@timestamp"][:19]
    assert event["event.id"] in (windows_id(w["computer_name"], w["channel"], int(w["record_id"]), second),
                                 windows_id(w["computer_name"], w["channel"], w["record_id"], second))


@pytest.mark.parametrize("fixture", ["winlogbeat-8.ndjson", "winlogbeat-7.ndjson", "elastic-agent.ndjson"])
def test_a_winlogbeat_document_in_elasticsearch_is_the_same_event_as_from_the_winlogbeat_connector(fixture):
    """Same record, same event (and the same event.id): read from a Winlogbeat file or from the index."""
    path = Path(__file__).resolve().parent / "data" / "winlogbeat" / fixture
    if mapping.windows_mapper() is None or not path.is_file():
        pytest.skip("the winlogbeat connector or its fixtures are not there")
    from connectors.windows.winlogbeat import WinlogbeatConnector

    reader = WinlogbeatConnector("file", {"path": str(path)})
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    compared = 0
    for n, line in enumerate(lines):
        from_file = reader.document_to_event(line, f"line:{n + 1}")
        if not isinstance(from_file, dict) or "EventRecordID" not in from_file:
            continue
        from_es = map_document({"_index": "winlogbeat-8.15.3-2026.12.01", "_id": f"d{n}",
                                "_source": orjson.loads(line)}, MappingSettings(), mapping.windows_mapper())
        from_file.pop("event.original")
        from_es.pop("event.original", None)
        assert from_es == from_file
        compared += 1
    assert compared >= len(lines) // 2


def test_documents_without_a_timestamp_are_mapping_errors_naming_the_field():
    with pytest.raises(MappingError, match=r"field '@timestamp': missing timestamp"):
        map_document({"_index": "i", "_id": "1", "_source": {"message": "x"}}, MappingSettings())
    with pytest.raises(MappingError, match=r"field 'ts': invalid timestamp"):
        map_document({"_index": "i", "_id": "1", "_source": {"ts": "yesterday"}},
                     MappingSettings(time_field="ts"))


_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.floats(allow_nan=True),
                    st.text(max_size=30))
_keys = st.sampled_from(["@timestamp", "event", "original", "code", "winlog", "data_stream", "dataset",
                         "message", "cisco", "asa", "message_id", "fortinet", "firewall", "logid", "type",
                         "panw", "panos", "source", "ip", "user", "name", "channel", "record_id",
                         "computer_name", "event_id", "x"])
_docs = st.recursive(_scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(_keys, inner, max_size=5)), max_leaves=25)
_datasets = st.sampled_from(["cisco_asa.log", "fortinet_fortigate.log", "panw.panos", "system.security", None])
_stamps = st.one_of(st.sampled_from(["2026-11-02T06:00:00Z", "2026-11-02T07:00:00.123+01:00", 1793598300000]),
                    _scalar)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.dictionaries(_keys, _docs, max_size=6), dataset=_datasets, stamp=_stamps,
       original=st.one_of(st.none(), st.text(max_size=120)))
def test_fuzz_map_document_returns_an_event_or_a_mapping_error(body, dataset, stamp, original):
    source: dict[str, Any] = dict(body)
    source["@timestamp"] = stamp
    if dataset is not None:
        source["data_stream"] = {"dataset": dataset}
    if original is not None:
        source["event"] = {"original": original}
    try:
        event = map_document({"_index": "idx", "_id": "1", "_source": source}, _FUZZ_SETTINGS,
                             windows=mapping.windows_mapper())
    except MappingError as exc:
        assert str(exc).startswith(("field ", "_source", "_index"))
        return
    assert CANONICAL_TIMESTAMP.match(event["@timestamp"])
    assert isinstance(event["event.dataset"], str) and event["event.dataset"]
    assert isinstance(event["event.id"], str) and len(event["event.id"]) == 32
    assert "event.ingested" not in event
    orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS)


_FUZZ_SETTINGS = MappingSettings()


def test_cursor_json_round_trips_and_a_foreign_cursor_starts_over():
    from connectors.elasticsearch_source.query import CursorState

    state = CursorState(high_ms=10, seen={"a": 9}, pit="p", pit_since_ms=1, after=[10, 3])
    assert CursorState.load(orjson.loads(orjson.dumps(state.to_dict()))) == state
    assert CursorState.load({"files": {}}) == CursorState()
    state.emitted("b", 200_000)
    state.trim(120_000)
    assert state.seen == {"b": 200_000}  # "a" is older than high - overlap: a fresh snapshot cannot return it
