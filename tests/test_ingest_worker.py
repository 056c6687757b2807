"""Ingest with parsing in a worker process (engine/ingest_worker.py): the store ends up exactly as with the
in-process loop, batch by batch and cursor by cursor, including when either process dies."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

import engine.ingest_worker as ingest_worker
from connectors.base import ConnectorError
from connectors.fhir_file import FhirAuditEventFileConnector
from connectors.ndjson import NdjsonFileConnector
from engine.enrich import EnrichmentChain, Enricher
from engine.enrich.time_context import TimeContextEnricher
from engine.ingest import ingest_connector
from engine.ingest_worker import IngestWorkerError, worker_refusal
from engine.store.base import SearchQuery
from engine.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parent.parent
START = 1_793_613_600  # 2026-11-02T10:00:00Z


def audit_event(n: int) -> dict[str, Any]:
    ts = START + n * 7
    return {
        "resourceType": "AuditEvent", "id": f"ae-{n}", "action": "R", "outcome": "0",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{n % 1000:03d}Z",
        "agent": [{"who": {"identifier": {"value": f"U{n % 37}"}}, "altId": f"user{n % 37}", "requestor": True,
                   "network": {"address": f"10.0.{n % 5}.{n % 200 + 1}", "type": "2"}}],
        "source": {"observer": {"display": "ehr.example"}},
        "entity": [{"what": {"reference": f"Patient/P{n % 501}"},
                    "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}}],
    }


def write_fhir(path: Path, count: int) -> None:
    """``count`` AuditEvents, with blank lines, bad JSON, an AuditEvent without ``recorded`` and a Bundle
    line in between (dead letters and multi-event lines must cut batches the same way)."""
    with open(path, "wb") as out:
        for n in range(count):
            out.write(orjson.dumps(audit_event(n)) + b"\n")
            if n % 97 == 5:
                out.write(b"\n{not json\n")
            if n % 131 == 7:
                bad = audit_event(n)
                del bad["recorded"]
                out.write(orjson.dumps(bad) + b"\n")
            if n % 211 == 9:
                bundle = {"resourceType": "Bundle", "type": "collection",
                          "entry": [{"resource": audit_event(count + n * 3 + i)} for i in range(3)]}
                out.write(orjson.dumps(bundle) + b"\n")


def write_ndjson(path: Path, count: int) -> None:
    with open(path, "wb") as out:
        for n in range(count):
            out.write(orjson.dumps({"@timestamp": START + n, "user": {"name": f"u{n % 13}"}, "n": n}) + b"\n")
            if n % 89 == 3:
                out.write(b"[1, 2]\n")


def chain() -> EnrichmentChain:
    return EnrichmentChain([TimeContextEnricher("Europe/Berlin", "07:00", "19:00", ["mon", "tue", "wed"])])


def contents(store: SqliteStore, name: str) -> tuple[list[dict], list[tuple], Any]:
    """Everything an ingest leaves: documents (without the wall-clock event.ingested), dead letters, cursor."""
    docs = []
    for event in store.search(SearchQuery()):
        event.pop("event.ingested")
        docs.append(event)
    letters = sorted((d.source, d.reason, d.location, d.raw) for d in store.list_dead_letters(limit=10_000))
    return docs, letters, store.get_cursor(name)


@pytest.fixture
def worker_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many ingests went through the worker (so an equality below cannot pass by never using it)."""
    runs: list[int] = []
    real = ingest_worker.run_worker_pipeline

    def spy(*args: Any, **kwargs: Any) -> None:
        runs.append(1)
        real(*args, **kwargs)

    monkeypatch.setattr("engine.ingest.run_worker_pipeline", spy)
    return runs


CONNECTORS = {
    "fhir": (FhirAuditEventFileConnector, "in.ndjson", write_fhir),
    "ndjson": (NdjsonFileConnector, "in.jsonl", write_ndjson),
}


@pytest.mark.parametrize("kind", sorted(CONNECTORS))
def test_a_worker_stores_what_one_process_stores(tmp_path: Path, kind: str, worker_runs: list[int]) -> None:
    cls, filename, write = CONNECTORS[kind]
    write(tmp_path / filename, 1500)
    results = {}
    for workers in (0, 1):
        store = SqliteStore(tmp_path / f"w{workers}.db")
        connector = cls("src", {"path": str(tmp_path / filename)})
        connector.read_to_end()
        stats = ingest_connector(store, connector, chain(), 100, workers=workers)
        results[workers] = (contents(store, "src"), (stats.events, stats.written, stats.duplicates,
                                                      stats.dead_letters, stats.batches))
        store.close()
    assert worker_runs == [1]
    assert results[1] == results[0]
    (docs, letters, _), (events, written, *_rest) = results[0]
    assert events == written == len(docs) >= 1500 and letters


def test_max_batches_stops_at_a_batch_boundary_and_the_next_run_resumes(tmp_path: Path,
                                                                          worker_runs: list[int]) -> None:
    write_fhir(tmp_path / "in.ndjson", 1200)
    serial = SqliteStore(tmp_path / "serial.db")
    worked = SqliteStore(tmp_path / "worker.db")
    for store, workers in ((serial, 0), (worked, 1)):
        connector = FhirAuditEventFileConnector("src", {"path": str(tmp_path / "in.ndjson")})
        stats = ingest_connector(store, connector, chain(), 100, max_batches=3, workers=workers)
        assert stats.batches == 3
    assert contents(worked, "src") == contents(serial, "src")
    for store, workers in ((serial, 0), (worked, 1)):
        connector = FhirAuditEventFileConnector("src", {"path": str(tmp_path / "in.ndjson")})
        connector.read_to_end()
        ingest_connector(store, connector, chain(), 100, workers=workers)
    assert len(worker_runs) == 2
    assert contents(worked, "src") == contents(serial, "src")
    assert len(contents(worked, "src")[0]) > 1200


class FailingEnricher(Enricher):
    """Raises on one event, as a broken enrichment step would (it may run in the worker)."""

    name = "failing"
    runs_in_worker = True

    def __init__(self, bad_id: str, error: BaseException | None = None):
        self.bad_id = bad_id
        self.error = error

    def enrich(self, event: dict) -> dict:
        if event.get("ehr.audit.id") == self.bad_id:
            if self.error is None:
                os._exit(9)  # the worker process dies mid-batch (OOM killer, kill -9)
            raise self.error
        return event


class Unpicklable(Exception):
    def __init__(self, code: int, text: str):
        super().__init__(f"{code}: {text}")


@pytest.mark.parametrize("error, expected", [(RuntimeError("enricher broke"), RuntimeError),
                                             (Unpicklable(3, "no"), ConnectorError)])
def test_an_error_in_the_worker_is_raised_after_the_batches_before_it_are_stored(
        tmp_path: Path, error: BaseException, expected: type, worker_runs: list[int]) -> None:
    write_fhir(tmp_path / "in.ndjson", 600)
    stored = {}
    for workers in (0, 1):
        store = SqliteStore(tmp_path / f"w{workers}.db")
        connector = FhirAuditEventFileConnector("src", {"path": str(tmp_path / "in.ndjson")})
        enrichment = EnrichmentChain([FailingEnricher("ae-250", error)])
        with pytest.raises(Exception) as raised:
            ingest_connector(store, connector, enrichment, 100, workers=workers)
        if workers:
            assert raised.type is expected
            assert str(error) in str(raised.value)
        stored[workers] = contents(store, "src")
        store.close()
    assert worker_runs == [1]
    assert stored[1] == stored[0] and 0 < len(stored[1][0]) < 300


def test_a_worker_that_dies_is_an_error_and_the_next_run_stores_the_rest_once(tmp_path: Path) -> None:
    write_fhir(tmp_path / "in.ndjson", 600)
    store = SqliteStore(tmp_path / "w.db")
    connector = FhirAuditEventFileConnector("src", {"path": str(tmp_path / "in.ndjson")})
    with pytest.raises(IngestWorkerError, match="ingest worker process ended"):
        ingest_connector(store, connector, EnrichmentChain([*chain().enrichers, FailingEnricher("ae-250")]), 100,
                         workers=1)
    partial = len(contents(store, "src")[0])
    assert 0 < partial < 300
    connector = FhirAuditEventFileConnector("src", {"path": str(tmp_path / "in.ndjson")})
    connector.read_to_end()
    ingest_connector(store, connector, chain(), 100, workers=1)
    clean = SqliteStore(tmp_path / "clean.db")
    connector = FhirAuditEventFileConnector("src", {"path": str(tmp_path / "in.ndjson")})
    connector.read_to_end()
    ingest_connector(clean, connector, chain(), 100, workers=0)
    assert contents(store, "src")[0] == contents(clean, "src")[0]


def test_the_worker_is_refused_where_it_could_change_what_is_stored(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "w.db")
    fhir = FhirAuditEventFileConnector("src", {"path": str(tmp_path)})
    assert worker_refusal(store, fhir, chain(), auto=False) is None

    class Subclass(NdjsonFileConnector):  # may hold state across reads: must say so itself
        type_name = "sub"

    assert "does not read in a worker" in worker_refusal(store, Subclass("s", {"path": str(tmp_path)}), chain(),
                                                         auto=False)

    class Stateful(Enricher):
        name = "stateful"

        def enrich(self, event: dict) -> dict:
            return event

    assert "enricher 'stateful'" in worker_refusal(store, fhir, EnrichmentChain([Stateful()]), auto=False)
    with_baselines = chain()
    with_baselines.baselines = object()
    assert "baselines" in worker_refusal(store, fhir, with_baselines, auto=False)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _stored(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'event_count'").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0]) if row else 0


@pytest.mark.skipif(not Path("/proc/self/stat").exists() or (os.cpu_count() or 1) < 2,
                    reason="needs /proc (to find the worker) and 2 CPUs")
def test_kill_minus_nine_during_a_worker_ingest_loses_nothing(tmp_path: Path) -> None:
    """`wardwatch ingest` with ``scheduler.ingest_workers: 1``, killed -9 mid-run, run again: every event
    once; the orphaned worker exits instead of running on."""
    source = tmp_path / "in.ndjson"
    write_fhir(source, 40_000)
    db = tmp_path / "w.db"
    config = tmp_path / "wardwatch.yaml"
    config.write_text(yaml.safe_dump({"store": {"kind": "sqlite", "sqlite": {"path": str(db)}},
                                      "scheduler": {"batch_size": 500, "ingest_workers": 1},
                                      "logging": {"level": "warning"}}))
    command = [sys.executable, "-m", "engine.cli", "--config", str(config), "ingest", "fhir-auditevent-file",
               str(source), "--name", "src"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    worker = []
    while _stored(db) < 2_000 and time.monotonic() < deadline and proc.poll() is None:
        worker = worker or _children(proc.pid)
        time.sleep(0.01)
    assert proc.poll() is None, "the ingest finished before it could be killed: make the input bigger"
    worker = worker or _children(proc.pid)
    assert worker, "no worker process was started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _stored(db)
    assert 0 < partial < 40_000
    for _ in range(500):  # the worker's next send fails once its reader is gone
        if not any(_alive(pid) for pid in worker):
            break
        time.sleep(0.02)
    assert not any(_alive(pid) for pid in worker), "the orphaned worker kept running"
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    clean = SqliteStore(tmp_path / "clean.db")
    connector = FhirAuditEventFileConnector("src", {"path": str(source)})
    connector.read_to_end()
    ingest_connector(clean, connector, EnrichmentChain([TimeContextEnricher(
        "Europe/Berlin", "07:00", "19:00", ["mon", "tue", "wed", "thu", "fri"])]), 500, workers=0)
    expected = [e["event.id"] for e in clean.search(SearchQuery(fields=["event.id"]))]
    store = SqliteStore(db)
    got = [e["event.id"] for e in store.search(SearchQuery(fields=["event.id"]))]
    assert got == expected and _stored(db) == len(expected)


@pytest.mark.parametrize("value, expected", [(None, 0), (0, 0), (1, 1), ("auto", None)])
def test_scheduler_ingest_workers_option(tmp_path: Path, value: Any, expected: int | None) -> None:
    from engine.config import load_config
    from engine.ingest import ingest_workers

    config = tmp_path / "wardwatch.yaml"
    config.write_text(yaml.safe_dump({} if value is None else {"scheduler": {"ingest_workers": value}}))
    assert ingest_workers(load_config(config)["scheduler"]["ingest_workers"]) == expected


def test_scheduler_ingest_workers_refuses_other_values(tmp_path: Path) -> None:
    from engine.config import ConfigError, load_config

    config = tmp_path / "wardwatch.yaml"
    config.write_text(yaml.safe_dump({"scheduler": {"ingest_workers": 2}}))
    with pytest.raises(ConfigError, match="scheduler.ingest_workers"):
        load_config(config)


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="glibc only")
def test_ingest_keeps_the_heap_top_mapped_between_batches(tmp_path: Path) -> None:
    """After an ingest, glibc keeps freed memory for the next batch (engine/malloc_tuning.py); checked in a
    fresh process, since the setting is per process and sticky."""
    script = f"""
import ctypes, sys
sys.path.insert(0, {str(ROOT)!r})
from engine.malloc_tuning import keep_heap_between_batches, TOP_PAD_BYTES
import engine.malloc_tuning as tuning
assert not tuning._applied
from connectors.ndjson import NdjsonFileConnector
from engine.enrich import EnrichmentChain
from engine.ingest import ingest_connector
from engine.store.sqlite import SqliteStore
open({str(tmp_path / 'in.jsonl')!r}, 'w').write('{{"@timestamp": 1793613600, "n": 1}}\\n')
store = SqliteStore({str(tmp_path / 'w.db')!r})
ingest_connector(store, NdjsonFileConnector('s', {{'path': {str(tmp_path / 'in.jsonl')!r}}}), EnrichmentChain(), 10)
assert tuning._applied and keep_heap_between_batches()
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
