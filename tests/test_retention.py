"""Retention (issue 7, item 14): expired data goes, recent data and whatever a rule checkpoint still needs
stays, in bounded units, on both stores (Elasticsearch is the real cluster at WARDWATCH_TEST_ES_URL)."""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.config import ConfigError, load_config
from engine.events import format_timestamp, from_timestamp_ms, timestamp_ms
from engine.retention import RuleNeed, prune_spool, run_retention
from engine.retention_policy import RetentionConfigError, RetentionPolicy, parse_retention
from engine.store import open_store
from engine.store.base import DeadLetter, RuleCheckpoint, Store
from tests.conftest import require_elasticsearch
from tests.store_fixtures import ehr_event, ids, make_alert, search_all, store  # noqa: F401 - fixture

NOW = timestamp_ms("2026-11-02T12:00:00.000Z")
DAY = 86_400_000


def ago(days: float) -> str:
    return format_timestamp(from_timestamp_ms(int(NOW - days * DAY)))


POLICY = parse_retention({"events": {"default": None, "ehr.audit": "400d", "vpn.auth": "180d"},
                          "alerts": "365d", "dead_letters": "30d", "batch_size": 5000})


def seed(store: Store) -> dict[str, list[str]]:
    """Events of three datasets at known ages; returns their ids by what the policy should do to them."""
    old_ehr = [ehr_event(i, at=ago(500 + i)) for i in range(3)]
    new_ehr = [ehr_event(10 + i, at=ago(10 + i)) for i in range(2)]
    old_vpn = [ehr_event(20, dataset="vpn.auth", at=ago(200))]
    new_vpn = [ehr_event(21, dataset="vpn.auth", at=ago(100))]
    forever = [ehr_event(30, dataset="windows.security", at=ago(900))]
    store.write(old_ehr + new_ehr + old_vpn + new_vpn + forever)
    return {"gone": ids(old_ehr + old_vpn), "kept": ids(new_ehr + new_vpn + forever)}


def evaluated(store: Store, rule_id: str = "r1") -> None:
    """A rule that has evaluated everything written so far (its checkpoint holds nothing back)."""
    store.commit_rule_run(RuleCheckpoint(rule_id, store.watermark()), [])


# --- the policy -----------------------------------------------------------------------------------------
def test_policy_shape_parses_to_seconds() -> None:
    assert POLICY.for_dataset("ehr.audit") == 400 * 86400
    assert POLICY.for_dataset("vpn.auth") == 180 * 86400
    assert POLICY.for_dataset("anything.else") is None
    assert POLICY.alerts == 365 * 86400 and POLICY.dead_letters == 30 * 86400 and POLICY.spool is None
    assert parse_retention({"spool": "36h"}).spool == 36 * 3600
    assert not parse_retention(None).enabled


@pytest.mark.parametrize("section, key", [
    ({"events": {"ehr.audit": 400}}, "events.ehr.audit"),  # bare number: seconds or days?
    ({"events": {"ehr.audit": "400"}}, "events.ehr.audit"),
    ({"alerts": "0d"}, "alerts"),
    ({"alerts": "-5d"}, "alerts"),
    ({"spool": "7 days"}, "spool"),
    ({"dead_letters": "1.5d"}, "dead_letters"),
    ({"events": ["ehr.audit"]}, "events"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": True}, "batch_size"),
    ({"event": {}}, "event"),
])
def test_policy_rejects_with_the_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(RetentionConfigError) as info:
        parse_retention(section)
    assert info.value.key == key


@given(st.integers(min_value=1, max_value=999_999), st.sampled_from(["d", "h"]))
def test_every_whole_day_or_hour_count_parses(n: int, unit: str) -> None:
    assert parse_retention({"alerts": f"{n}{unit}"}).alerts == n * (86400 if unit == "d" else 3600)


@given(st.one_of(st.text(max_size=12), st.integers(), st.floats(), st.lists(st.integers(), max_size=2)))
def test_anything_else_is_refused_with_a_config_error(value: Any) -> None:
    try:
        parse_retention({"dead_letters": value})
    except RetentionConfigError as exc:
        assert exc.key == "dead_letters"
    else:
        assert isinstance(value, str) and value[:-1].isdigit() and value[-1] in "dh"


def test_config_file_validates_the_section(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("retention:\n  events:\n    ehr.audit: 400d\n  spool: 7d\nscheduler:\n  retention_interval: 1h\n")
    config = load_config(good, environ={})
    assert config["retention"]["events"] == {"default": None, "ehr.audit": "400d"}
    assert config["scheduler"]["retention_interval"] == "1h"
    bad = tmp_path / "bad.yaml"
    bad.write_text("retention:\n  events:\n    ehr.audit: 400\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad, environ={})
    assert "retention.events.ehr.audit" in str(info.value) and "bad.yaml" in str(info.value)


# --- both stores ----------------------------------------------------------------------------------------
def test_old_events_deleted_recent_and_unlimited_kept(store: Store) -> None:  # noqa: F811
    expected = seed(store)
    evaluated(store)
    report = run_retention(store, POLICY, [RuleNeed("r1", 0)], now_ms=NOW)
    assert sorted(ids(search_all(store))) == sorted(expected["kept"])
    deleted = {line.what: line.deleted for line in report.lines}
    assert deleted["events ehr.audit"] == 3 and deleted["events vpn.auth"] == 1
    assert "events windows.security" not in deleted  # default: null keeps it forever
    # a second pass finds nothing left to delete
    again = run_retention(store, POLICY, [RuleNeed("r1", 0)], now_ms=NOW)
    assert all(line.deleted == 0 for line in again.lines)


def test_dry_run_reports_and_deletes_nothing(store: Store) -> None:  # noqa: F811
    expected = seed(store)
    evaluated(store)
    report = run_retention(store, POLICY, [RuleNeed("r1", 0)], now_ms=NOW, dry_run=True)
    assert {line.what: line.deleted for line in report.lines}["events ehr.audit"] == 3
    assert any("would delete 3" in text for text in report.to_text())
    assert len(search_all(store)) == len(expected["gone"]) + len(expected["kept"])


def test_rule_that_never_ran_keeps_everything(store: Store) -> None:  # noqa: F811
    seed(store)
    report = run_retention(store, POLICY, [RuleNeed("never-ran", 0)], now_ms=NOW)
    assert len(search_all(store)) == 8
    assert {line.held_by for line in report.lines if line.what.startswith("events")} == {"never-ran"}


def test_context_of_an_unevaluated_late_event_is_kept(store: Store) -> None:  # noqa: F811
    expected = seed(store)
    evaluated(store)
    # a late event (event time 450 days ago) arrives after the checkpoint; its correlation reaches 51 days back
    late = ehr_event(40, at=ago(450))
    store.write([late])
    needs = [RuleNeed("r1", 51 * DAY)]
    report = run_retention(store, POLICY, needs, now_ms=NOW)
    # only events older than 450 + 51 days may go: the 500- and 501-day-old events stay, the 502-day-old one
    # (older than both the policy and the rule's context) goes
    left = set(ids(search_all(store)))
    assert late["event.id"] in left and set(expected["kept"]) <= left
    assert len(set(expected["gone"][:3]) & left) == 2
    assert {line.what: line.held_by for line in report.lines}["events ehr.audit"] == "r1"
    evaluated(store)  # once the rule has evaluated it, the normal cut-off applies again
    run_retention(store, POLICY, needs, now_ms=NOW)
    assert late["event.id"] not in set(ids(search_all(store)))


def test_alerts_and_dead_letters_pruned(store: Store) -> None:  # noqa: F811
    old = make_alert("r1", "user.name=a", first=ago(400), last=ago(380))
    recent = make_alert("r1", "user.name=b", first=ago(400), last=ago(10))
    store.commit_rule_run(RuleCheckpoint("r1", None), [old, recent])
    store.mark_delivered("jsonl", [old])
    store.dead_letter([DeadLetter("ndjson:x", "bad json", "x:1", "{", received_at=ago(40)),
                       DeadLetter("ndjson:x", "bad json", "x:2", "{", received_at=ago(5))])
    report = run_retention(store, POLICY, [], now_ms=NOW)
    assert [a.id for a in store.list_alerts()] == [recent.id]
    assert [a.id for a in store.pending_deliveries("other-sink")] == [recent.id]  # its outbox entry went too
    assert [d.location for d in store.list_dead_letters()] == ["x:2"]
    deleted = {line.what: line.deleted for line in report.lines}
    assert deleted["alerts"] == 1 and deleted["dead letters"] == 1


# --- bounded batches ------------------------------------------------------------------------------------
def test_sqlite_deletes_in_bounded_transactions(tmp_path: Path) -> None:
    s = open_store("sqlite", path=tmp_path / "w.db")
    try:
        s.write([ehr_event(i, at=ago(500 + i / 100)) for i in range(10)] + [ehr_event(99, at=ago(1))])
        evaluated(s)
        policy = parse_retention({"events": {"ehr.audit": "400d"}, "batch_size": 3})
        report = run_retention(s, policy, [RuleNeed("r1", 0)], now_ms=NOW)
        line = report.lines[0]
        assert (line.deleted, line.transactions) == (10, 4)  # 3 + 3 + 3 + 1
        assert s.health()["events"] == 1  # the kept count follows the deletes
        assert "returned to the file system" in report.space
    finally:
        s.close()


def test_sqlite_new_file_reclaims_space_old_file_reuses_it(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    s = open_store("sqlite", path=path)
    try:
        s.write([ehr_event(i, at=ago(500), pad="x" * 4000) for i in range(300)])
        evaluated(s)
        conn = sqlite3.connect(path)
        pages_before = conn.execute("PRAGMA page_count").fetchone()[0]
        run_retention(s, parse_retention({"events": {"ehr.audit": "400d"}}), [RuleNeed("r1", 0)], now_ms=NOW)
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL on every new file
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
        assert conn.execute("PRAGMA page_count").fetchone()[0] < pages_before / 2  # the file shrinks
        conn.close()
    finally:
        s.close()
    # a file created before retention existed (auto_vacuum NONE) keeps its pages for reuse and says so
    legacy = tmp_path / "legacy.db"
    conn = sqlite3.connect(legacy)
    conn.execute("CREATE TABLE older_tool (x)")  # a non-empty file: auto_vacuum can no longer change
    conn.close()
    s = open_store("sqlite", path=legacy)
    try:
        s.write([ehr_event(i, at=ago(500)) for i in range(5)])
        evaluated(s)
        report = run_retention(s, parse_retention({"events": {"ehr.audit": "400d"}}), [RuleNeed("r1", 0)],
                               now_ms=NOW)
        assert "kept for reuse" in report.space and "VACUUM" in report.space
    finally:
        s.close()


# --- spool ----------------------------------------------------------------------------------------------
def test_spool_segments_older_than_the_limit_go_but_never_the_newest(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    for n, age_days in ((1, 9), (2, 8), (3, 1), (4, 9)):
        seg = spool / f"{n:020d}.spool"
        seg.write_bytes(b"x")
        t = (NOW - age_days * DAY) / 1000
        os.utime(seg, (t, t))
    assert prune_spool(spool, NOW - 7 * DAY, dry_run=True).deleted == 2
    assert len(list(spool.iterdir())) == 4
    result = prune_spool(spool, NOW - 7 * DAY)
    assert result.deleted == 2
    # segment 4 is old but the newest: a listener may still be appending to it
    assert sorted(p.name[:20] for p in spool.iterdir()) == [f"{3:020d}", f"{4:020d}"]
    assert prune_spool(tmp_path / "missing", NOW).deleted == 0


def test_policy_dataclass_defaults_keep_everything() -> None:
    assert RetentionPolicy().for_dataset("x") is None and not RetentionPolicy().enabled


# --- Elasticsearch specifics ----------------------------------------------------------------------------
@pytest.fixture
def es_store() -> Any:
    url = require_elasticsearch()
    from engine.store.elasticsearch import ElasticsearchStore

    s = ElasticsearchStore(hosts=[url], index_prefix=f"wwtest-{uuid.uuid4().hex[:12]}", replicas=0)
    try:
        yield s
    finally:
        s.delete_all()
        s.close()


@pytest.mark.elasticsearch
def test_es_events_live_in_monthly_indices_and_replays_stay_exactly_once(es_store: Any) -> None:
    event = ehr_event(1, at="2025-06-14T08:00:00.000Z")
    assert es_store.write([event]).written == 1
    assert es_store.write([dict(event)]).duplicates == 1  # same event -> same index -> 409
    indices = set(es_store.es.indices.get(index=f"{es_store.prefix}-events-*"))
    assert indices == {f"{es_store.prefix}-events-ehr.audit-2025.06"}


@pytest.mark.elasticsearch
def test_es_drops_whole_expired_months_and_trims_the_boundary_month(es_store: Any) -> None:
    # cut-off for 400d before NOW is 2025-09-28T12:00Z: August goes whole, September is trimmed
    events = [ehr_event(1, at="2025-08-03T10:00:00.000Z"), ehr_event(2, at="2025-08-30T10:00:00.000Z"),
              ehr_event(3, at="2025-09-10T10:00:00.000Z"), ehr_event(4, at="2025-09-29T10:00:00.000Z"),
              ehr_event(5, at="2026-10-30T10:00:00.000Z")]
    es_store.write(events)
    evaluated(es_store)
    policy = parse_retention({"events": {"ehr.audit": "400d"}, "batch_size": 1})
    report = run_retention(es_store, policy, [RuleNeed("r1", 0)], now_ms=NOW)
    line = report.lines[0]
    assert line.indices_dropped == [f"{es_store.prefix}-events-ehr.audit-2025.08"]
    assert line.deleted == 3
    assert line.transactions == 2  # one index deletion + one bounded delete-by-query in September
    assert sorted(ids(search_all(es_store))) == sorted(ids(events[3:]))


@pytest.mark.elasticsearch
def test_es_layout1_store_keeps_its_plain_indices_and_retention_still_works(es_store: Any) -> None:
    from engine.store.elasticsearch import ElasticsearchStore

    plain = f"{es_store.prefix}-events-ehr.audit"
    old, new = ehr_event(1, at=ago(500)), ehr_event(2, at=ago(5))
    for event in (old, new):
        es_store.es.index(index=plain, id=event["event.id"], document={**event, "event.ingested": ago(600)},
                          refresh=True)
    legacy = ElasticsearchStore(hosts=es_store.hosts, index_prefix=es_store.prefix, replicas=0)
    try:
        assert legacy.monthly is False
        assert legacy.write([dict(old)]).duplicates == 1  # a replay still meets its first copy
        evaluated(legacy)
        report = run_retention(legacy, parse_retention({"events": {"ehr.audit": "400d"}}), [RuleNeed("r1", 0)],
                               now_ms=NOW)
        assert report.lines[0].deleted == 1 and not report.lines[0].indices_dropped
        assert ids(search_all(legacy)) == [new["event.id"]]
    finally:
        legacy.close()


@pytest.mark.elasticsearch
def test_es_reports_missing_ilm(es_store: Any) -> None:
    status = es_store.ilm_status()
    assert status in (None, "RUNNING", "STOPPED")
    assert ("no ILM" in es_store.reclaim_space()) == (status is None)


# --- the command and the service job ----------------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent


def _vpn_config(tmp_path: Path, retention: str) -> Path:
    path = tmp_path / "wardwatch.yaml"
    path.write_text(f"store:\n  sqlite:\n    path: {tmp_path}/w.db\nrules:\n  paths: [{ROOT}/rules/healthcare]\n"
                    f"connectors:\n  - name: vpn\n    type: ndjson\n    path: {ROOT}/fixtures/vpn\n"
                    f"    dataset: vpn.auth\nalerts:\n  sinks: []\n"
                    f"scheduler:\n  ingest_interval: 100ms\n  rule_interval: 100ms\n  retention_interval: 100ms\n"
                    f"{retention}")
    return path


def test_cli_retention_run_dry_run_then_for_real(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    config = str(_vpn_config(tmp_path, "retention:\n  events:\n    vpn.auth: 1d\n"))
    # before any rule ran, the checkpoint guard holds every event back
    assert main(["--config", config, "ingest", "ndjson", str(ROOT / "fixtures/vpn"), "--name", "vpn",
                 "-o", "dataset=vpn.auth"]) == 0
    capsys.readouterr()
    assert main(["--config", config, "retention", "run", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "events vpn.auth: would delete 0" in out and "held back by rule" in out
    assert main(["--config", config, "run", "--once"]) == 0
    capsys.readouterr()
    assert main(["--config", config, "retention", "run", "--dry-run"]) == 0
    assert "events vpn.auth: would delete 66 (older than 1d" in capsys.readouterr().out
    assert main(["--config", config, "retention", "run"]) == 0
    out = capsys.readouterr().out
    assert "events vpn.auth: deleted 66" in out and "in 1 transaction" in out
    assert main(["--config", config, "retention", "run"]) == 0
    assert "nothing stored that a retention period applies to" in capsys.readouterr().out


def test_service_runs_retention_after_the_rules_evaluated(tmp_path: Path) -> None:
    import time

    from engine.app import build_app
    from engine.scheduler import Service

    config = load_config(_vpn_config(tmp_path, "retention:\n  events:\n    vpn.auth: 1d\n"), environ={})
    service = Service(build_app(config, console=False))
    service.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            alerts = service.app.store.list_alerts()
            if alerts and service.app.store.health()["events"] == 0 and service.status.get("retention"):
                break
            time.sleep(0.1)
        assert service.app.store.health()["events"] == 0  # ingested, evaluated, then expired
        assert len(service.app.store.list_alerts()) == 1  # the brute-force alert was raised first
        assert service.status["retention"]["failures"] == 0
    finally:
        service.stop()
