"""The NDJSON file connector on real files: what an operator pointing it at a log directory can rely on."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import ConnectorConfigError, connector_class
from connectors.ndjson import NdjsonFileConnector
from engine.events import flatten
from engine.identity import record_id
from tests.conftest import read_all

TS = "2024-05-01T10:00:00.000Z"


def line(**fields: Any) -> bytes:
    fields.setdefault("@timestamp", TS)
    return orjson.dumps(fields) + b"\n"




@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "app.ndjson"


def test_registered_under_its_entry_point() -> None:
    assert connector_class("ndjson") is NdjsonFileConnector


def test_nested_and_flat_lines_become_flat_events(log: Path) -> None:
    raw1 = orjson.dumps({"@timestamp": "2024-05-01T12:00:00+02:00", "user": {"name": "alice"}, "n": 1})
    raw2 = orjson.dumps({"@timestamp": 1714557600, "user.name": "bob", "event.dataset": "vpn.auth"})
    log.write_bytes(raw1 + b"\n" + raw2 + b"\n")
    conn = NdjsonFileConnector("app", {"path": str(log), "dataset": "app.log"})
    events = read_all(conn).events
    assert [e["user.name"] for e in events] == ["alice", "bob"]
    assert events[0]["@timestamp"] == "2024-05-01T10:00:00.000Z"
    assert events[1]["@timestamp"] == "2024-05-01T10:00:00.000Z"
    assert events[0]["event.dataset"] == "app.log"
    assert events[1]["event.dataset"] == "vpn.auth"
    assert events[0]["event.original"] == raw1.decode()
    assert events[0]["event.id"] == record_id(raw1, "line:1")  # never the connector name


def test_existing_id_original_and_custom_timestamp_field_are_kept(log: Path) -> None:
    log.write_bytes(orjson.dumps({"ts": "2024-01-02T03:04:05Z", "event": {"id": "abc", "original": "o"}}) + b"\n")
    event = read_all(NdjsonFileConnector("x", {"path": str(log), "timestamp_field": "ts"})).events[0]
    assert event["event.id"] == "abc"
    assert event["event.original"] == "o"
    assert event["@timestamp"] == "2024-01-02T03:04:05.000Z"
    assert event["ts"] == "2024-01-02T03:04:05Z"


def test_follows_appends_and_a_partial_line_waits_for_its_newline(log: Path) -> None:
    conn = NdjsonFileConnector("app", {"path": str(log)})
    log.write_bytes(line(n=1) + b'{"@timestamp": "' + TS.encode())
    first = read_all(conn)
    assert [e["n"] for e in first.events] == [1]
    with log.open("ab") as f:
        f.write(b'", "n": 2}\n' + line(n=3))
    second = read_all(conn, first.cursor)
    assert [e["n"] for e in second.events] == [2, 3]
    assert read_all(conn, second.cursor).events == []


def test_crlf_lines_and_utf8_bom(log: Path) -> None:
    log.write_bytes(b"\xef\xbb\xbf" + line(n=1).replace(b"\n", b"\r\n") + line(n=2).replace(b"\n", b"\r\n"))
    batch = read_all(NdjsonFileConnector("app", {"path": str(log)}))
    assert [e["n"] for e in batch.events] == [1, 2] and batch.dead_letters == []


def test_rotation_finishes_the_old_file_then_reads_the_new_one_from_the_start(log: Path) -> None:
    conn = NdjsonFileConnector("app", {"path": str(log)})
    log.write_bytes(line(n=1))
    cursor = read_all(conn).cursor
    with log.open("ab") as f:  # written just before rotation, not yet read
        f.write(line(n=2))
    log.rename(log.with_name("app.ndjson.1"))
    log.write_bytes(line(n=3) + line(n=4))
    batch = read_all(conn, cursor)
    assert [e["n"] for e in batch.events] == [2, 3, 4]
    assert batch.cursor["files"][str(log)]["line"] == 2


def test_rotation_after_a_restart_reads_the_new_file_from_the_start(log: Path) -> None:
    log.write_bytes(line(n=1) + line(n=2))
    cursor = json.loads(json.dumps(read_all(NdjsonFileConnector("app", {"path": str(log)})).cursor))
    log.unlink()
    log.write_bytes(line(n=3))
    batch = read_all(NdjsonFileConnector("app", {"path": str(log)}), cursor)
    assert [e["n"] for e in batch.events] == [3]


def test_truncation_restarts_at_zero(log: Path) -> None:
    conn = NdjsonFileConnector("app", {"path": str(log)})
    log.write_bytes(line(n=1) + line(n=2))
    cursor = read_all(conn).cursor
    with log.open("r+b") as f:  # copytruncate
        f.truncate(0)
    with log.open("ab") as f:
        f.write(line(n=3))
    assert [e["n"] for e in read_all(conn, cursor).events] == [3]


def test_rewritten_in_place_is_detected_by_fingerprint(log: Path) -> None:
    log.write_bytes(line(n=1, pad="a" * 50))
    cursor = read_all(NdjsonFileConnector("app", {"path": str(log)})).cursor
    with log.open("r+b") as f:  # same inode, different content, longer than the old offset
        f.write(line(n=7, pad="b" * 50) + line(n=8))
    batch = read_all(NdjsonFileConnector("app", {"path": str(log)}), cursor)
    assert [e["n"] for e in batch.events] == [7, 8]


def test_bad_lines_become_dead_letters_naming_file_line_and_field(log: Path) -> None:
    log.write_bytes(
        b"{not json\n"
        b"[1, 2]\n"
        b'{"@timestamp": "2024-05-01T10:00:00Z", "x": "\xff\xfe"}\n'
        + b'{"x": 1}\n'
        + b'{"@timestamp": "yesterday"}\n'
        + b"\n"
        + b'{"@timestamp": "' + TS.encode() + b'", "big": "' + b"x" * 300 + b'"}\n'
        + line(n=1)
    )
    conn = NdjsonFileConnector("app", {"path": str(log), "max_line_bytes": 200})
    batch = read_all(conn)
    assert [e["n"] for e in batch.events] == [1]
    by_line = {d.location: d for d in batch.dead_letters}
    assert set(by_line) == {f"{log}:{n}" for n in (1, 2, 3, 4, 5, 7)}
    assert "invalid JSON" in by_line[f"{log}:1"].reason
    assert "not a JSON object" in by_line[f"{log}:2"].reason
    assert "invalid UTF-8" in by_line[f"{log}:3"].reason
    assert "'@timestamp'" in by_line[f"{log}:4"].reason and "missing" in by_line[f"{log}:4"].reason
    assert "'@timestamp'" in by_line[f"{log}:5"].reason and "yesterday" in by_line[f"{log}:5"].reason
    assert "max_line_bytes" in by_line[f"{log}:7"].reason
    assert all(d.source == "ndjson:app" for d in batch.dead_letters)
    assert by_line[f"{log}:1"].raw == "{not json"
    # The cursor moved past all of them: nothing comes back.
    again = read_all(conn, batch.cursor)
    assert again.events == [] and again.dead_letters == []


def test_oversized_line_spanning_many_chunks_is_skipped_without_buffering(log: Path) -> None:
    big = b'{"@timestamp": "' + TS.encode() + b'", "x": "' + b"y" * (3 << 20) + b'"}\n'
    log.write_bytes(line(n=1) + big + line(n=2))
    batch = read_all(NdjsonFileConnector("app", {"path": str(log), "max_line_bytes": 1000}))
    assert [e["n"] for e in batch.events] == [1, 2]
    assert [d.location for d in batch.dead_letters] == [f"{log}:2"]
    assert len(batch.dead_letters[0].raw) <= 4096


def test_rereading_from_the_start_gives_the_same_event_ids(log: Path) -> None:
    log.write_bytes(b"".join(line(n=i) for i in range(20)))
    first = read_all(NdjsonFileConnector("app", {"path": str(log)}))
    second = read_all(NdjsonFileConnector("app", {"path": str(log)}))
    assert [e["event.id"] for e in first.events] == [e["event.id"] for e in second.events]
    assert len({e["event.id"] for e in first.events}) == 20
    other = read_all(NdjsonFileConnector("other", {"path": str(log)}))
    # the connector's name is not part of an event's identity: another connector stores nothing new
    assert [e["event.id"] for e in other.events] == [e["event.id"] for e in first.events]


def test_batches_respect_max_events_and_the_cursor_is_json(log: Path) -> None:
    log.write_bytes(b"".join(line(n=i) for i in range(25)))
    conn = NdjsonFileConnector("app", {"path": str(log)})
    cursor, seen, batches = None, [], 0
    while True:
        batch = conn.read(cursor, 10)
        assert len(batch.events) <= 10
        seen += [e["n"] for e in batch.events]
        cursor = json.loads(json.dumps(batch.cursor))  # what a store does with it
        batches += 1
        if batch.exhausted:
            break
    assert seen == list(range(25)) and batches in (3, 4)


def test_the_callers_cursor_is_not_modified(log: Path) -> None:
    log.write_bytes(line(n=1))
    conn = NdjsonFileConnector("app", {"path": str(log)})
    cursor = conn.read(None, 10).cursor
    snapshot = json.dumps(cursor)
    with log.open("ab") as f:
        f.write(line(n=2))
    conn.read(cursor, 10)
    assert json.dumps(cursor) == snapshot


def test_directory_is_read_recursively_and_glob_works(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.ndjson").write_bytes(line(n=1))
    (tmp_path / "two.jsonl").write_bytes(line(n=2))
    (tmp_path / "three.json").write_bytes(line(n=3))
    (tmp_path / "skip.txt").write_bytes(line(n=4))
    assert sorted(e["n"] for e in read_all(NdjsonFileConnector("d", {"path": str(tmp_path)})).events) == [1, 2, 3]
    globbed = read_all(NdjsonFileConnector("g", {"path": str(tmp_path / "**" / "*.ndjson")})).events
    assert [e["n"] for e in globbed] == [1]


def test_missing_file_is_reported_and_is_picked_up_once_it_appears(log: Path) -> None:
    from engine.errors import SourceUnavailable

    conn = NdjsonFileConnector("app", {"path": str(log)})
    with pytest.raises(SourceUnavailable, match="'app'.*does not exist"):
        conn.read(None, 10)  # a typo'd path is not "0 events" (issue 7, item 3)
    log.write_bytes(line(n=1))
    assert [e["n"] for e in read_all(conn, None).events] == [1]


def test_deleted_files_leave_the_cursor(tmp_path: Path) -> None:
    (tmp_path / "old.ndjson").write_bytes(line(n=1))
    conn = NdjsonFileConnector("d", {"path": str(tmp_path)})
    cursor = read_all(conn).cursor
    (tmp_path / "old.ndjson").unlink()
    assert read_all(conn, cursor).cursor["files"] == {}


def test_eof_grace_consumes_an_unterminated_last_line(log: Path) -> None:
    log.write_bytes(line(n=1) + line(n=2).rstrip(b"\n"))
    os.utime(log, (1_000_000_000, 1_000_000_000))
    strict = read_all(NdjsonFileConnector("app", {"path": str(log)}))
    assert [e["n"] for e in strict.events] == [1]
    graceful = read_all(NdjsonFileConnector("app", {"path": str(log), "eof_grace_seconds": 1}))
    assert [e["n"] for e in graceful.events] == [1, 2]


@pytest.mark.parametrize(
    "options",
    [{}, {"path": ""}, {"path": 3}, {"path": "x", "max_line_bytes": 0}, {"path": "x", "dataset": 5},
     {"path": "x", "eof_grace_seconds": -1}],
)
def test_bad_options_are_config_errors(options: dict) -> None:
    with pytest.raises(ConnectorConfigError):
        NdjsonFileConnector("bad", options)


# --- properties: no input crashes the connector ----------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False,
    allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=6)
timestamps = st.sampled_from([TS, "2024-02-30T00:00:00Z", 0, -1e20, 1e300, True, "", None, [], {}])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")), min_size=1, max_size=8))
def test_arbitrary_byte_lines_become_events_or_dead_letters(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.ndjson"
        path.write_bytes(b"".join(l + b"\n" for l in lines))
        batch = read_all(NdjsonFileConnector("fuzz", {"path": str(path), "max_line_bytes": 200}), max_events=3)
        nonblank = sum(1 for l in lines if l.strip(b" \t\r\n\x0b\x0c") and l not in (b"\r", b"\xef\xbb\xbf"))
        assert len(batch.events) + len(batch.dead_letters) <= len(lines)
        assert len(batch.events) + len(batch.dead_letters) >= nonblank - 1  # a lone BOM line is blank
        for dead in batch.dead_letters:
            assert dead.location.startswith(f"{path}:") and dead.reason
        orjson.dumps(batch.cursor)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_objects.flatmap(lambda d: timestamps.map(lambda t: {**d, "@timestamp": t}) | st.just(d)),
                min_size=1, max_size=5))
def test_arbitrary_json_objects_become_events_or_dead_letters(docs: list[dict]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.ndjson"
        path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
        batch = read_all(NdjsonFileConnector("fuzz", {"path": str(path)}))
        assert len(batch.events) + len(batch.dead_letters) == len(docs)
        for event in batch.events:
            assert isinstance(event["@timestamp"], str) and event["@timestamp"].endswith("Z")
            assert isinstance(event["event.id"], str) and isinstance(event["event.dataset"], str)
            assert "event.original" in event
        for dead in batch.dead_letters:
            assert dead.location.startswith(f"{path}:")


def _reference_flatten(document: dict, prefix: str = "") -> dict:
    """The obvious recursive definition, to check the optimised ``engine.events.flatten`` against."""
    flat: dict = {}
    for key, value in document.items():
        if isinstance(value, dict) and value:
            flat.update(_reference_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = None if isinstance(value, dict) else value
    return flat


@given(json_objects)
def test_flatten_is_exactly_the_reference(doc: dict) -> None:
    assert flatten(doc) == _reference_flatten(doc)
    assert list(flatten(doc)) == list(_reference_flatten(doc))
