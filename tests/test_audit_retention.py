"""Retention of the audit chain (``retention.audit``, engine.audit.retention) on SQLite and Elasticsearch.

What a user relies on: old entries go when the period says so, ``audit verify`` still says "intact" and still
checks every entry kept, and a chain someone cut *beyond* what retention recorded is still caught.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engine import audit
from engine.audit.retention import PRUNED, prune_audit
from engine.cli import main
from engine.retention import run_retention
from engine.retention_policy import RetentionConfigError, parse_retention
from engine.events import timestamp_ms
from tests.store_fixtures import configured_store, store, ts  # noqa: F401 - fixture
from tests.test_audit_chain import Tamper

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _fill(s: Any, days: list[int]) -> list[audit.AuditEntry]:
    """One entry per listed day of November 2026 (09:15), in that order."""
    return [audit.record(s, "triage.comment", actor="analyst", subject=f"alert-{i}",
                         detail={"record": "alert", "length": i}, at=ts(0, day=d)) for i, d in enumerate(days)]


def _seqs(s: Any) -> list[int]:
    return [e.seq for e in audit.entries(s)]


def test_old_entries_go_and_the_rest_still_verifies_from_the_recorded_link(store):
    entries = _fill(store, [1, 2, 3, 10, 11])
    result = prune_audit(store, ts(0, hour=0, day=5))
    assert result.deleted == 3
    assert _seqs(store) == [4, 5, 6]
    record = list(audit.entries(store, kinds=[PRUNED]))[0]
    assert record.seq == 6 and record.detail["through_seq"] == 3
    assert record.detail["through_hash"] == entries[2].hash  # names exactly the last entry it removed
    verdict = audit.verify(store)
    assert (verdict.ok, verdict.checked, verdict.pruned_through) == (True, 3, 3)
    assert prune_audit(store, ts(0, hour=0, day=5)).deleted == 0  # a repeat removes nothing more
    assert len(list(audit.entries(store, kinds=[PRUNED]))) == 1  # and records nothing new


def test_removing_more_than_the_prune_recorded_or_the_record_itself_is_still_a_gap(store):
    _fill(store, [1, 2, 3, 10, 11])
    prune_audit(store, ts(0, hour=0, day=5))
    Tamper(store).delete(4)  # kept for the period, removed by hand
    verdict = audit.verify(store)
    assert (verdict.ok, verdict.first_broken) == (False, 4)
    assert verdict.reason == "gap: seq 4 missing (entry removed)"


def test_without_its_record_a_pruned_front_is_a_gap_from_seq_one(store):
    _fill(store, [1, 2, 3, 10, 11])
    prune_audit(store, ts(0, hour=0, day=5))
    Tamper(store).delete(6)  # the audit.pruned entry
    verdict = audit.verify(store)
    assert (verdict.ok, verdict.first_broken) == (False, 1)
    assert verdict.reason == "gap: seq 1..3 missing (entry removed)"


def test_an_interrupted_prune_verifies_and_the_next_pass_finishes_it(store, monkeypatch):
    _fill(store, [1, 2, 3, 4, 10])
    real = type(store).delete_audit_through

    def crash_after_one_batch(self: Any, seq: int, *, batch_size: int = 5000) -> Any:
        real(self, 2, batch_size=batch_size)  # the first batch committed, then the process died
        raise KeyboardInterrupt

    monkeypatch.setattr(type(store), "delete_audit_through", crash_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        prune_audit(store, ts(0, hour=0, day=5))
    monkeypatch.setattr(type(store), "delete_audit_through", real)
    assert _seqs(store) == [3, 4, 5, 6]
    verdict = audit.verify(store)  # seq 3 and 4 are already covered by the record: skipped, not a break
    assert (verdict.ok, verdict.checked, verdict.pruned_through) == (True, 2, 4)
    assert prune_audit(store, ts(0, hour=0, day=5)).deleted == 2
    assert _seqs(store) == [5, 6] and audit.verify(store).ok


def test_an_entry_written_after_a_clock_step_back_stops_the_prune_there(store):
    _fill(store, [1, 9, 2, 3])  # seq 2 was appended on the 9th, then the clock went back
    assert prune_audit(store, ts(0, hour=0, day=5)).deleted == 1
    assert _seqs(store)[:3] == [2, 3, 4]  # seq 3 and 4 are older than the cut-off but follow a newer entry


def test_a_dry_run_counts_and_changes_nothing(store):
    _fill(store, [1, 2, 10])
    assert prune_audit(store, ts(0, hour=0, day=5), dry_run=True).deleted == 2
    assert _seqs(store) == [1, 2, 3]
    assert audit.verify(store).pruned_through == 0


def test_a_kept_head_older_than_the_prune_cannot_be_confirmed(store):
    entries = _fill(store, [1, 2, 10])
    prune_audit(store, ts(0, hour=0, day=5))
    verdict = audit.verify(store, expect_head=(2, entries[1].hash))
    assert not verdict.ok and verdict.first_broken == 2
    assert "removed by retention" in verdict.reason and "keep a newer `audit head`" in verdict.reason
    tail = audit.head(store)
    assert audit.verify(store, expect_head=(tail.seq, tail.hash)).ok


def test_the_retention_pass_prunes_by_the_configured_period(store):
    _fill(store, [1, 2, 3, 20])
    now = timestamp_ms(ts(0, hour=0, day=25))
    report = run_retention(store, parse_retention({"audit": "10d"}), [], now_ms=now)
    line = next(line for line in report.lines if line.what == "audit entries")
    assert (line.deleted, line.keep, line.before) == (3, "10d", ts(0, hour=0, day=15))
    assert _seqs(store) == [4, 5] and audit.verify(store).ok
    assert not [line for line in run_retention(store, parse_retention({"alerts": "10d"}), [], now_ms=now).lines
                if line.what == "audit entries"]  # no audit key: the chain is kept


@pytest.mark.parametrize("value", ["400", 400, "6y"])
def test_an_audit_period_must_say_its_unit(value):
    with pytest.raises(RetentionConfigError) as info:
        parse_retention({"audit": value})
    assert info.value.key == "audit"


def test_verify_on_the_command_line_says_what_retention_removed(configured_store, capsys):
    c, s = configured_store
    _fill(s, [1, 2, 3, 10, 11])
    prune_audit(s, ts(0, hour=0, day=5))
    assert main([*c, "audit", "verify"]) == 0
    assert capsys.readouterr().out == "ok: 3 entries from seq 4, chain intact; seq 1..3 removed by retention\n"
    assert main([*c, "audit", "verify", "--format", "json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["pruned_through"] == 3
