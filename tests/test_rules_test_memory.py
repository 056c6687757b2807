"""``rules test`` streams its sample: memory is bounded by the batch size, not by the number of events."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import orjson

from engine.app import alerts_over_sample
from engine.cli import main
from engine.events import DATASET, EVENT_ID, TIMESTAMP
from engine.sigma import load_rules
from engine.store.sqlite import SqliteStore

RID = "aaaaaaaa-0000-4000-8000-00000000a001"
RULE = (f"title: Rare action\nid: {RID}\nlogsource: {{product: ehr}}\n"
        "detection:\n  sel:\n    ehr.action: export\n  condition: sel\n")


def ruleset(tmp_path: Path):
    path = tmp_path / "rule.yml"
    path.write_text(RULE)
    rs = load_rules([path])
    assert not rs.errors
    return rs


def events(count: int, pulled: list[int] | None = None):
    """Ordinary reads with padding, every 1000th an export (the rule's match)."""
    for n in range(count):
        if pulled is not None:
            pulled[0] += 1
        yield {EVENT_ID: f"e{n}", DATASET: "ehr.audit",
               TIMESTAMP: f"2026-11-02T{8 + n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
               "ehr.action": "export" if n % 1000 == 999 else "read", "user.name": f"user{n % 97}",
               "ehr.patient.id": f"P{n:07d}", "padding": "x" * 400}


def test_sample_is_consumed_one_batch_ahead_of_the_store_at_most(tmp_path, monkeypatch):
    pulled = [0]
    written = [0]
    lead: list[int] = []
    real_write = SqliteStore.write

    def write(self, batch, *args, **kwargs):
        lead.append(pulled[0] - written[0])
        written[0] += len(batch)
        return real_write(self, batch, *args, **kwargs)

    monkeypatch.setattr(SqliteStore, "write", write)
    alerts = alerts_over_sample(ruleset(tmp_path), events(5000, pulled), batch_size=300)
    assert written[0] == pulled[0] == 5000
    assert lead and max(lead) <= 300, lead
    assert sorted(e for a in alerts for e in a.evidence) == sorted(f"e{n}" for n in range(999, 5000, 1000))


def _peak_bytes(rs, count: int) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        alerts = alerts_over_sample(rs, events(count), batch_size=500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(alerts) == count // 1000
    return peak


def test_peak_memory_does_not_grow_with_the_sample(tmp_path):
    rs = ruleset(tmp_path)
    small, large = _peak_bytes(rs, 2_000), _peak_bytes(rs, 12_000)
    held = 12_000 * 500  # a lower bound for what holding the large sample in memory would take
    assert large < small + held // 4, (small, large)


def test_cli_rules_test_counts_streamed_events(tmp_path, capsys):
    rule = tmp_path / "rule.yml"
    rule.write_text(RULE)
    sample = tmp_path / "events.ndjson"
    with open(sample, "wb") as out:
        for ev in events(2500):
            out.write(orjson.dumps(ev) + b"\n")
    code = main(["rules", "test", str(rule), "--events", str(sample), "--format", "table"])
    assert code == 0
    assert "2 result(s) on 2500 event(s)" in capsys.readouterr().out.replace("\n", " ")
