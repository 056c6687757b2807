"""The elasticsearch sink against the real cluster (WARDWATCH_TEST_ES_URL): one document per alert id,
the newest revision wins whatever order revisions arrive in, and a crash between indexing and the outbox
acknowledgement still leaves one document."""

from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest

from engine.alerts.model import Alert
from engine.alerts.sinks.base import SinkConfigError
from engine.alerts.sinks.delivery import deliver_pending
from engine.alerts.sinks.es_index import ElasticsearchSink
from engine.errors import SinkUnavailable
from engine.store.base import RuleCheckpoint
from tests.conftest import require_elasticsearch
from tests.store_fixtures import make_alert, store  # noqa: F401 - fixture

pytestmark = pytest.mark.elasticsearch


@pytest.fixture(scope="module")
def sink() -> Iterator[ElasticsearchSink]:
    """One sink (two indices) for the module: creating indices is the slow part on a busy cluster; each test
    uses alerts of its own rule id, so their documents never meet."""
    url = require_elasticsearch()
    prefix = f"wwsink-{uuid.uuid4().hex[:10]}"
    s = ElasticsearchSink({"hosts": [url], "index_prefix": prefix, "refresh": True}, name="kibana")
    yield s
    s.es.indices.delete(index=",".join(s.indices.values()), ignore_unavailable=True)
    s.close()


def _alert(**extra: Any) -> Any:
    """An alert of a rule id no other test uses (its own document id)."""
    return make_alert(rule_id=extra.pop("rule_id", "rule") + "-" + uuid.uuid4().hex[:8], **extra)


def _docs(sink: ElasticsearchSink, *ids: str, record: str = "alert") -> list[dict[str, Any]]:
    index = sink.indices[record]
    sink.es.indices.refresh(index=index)
    hits = sink.es.search(index=index, query={"ids": {"values": list(ids)}}, version=True, size=100)["hits"]["hits"]
    return [{**h["_source"], "_id": h["_id"], "_version": h["_version"]} for h in hits]


def test_alert_document_has_the_explicit_mapping_and_lifted_fields(sink: ElasticsearchSink):
    alert = _alert(triggers=2)
    sink.deliver([alert])
    [doc] = _docs(sink, alert.id)
    assert doc["_id"] == alert.id and doc["_version"] == 1
    assert doc["user"] == "jdoe" and doc["level"] == "high" and doc["@timestamp"] == alert.last_trigger
    props = sink.es.indices.get_mapping(index=sink.indices["alert"])[sink.indices["alert"]]["mappings"]
    assert props["dynamic"] == "false" and props["_meta"]["wardwatch"] == "alert-sink"
    types = {k: v.get("type") for k, v in props["properties"].items()}
    assert types["@timestamp"] == "date" and types["rule_id"] == "keyword" and types["group"] == "flattened"
    found = sink.es.search(index=sink.indices["alert"], query={"bool": {"filter": [
        {"term": {"group.user.name": "jdoe"}}, {"term": {"rule_id": alert.rule_id}}]}})
    assert found["hits"]["total"]["value"] == 1  # flattened group fields are searchable by their dotted name


def test_newest_revision_wins_and_an_older_one_never_overwrites_it(sink: ElasticsearchSink):
    first = _alert(revision=1, triggers=1)
    third = Alert.from_dict({**first.to_dict(), "revision": 3, "evidence_total": 5})
    sink.deliver([first])
    sink.deliver([third])
    sink.deliver([first])  # a stale revision replayed late
    [doc] = _docs(sink, first.id)
    assert (doc["revision"], doc["_version"], doc["evidence_total"]) == (3, 3, 5)


def test_crash_between_index_and_ack_leaves_one_document(store, sink: ElasticsearchSink):  # noqa: F811
    alert = _alert()
    store.commit_rule_run(RuleCheckpoint(alert.rule_id, None), [alert])
    sink.deliver(store.pending_deliveries(sink.name))  # indexed; the process dies before mark_delivered
    assert deliver_pending(store, [sink]) == 1  # handed over again: a version conflict, i.e. "already there"
    assert store.pending_deliveries(sink.name) == []
    assert [d["_id"] for d in _docs(sink, alert.id)] == [alert.id]


def test_cases_go_to_their_own_index(sink: ElasticsearchSink):
    from engine.alerts.case_model import Case

    case = Case(id=uuid.uuid4().hex, subject_kind="user.name", subject="jdoe", period_start="2024-01-01T00:00:00.000Z",
                period_end="2024-01-02T00:00:00.000Z", first_trigger="2024-01-01T01:00:00.000Z",
                last_trigger="2024-01-01T02:00:00.000Z", level="high", score=7.5, revision=2,
                rules=[{"id": "r", "title": "t", "level": "high", "alerts": 1, "events": 3}])
    sink.deliver_cases([case])
    [doc] = _docs(sink, case.id, record="case")
    assert (doc["_id"], doc["_version"], doc["user"], doc["record"]) == (case.id, 2, "jdoe", "case")


def test_refuses_to_write_into_the_store_s_own_alert_index():
    from engine.store import open_store

    url = require_elasticsearch()
    prefix = f"wwtest-{uuid.uuid4().hex[:12]}"
    es_store = open_store("elasticsearch", hosts=[url], index_prefix=prefix)  # creates <prefix>-alerts
    sink = ElasticsearchSink({"hosts": [url], "index_prefix": prefix})
    try:
        with pytest.raises(SinkUnavailable, match="not this sink's"):  # waits in the outbox: fix the config
            sink.deliver([make_alert()])
    finally:
        sink.close()
        es_store.delete_all()
        es_store.close()


def test_cluster_down_is_unavailable():
    sink = ElasticsearchSink({"hosts": ["http://127.0.0.1:9"], "request_timeout": 2})
    with pytest.raises(SinkUnavailable, match="127.0.0.1:9"):
        sink.deliver([make_alert()])


@pytest.mark.parametrize("options,key", [({"index_prefix": "Bad*"}, "index_prefix"),
                                         ({"username": "u"}, "username"), ({"api_key": "k"}, "api_key")])
def test_bad_options_name_the_key(options: dict, key: str):
    with pytest.raises(SinkConfigError, match=key):
        ElasticsearchSink(options)


def _kibana_objects() -> list[dict[str, Any]]:
    import json
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "alerts.md").read_text(encoding="utf-8")
    [block] = re.findall(r"^```ndjson\n(.*?)^```", text, re.S | re.M)
    return [json.loads(line) for line in block.splitlines() if line.strip()]


def test_the_documented_kibana_objects_match_the_sink_s_index_and_mapping(sink: ElasticsearchSink):
    """docs/alerts.md's data view and saved search name the default index, a date time field and mapped
    columns; the saved search's query (as Lucene) finds the open high alert and not the closed one."""
    import json

    from engine.alerts.sinks.es_documents import ALERT_PROPERTIES
    from engine.alerts.sinks.es_index import ElasticsearchSinkOptions

    view, search = _kibana_objects()
    assert view["attributes"]["title"] == f"{ElasticsearchSinkOptions(hosts=['http://x']).index_prefix}-alerts"
    assert ALERT_PROPERTIES[view["attributes"]["timeFieldName"]]["type"] == "date"
    assert set(search["attributes"]["columns"]) <= set(ALERT_PROPERTIES)
    assert search["references"][0]["id"] == view["id"]
    kql = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
    assert kql == "level:(high or critical) and not status:closed"
    open_alert, closed = _alert(rule_id="r-open"), _alert(rule_id="r-closed", status="closed")
    sink.deliver([open_alert, closed])
    sink.es.indices.refresh(index=sink.indices["alert"])
    lucene = kql.replace(" or ", " OR ").replace(" and not ", " AND NOT ")
    hits = sink.es.search(index=sink.indices["alert"], query={"bool": {"filter": [
        {"query_string": {"query": lucene}}, {"ids": {"values": [open_alert.id, closed.id]}}]}})["hits"]["hits"]
    assert [h["_id"] for h in hits] == [open_alert.id]
