"""Kill -9 the real service at arbitrary moments, restart it: the alerts are exactly those of one clean run.

This is the promise a SOC relies on: no event lost or stored twice, no alert lost, doubled or different,
whatever moment the process dies (mid-ingest, mid-evaluation, mid-delivery).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml

from engine.store import open_store
from engine.store.base import SearchQuery
from tests.conftest import demo_connectors

ROOT = Path(__file__).resolve().parent.parent
WARDWATCH = [sys.executable, "-m", "engine.cli"]


def write_config(directory: Path, *, service: bool) -> Path:
    config = {
        "store": {"kind": "sqlite", "sqlite": {"path": str(directory / "w.db")}},
        "rules": {"paths": [str(ROOT / "rules")]},
        "connectors": demo_connectors(),
        "alerts": {"sinks": [{"type": "jsonl", "path": str(directory / "alerts.jsonl")}]},
        "logging": {"level": "warning", "format": "json"},
    }
    if service:
        # Small batches and short intervals: ingest, evaluation and delivery interleave for seconds.
        config["scheduler"] = {
            "batch_size": 20, "ingest_batches_per_run": 1, "ingest_interval": "50ms",
            "rule_interval": "70ms", "delivery_interval": "90ms",
        }
    path = directory / "wardwatch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_once(config: Path) -> None:
    result = subprocess.run([*WARDWATCH, "--config", str(config), "run", "--once"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def comparable(alerts: list) -> dict[str, dict]:
    """Alert content without the bookkeeping that legitimately differs (revision counter, status)."""
    out = {}
    for alert in alerts:
        data = alert.to_dict()
        data.pop("revision")
        data.pop("status")
        out[alert.id] = data
    return out


def event_ids(db: Path) -> list[str]:
    store = open_store("sqlite", path=db)
    try:
        return [e["event.id"] for e in store.search(SearchQuery(fields=["event.id"]))]
    finally:
        store.close()


def stored_alerts(db: Path) -> list:
    store = open_store("sqlite", path=db)
    try:
        return store.list_alerts()
    finally:
        store.close()


@pytest.mark.slow
def test_kill_minus_nine_and_restart_gives_the_alerts_of_an_uninterrupted_run(tmp_path):
    reference_dir, crash_dir = tmp_path / "reference", tmp_path / "crash"
    reference_dir.mkdir(), crash_dir.mkdir()
    run_once(write_config(reference_dir, service=False))

    config = write_config(crash_dir, service=True)
    kills = 0
    for delay in (2.5, 1.7, 3.3, 2.1, 2.9, 1.9):  # fixed, so a failure reproduces
        proc = subprocess.Popen([*WARDWATCH, "--config", str(config), "run"], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
    assert kills >= 5, "the service exited by itself; the test would not exercise crashes"
    # The killed service did real work (ingested and alerted) before the final catch-up run.
    assert event_ids(crash_dir / "w.db") and stored_alerts(crash_dir / "w.db")
    run_once(config)  # finish whatever the killed runs left

    reference_events = event_ids(reference_dir / "w.db")
    crash_events = event_ids(crash_dir / "w.db")
    assert len(crash_events) == len(set(crash_events)) == len(reference_events)
    assert set(crash_events) == set(reference_events)

    expected = comparable(stored_alerts(reference_dir / "w.db"))
    got_alerts = stored_alerts(crash_dir / "w.db")
    assert comparable(got_alerts) == expected
    assert len(expected) >= 5

    lines = [orjson.loads(line) for line in (crash_dir / "alerts.jsonl").read_bytes().splitlines()]
    pairs = [(line["id"], line["revision"]) for line in lines]
    assert len(pairs) == len(set(pairs)), "an alert revision was written to the JSONL sink twice"
    latest = {}
    for line in lines:
        if line["revision"] >= latest.get(line["id"], {"revision": 0})["revision"]:
            latest[line["id"]] = line
    assert {a.id: a.revision for a in got_alerts} == {i: line["revision"] for i, line in latest.items()}

    # Cases (engine/alerts/cases.py): the same cases as the uninterrupted run, each revision written once.
    def stored_cases(db: Path) -> dict[str, dict]:
        store = open_store("sqlite", path=db)
        try:
            return {c.id: {k: v for k, v in c.to_dict().items() if k not in ("revision", "status")}
                    for c in store.list_cases()}
        finally:
            store.close()

    got_cases = stored_cases(crash_dir / "w.db")
    assert got_cases == stored_cases(reference_dir / "w.db") and got_cases
    case_lines = [orjson.loads(line) for line in (crash_dir / "alerts.cases.jsonl").read_bytes().splitlines()]
    case_pairs = [(line["id"], line["revision"]) for line in case_lines]
    assert len(case_pairs) == len(set(case_pairs)), "a case revision was written to the JSONL sink twice"
    assert {line["id"] for line in case_lines} == set(got_cases)
