"""SQLite-specific guarantees beyond the shared contract: atomicity, threads, durability across reopen,
schema versioning, paging and plan choice."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.store import open_store
from engine.store.base import CursorUpdate, DeadLetter, RuleCheckpoint, SearchQuery, Store, StoreError
from engine.store.sqlite import SqliteStore
from engine.store.sqlite_schema import SCHEMA_VERSION, SchemaVersionError
from tests.store_fixtures import (  # noqa: F401 - `store_factory` is a fixture
    ehr_event,
    ids,
    make_alert,
    search_all,
    store_factory,
    ts,
)

Factory = Callable[..., Store]


def test_open_store_factory(tmp_path: Path) -> None:
    with open_store("sqlite", path=tmp_path / "a.db") as s:
        assert isinstance(s, SqliteStore)
    with pytest.raises(ValueError, match="unknown store kind"):
        open_store("mongodb")
    with pytest.raises(TypeError, match="path"):
        open_store("sqlite")


def test_file_is_wal_with_schema_version(store_factory: Factory, tmp_path: Path) -> None:
    store_factory().close()
    raw = sqlite3.connect(tmp_path / "wardwatch.db")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    raw.close()


def test_failing_write_leaves_neither_events_nor_cursor(store_factory: Factory,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    s = store_factory()
    s.write([ehr_event(0)], CursorUpdate("c", {"offset": 1}))

    def explode(*_args: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(s, "_put_cursor", explode)  # fails after the events were inserted
    with pytest.raises(RuntimeError, match="disk on fire"):
        s.write([ehr_event(i) for i in range(1, 50)], CursorUpdate("c", {"offset": 50}))
    with pytest.raises(RuntimeError):
        s.dead_letter([DeadLetter("c", "bad", "f:1", "x")], CursorUpdate("c", {"offset": 51}))
    monkeypatch.undo()

    assert ids(search_all(s)) == ids([ehr_event(0)])
    assert s.get_cursor("c") == {"offset": 1}
    assert s.list_dead_letters() == []
    assert s.watermark() == "1"
    # the store is usable afterwards and seqs continue without a gap
    assert s.write([ehr_event(1)]).written == 1
    assert s.watermark() == "2"


def test_invalid_event_rejects_whole_batch(store_factory: Factory) -> None:
    s = store_factory()
    with pytest.raises(ValueError, match="not canonical"):
        s.write([ehr_event(1), ehr_event(2, at="2026-11-02 09:15:00")], CursorUpdate("c", {"o": 2}))
    with pytest.raises(ValueError, match="event.id"):
        s.write([ehr_event(3, **{"event.id": ""})])
    assert s.watermark() is None and s.get_cursor("c") is None


def test_concurrent_reader_sees_every_event_up_to_watermark(store_factory: Factory) -> None:
    """The watermark promise under concurrency: whenever a reader sees watermark W, all W events (seq 1..W,
    no gaps because writers are serialised) are visible, in order, with no duplicates."""
    s = store_factory(page_size=64, doc_chunk=16)
    batches, per_batch = 40, 150
    done = threading.Event()
    errors: list[BaseException] = []
    observed: list[int] = []

    def writer() -> None:
        try:
            for b in range(batches):
                s.write([ehr_event(b * per_batch + i, at=ts((b * 7 + i) % 600)) for i in range(per_batch)],
                        CursorUpdate("w", {"batch": b}))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def reader() -> None:
        try:
            while not done.is_set():
                mark = s.watermark()
                if mark is None:
                    continue
                found = search_all(s, ingested_upto=mark, fields=[])
                # no duplicates are written here, so seqs are dense: W visible events exactly
                assert len(found) == int(mark) == len(set(ids(found)))
                keys = [(e["@timestamp"], e["event.id"]) for e in found]
                assert keys == sorted(keys)
                observed.append(int(mark))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert observed, "the reader never ran during the writes"
    assert s.watermark() == str(batches * per_batch)
    assert s.get_cursor("w") == {"batch": batches - 1}


def test_concurrent_writers(store_factory: Factory) -> None:
    s = store_factory()
    errors: list[BaseException] = []

    def write(offset: int) -> None:
        try:
            for b in range(10):
                # overlapping ranges: some events are written by two threads
                s.write([ehr_event(offset + b * 20 + i) for i in range(30)])
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n * 100,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    expected = {ehr_event(n * 100 + b * 20 + i)["event.id"] for n in range(4) for b in range(10) for i in range(30)}
    assert set(ids(search_all(s))) == expected
    assert s.health()["events"] == len(expected)


def test_same_thread_may_write_while_iterating_a_search(store_factory: Factory) -> None:
    """Keyset paging holds no statement open between pages, so the engine can commit while it iterates."""
    s = store_factory(page_size=5, doc_chunk=2)
    s.write([ehr_event(i) for i in range(20)])
    seen = []
    for n, event in enumerate(s.search(SearchQuery())):
        seen.append(event["event.id"])
        if n % 4 == 0:
            s.write([ehr_event(1000 + n, at=ts(0, day=1))])  # earlier than everything: never in this search
            s.commit_rule_run(RuleCheckpoint("r", str(n)), [])
    assert seen == ids([ehr_event(i) for i in range(20)])


def test_reopen_keeps_everything(store_factory: Factory, tmp_path: Path) -> None:
    s = store_factory()
    s.write([ehr_event(i) for i in range(10)], CursorUpdate("c", {"offset": 10}))
    s.dead_letter([DeadLetter("c", "bad", "f:3", "{")])
    alert = make_alert()
    s.commit_rule_run(RuleCheckpoint("rule-1", "10", {"k": "v"}), [alert])
    s.mark_delivered("jsonl", [alert])
    before = search_all(s)
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.watermark()

    r = store_factory()
    assert search_all(r) == before
    assert r.watermark() == "10"
    assert r.get_cursor("c") == {"offset": 10}
    assert [d.location for d in r.list_dead_letters()] == ["f:3"]
    assert r.get_checkpoint("rule-1") == RuleCheckpoint("rule-1", "10", {"k": "v"})
    assert r.get_alert(alert.id) == alert
    assert r.pending_deliveries("jsonl") == [] and r.pending_deliveries("console") == [alert]
    assert r.write([ehr_event(5), ehr_event(10)]).written == 1
    assert int(r.watermark()) > 10
    assert ids(search_all(r, ingested_after="10")) == ids([ehr_event(10)])
    assert r.health()["events"] == 11


def test_newer_schema_is_refused(store_factory: Factory, tmp_path: Path) -> None:
    path = tmp_path / "wardwatch.db"
    s = store_factory(path)
    s.write([ehr_event(1)])
    s.close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    raw.commit()
    raw.close()
    with pytest.raises(SchemaVersionError, match=rf"schema version {SCHEMA_VERSION + 1} is newer"):
        SqliteStore(path)
    raw = sqlite3.connect(path)  # untouched
    assert raw.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION + 1)
    assert raw.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    raw.close()


@pytest.mark.parametrize("page_size,doc_chunk", [(1, 1), (3, 2), (7, 500), (5000, 500)])
def test_paging_does_not_change_results(store_factory: Factory, tmp_path: Path, page_size: int,
                                        doc_chunk: int) -> None:
    s = store_factory(tmp_path / f"p{page_size}.db", page_size=page_size, doc_chunk=doc_chunk)
    events = [ehr_event(i, at=ts(i % 9), dataset=["ehr.audit", "vpn.session", "ad.security"][i % 3])
              for i in range(60)]
    s.write(events[:30])
    mark = s.watermark()
    s.write(events[30:])
    expected_all = sorted(events, key=lambda e: (e["@timestamp"], e["event.id"]))
    assert ids(search_all(s)) == ids(expected_all)
    two = [e for e in expected_all if e["event.dataset"] != "ad.security" and ts(2) <= e["@timestamp"] < ts(7)]
    assert ids(search_all(s, datasets=["vpn.session", "ehr.audit"], start=ts(2), end=ts(7))) == ids(two)
    late = [e for e in expected_all if e in events[30:]]
    assert ids(search_all(s, ingested_after=mark)) == ids(late)


def test_both_plans_agree(store_factory: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seq plan (rowid range + sort) and the time plan (index order) must return the same stream."""
    s = store_factory(page_size=4, doc_chunk=3)
    s.write([ehr_event(i, at=ts(i % 13), dataset="ehr.audit" if i % 4 else "vpn.session") for i in range(80)])
    queries = [
        SearchQuery(ingested_after="20", ingested_upto="61"),
        SearchQuery(ingested_after="5", datasets=["ehr.audit"], start=ts(3), end=ts(11)),
        SearchQuery(ingested_upto="70", datasets=["ehr.audit", "vpn.session"], fields=["user.name"]),
    ]
    results = {}
    for forced in (True, False):
        monkeypatch.setattr(s, "_choose_seq_plan", lambda *a, forced=forced: forced)
        results[forced] = [list(s.search(q)) for q in queries]
    assert results[True] == results[False]
    assert all(results[True])


def test_seq_plan_chosen_for_small_ingest_window(store_factory: Factory) -> None:
    s = store_factory(page_size=10)
    s.write([ehr_event(i) for i in range(500)])
    assert s._choose_seq_plan(None, None, None, 490, None, 490, 500) is True  # 10 new of 500
    assert s._choose_seq_plan(None, None, None, None, None, 0, 500) is False  # no ingest bound at all
    assert s._choose_seq_plan(["ehr.audit"], ts(1), ts(3), 0, 500, 0, 500) is False  # 2 rows in time range


def test_prefilter_is_ignored(store_factory: Factory) -> None:
    s = store_factory()
    s.write([ehr_event(1), ehr_event(2)])
    assert len(list(s.search(SearchQuery(prefilter="user.name = 'nobody'")))) == 2


def test_bad_search_arguments(store_factory: Factory) -> None:
    s = store_factory()
    with pytest.raises(ValueError, match="watermark"):
        s.search(SearchQuery(ingested_after="2026-11-02T09:00:00.000Z"))
    with pytest.raises(TypeError):
        s.search(SearchQuery(datasets="ehr.audit"))


def test_health_counts_events(store_factory: Factory, tmp_path: Path) -> None:
    s = store_factory()
    s.write([ehr_event(i) for i in range(7)] + [ehr_event(1)])
    health = s.health()
    assert health["ok"] and health["events"] == 7 and health["path"] == str(tmp_path / "wardwatch.db")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.integers(min_value=0, max_value=40), max_size=30), min_size=1, max_size=8))
def test_random_batches_with_repeated_ids(batches: list[list[int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s = SqliteStore(Path(tmp) / "h.db", page_size=7)
        try:
            seen: set[int] = set()
            for batch in batches:
                result = s.write([ehr_event(n, at=ts(n % 11)) for n in batch])
                new = set(batch) - seen
                assert result.written == len(new)
                assert result.duplicates == len(batch) - len(new)
                seen |= new
            stored = ids(search_all(s))
            assert sorted(stored) == sorted(ehr_event(n)["event.id"] for n in seen)
            # seqs may have gaps (an ignored duplicate consumes a number) but never exceed the writes
            assert (s.watermark() is None) == (not seen)
            assert s.health()["events"] == len(seen)
        finally:
            s.close()


V1_EVENTS_DDL = """
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, ts TEXT NOT NULL,
    dataset TEXT NOT NULL, ingested TEXT NOT NULL, doc BLOB NOT NULL);
CREATE INDEX events_dataset_ts ON events (dataset, ts, id);
CREATE INDEX events_ts ON events (ts, id);
"""


def test_a_version_1_file_keeps_working(tmp_path: Path) -> None:
    """Files written before the (ts, id) uniqueness key: same behaviour, reported as version 1."""
    from engine.store.sqlite_schema import STATE_DDL, _statements

    path = tmp_path / "v1.db"
    raw = sqlite3.connect(path)
    for statement in _statements(STATE_DDL + V1_EVENTS_DDL):
        raw.execute(statement)
    raw.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1'), ('event_count', '0')")
    raw.commit()
    raw.close()
    store = SqliteStore(path)
    try:
        batch = [ehr_event(i) for i in range(5)]
        assert store.write(batch).written == 5
        assert store.write(batch).duplicates == 5
        assert store.health()["schema_version"] == 1 and store.health()["events"] == 5
    finally:
        store.close()


def test_new_files_are_unique_on_time_and_id(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "w.db")
    try:
        store.write([ehr_event(1)])
        assert store.write([ehr_event(1)]).duplicates == 1  # a re-read: same time, same id
        assert store.health()["schema_version"] == SCHEMA_VERSION == 2
    finally:
        store.close()
