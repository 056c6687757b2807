"""Sinks: the JSONL file never gets the same alert revision twice, even after a crash mid-write."""

from __future__ import annotations

import orjson

from engine.alerts.model import Alert
from engine.alerts.sinks import JsonlSink


def alert(i: str, revision: int = 1) -> Alert:
    return Alert(id=i, rule_id="r", rule_title="T", rule_level="high", rule_tags=[], kind="match", group={},
                 group_key=i, window_start="x", window_end="x", first_trigger="x", last_trigger="x",
                 revision=revision)


def lines(path):
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_redelivery_after_restart_is_skipped(tmp_path):
    path = tmp_path / "alerts.jsonl"
    JsonlSink(path).deliver([alert("a"), alert("b")])
    sink = JsonlSink(path)  # a restart: learns what the file holds
    sink.deliver([alert("a"), alert("b"), alert("a", 2)])
    assert [(r["id"], r["revision"]) for r in lines(path)] == [("a", 1), ("b", 1), ("a", 2)]


def test_torn_last_line_is_dropped_and_rewritten(tmp_path):
    path = tmp_path / "alerts.jsonl"
    JsonlSink(path).deliver([alert("a")])
    with open(path, "ab") as handle:
        handle.write(orjson.dumps(alert("b").to_dict())[:25])  # crash mid-write
    JsonlSink(path).deliver([alert("a"), alert("b")])
    assert [r["id"] for r in lines(path)] == ["a", "b"]
