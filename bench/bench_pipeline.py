"""End-to-end benchmark of the embedded pipeline on ~1M realistic EHR access events.

Reports, in ONE run on the same data (these machines are noisy: compare ratios, not absolute numbers):
  1. baseline   bare ``sqlite3.executemany`` of the exact rows the store writes (rows built outside the timer)
  2. store      ``SqliteStore.write`` of the same normalised events (validation + encoding + insert + commit);
                1 and 2 alternate batch by batch so both see the same machine load
  3. pipeline   FHIR AuditEvent NDJSON file -> fhir-auditevent-file connector -> enrichment -> store
                (parse to committed row: what the 25k events/s/core target is about), in one process
  3b. pipeline_worker  the same with reading, mapping, enrichment and encoding in a worker process
                (``ingest_connector(..., workers=1)``, engine/ingest_worker.py); CPU counts both processes
  4. evaluate   the whole rule pack (rules/) over everything ingested, via the engine's evaluator

Usage:  .venv/bin/python bench/bench_pipeline.py [--events 1000000] [--batch 5000] [--keep] [--work-dir /tmp/x]
(--work-dir: where the ~1 GB source and the databases go; default bench/out/pipeline-<events>)
Writes bench/out/pipeline-<events>.json and prints a table. Peak RSS is reported after each phase.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Iterator

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.fhir_file import FhirAuditEventFileConnector  # noqa: E402
from engine.config import DEFAULTS  # noqa: E402
from engine.enrich import EnrichmentChain  # noqa: E402
from engine.enrich.time_context import TimeContextEnricher  # noqa: E402
from engine.evaluation import Evaluator, build_jobs, run_all  # noqa: E402
from engine.ingest import ingest_connector  # noqa: E402
from engine.sigma import load_rules  # noqa: E402
from engine.store.sqlite import SqliteStore, _event_row  # noqa: E402
from engine.store.sqlite_schema import apply_pragmas, ensure_schema  # noqa: E402

START = 1_793_577_600  # 2026-11-02T00:00:00Z
SUBTYPES = ["read"] * 8 + ["search-type", "vread"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(path: Path, count: int, seed: int = 7) -> None:
    """Realistic BALP PatientRead/PatientQuery AuditEvents: 2,000 staff, 200k patients, the day shifts
    (07:00-19:00 Europe/Berlin) of five weekdays, time-ordered as an EHR writes them; halfway through, one
    user reads 100 records in a row (the bulk-access rule must fire once)."""
    rng = random.Random(seed)
    users = [(f"U{i:05d}", f"user{i:05d}", f"10.{i % 250}.{i % 7}.{i % 200 + 1}") for i in range(2000)]
    shift = 12 * 3600
    with open(path, "wb") as out:
        for n in range(count):
            uid, login, ip = users[rng.randrange(len(users))]
            if count // 2 <= n < count // 2 + 100:  # one bulk reader, so the rule pack has something to find
                uid, login, ip = "U99999", "bulk.reader", "10.99.0.1"
            offset = 5 * shift * n // count
            day, second = divmod(offset, shift)
            ts = START + day * 86400 + 6 * 3600 + second + rng.random()  # 06:00 UTC = 07:00 local
            subtype = rng.choice(SUBTYPES)
            patient = f"P{rng.randrange(200_000):06d}"
            resource_ = {
                "resourceType": "AuditEvent",
                "id": f"ae-{n:08d}",
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
                "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": subtype}],
                "action": "E" if subtype == "search-type" else "R",
                "recorded": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z",
                "outcome": "0",
                "agent": [
                    {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                          "code": "IRCP"}]},
                     "who": {"identifier": {"value": uid}, "display": f"Staff {uid}"}, "altId": login,
                     "requestor": True, "network": {"address": ip, "type": "2"},
                     "purposeOfUse": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                                   "code": "TREAT"}]}]},
                    {"type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                                          "code": "110153"}]},
                     "who": {"display": "ehr.hospital.example"}, "requestor": False},
                ],
                "source": {"observer": {"display": "ehr.hospital.example"}},
                "entity": [{"what": {"reference": f"Patient/{patient}"},
                            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}}],
            }
            out.write(orjson.dumps(resource_) + b"\n")


def read_events(path: Path, batch: int) -> Iterator[list[dict]]:
    connector = FhirAuditEventFileConnector("bench", {"path": str(path)})
    cursor = None
    while True:
        result = connector.read(cursor, batch)
        if result.events:
            yield result.events
        cursor = result.cursor
        if result.exhausted:
            break


BASELINE_INSERT = "INSERT OR IGNORE INTO events (id, ts, dataset, ingested, doc) VALUES (?,?,?,?,?)"


def open_baseline(path: Path) -> sqlite3.Connection:
    """A bare SQLite database with the store's schema and pragmas: the baseline's target (also used by
    bench/bench_vpn_ingest.py, so every ingest benchmark compares against the same thing)."""
    conn = sqlite3.connect(path, isolation_level=None)
    apply_pragmas(conn, synchronous="NORMAL")
    ensure_schema(conn, str(path))
    return conn


def baseline_insert(conn: sqlite3.Connection, rows: list[tuple]) -> float:
    """Insert ready-made event rows in one transaction with a bare ``executemany``; the seconds it took."""
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(BASELINE_INSERT, rows)
    conn.execute("COMMIT")
    return time.perf_counter() - started


def cpu_now() -> float:
    """CPU seconds of this process and of its waited-for children (the ingest worker)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(label: str, results: dict, events: int, fn) -> None:
    started, cpu = time.perf_counter(), cpu_now()
    extra = fn()
    seconds, cpu_seconds = time.perf_counter() - started, cpu_now() - cpu
    results[label] = {"seconds": round(seconds, 3), "events_per_s": round(events / seconds) if events else None,
                      "cpu_seconds": round(cpu_seconds, 3),
                      "events_per_cpu_s": round(events / cpu_seconds) if events else None,
                      "peak_rss_mb": round(peak_rss_mb())}
    if extra:
        results[label].update(extra)
    print(f"{label:10} {seconds:8.2f} s  {results[label]['events_per_s'] or '':>10} events/s  "
          f"{results[label]['events_per_cpu_s'] or '':>10} events/CPU-s  "
          f"peak RSS {results[label]['peak_rss_mb']} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--keep", action="store_true", help="keep the generated file and databases")
    parser.add_argument("--work-dir", type=Path, help="for the source file and databases (1M: ~3 GB)")
    args = parser.parse_args()
    out_dir = args.work_dir or ROOT / "bench" / "out" / f"pipeline-{args.events}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    source = out_dir / "auditevents.ndjson"
    results: dict = {"events": args.events, "batch": args.batch}

    timed("generate", results, args.events, lambda: generate(source, args.events))
    results["generate"]["file_mb"] = round(source.stat().st_size / 2**20)

    # Phases 1 and 2 interleave batch by batch on the same normalised events (so both see the same machine
    # load), timing only the insert itself; memory stays bounded by one batch.
    enrich = EnrichmentChain([TimeContextEnricher("Europe/Berlin", "07:00", "19:00",
                                                  ["mon", "tue", "wed", "thu", "fri"])])
    conn = open_baseline(out_dir / "baseline.db")
    store = SqliteStore(out_dir / "store.db")
    ingested = "2026-11-29T00:00:00.000Z"
    spent = {"baseline": 0.0, "store": 0.0}
    cpu = {"baseline": 0.0, "store": 0.0}  # CPU seconds: steadier than wall time on a shared machine
    for batch in read_events(source, args.batch):
        batch = enrich.enrich_all(batch)
        rows = [_event_row(e, ingested) for e in batch]
        before = time.process_time()
        spent["baseline"] += baseline_insert(conn, rows)
        cpu["baseline"] += time.process_time() - before
        started, before = time.perf_counter(), time.process_time()
        store.write(batch)
        spent["store"] += time.perf_counter() - started
        cpu["store"] += time.process_time() - before
    conn.close()
    store.close()
    for label, seconds in spent.items():
        results[label] = {"seconds": round(seconds, 3), "events_per_s": round(args.events / seconds),
                          "cpu_seconds": round(cpu[label], 3), "events_per_cpu_s": round(args.events / cpu[label]),
                          "peak_rss_mb": round(peak_rss_mb())}
        print(f"{label:10} {seconds:8.2f} s  {results[label]['events_per_s']:>10} events/s  "
              f"{results[label]['events_per_cpu_s']:>10} events/CPU-s  "
              f"peak RSS {results[label]['peak_rss_mb']} MB", flush=True)

    def pipeline(store: SqliteStore, workers: int) -> dict:
        connector = FhirAuditEventFileConnector("bench", {"path": str(source)})
        stats = ingest_connector(store, connector, enrich, args.batch, workers=workers)
        return {"written": stats.written}

    serial_store = SqliteStore(out_dir / "pipeline.db")
    timed("pipeline", results, args.events, lambda: pipeline(serial_store, 0))
    serial_store.close()
    (out_dir / "pipeline.db").unlink()
    pipeline_store = SqliteStore(out_dir / "pipeline-worker.db")
    timed("pipeline_worker", results, args.events, lambda: pipeline(pipeline_store, 1))

    ruleset = load_rules([str(ROOT / "rules")])
    jobs = build_jobs(ruleset, DEFAULTS["alerts"]["suppression"])
    evaluator = Evaluator(pipeline_store, candidates=ruleset.candidates)

    def evaluate() -> dict:
        alerts = sum(len(r.alerts) for r in run_all(evaluator, jobs))
        return {"rules": len(jobs), "alerts": alerts}

    timed("evaluate", results, args.events, evaluate)
    pipeline_store.close()

    base = results["baseline"]["events_per_s"]
    results["ratios"] = {
        "store_vs_baseline": round(results["store"]["events_per_s"] / base, 3),
        "pipeline_vs_baseline": round(results["pipeline"]["events_per_s"] / base, 3),
        "pipeline_vs_baseline_cpu": round(results["pipeline"]["events_per_cpu_s"]
                                          / results["baseline"]["events_per_cpu_s"], 3),
        "pipeline_worker_vs_baseline": round(results["pipeline_worker"]["events_per_s"] / base, 3),
        "pipeline_worker_vs_baseline_cpu": round(results["pipeline_worker"]["events_per_cpu_s"]
                                                 / results["baseline"]["events_per_cpu_s"], 3),
    }
    r = results["ratios"]
    print(f"store/baseline {r['store_vs_baseline']:.2f}  "
          f"pipeline/baseline {r['pipeline_vs_baseline']:.2f} (CPU time: {r['pipeline_vs_baseline_cpu']:.2f})  "
          f"pipeline_worker/baseline {r['pipeline_worker_vs_baseline']:.2f} "
          f"(CPU time: {r['pipeline_worker_vs_baseline_cpu']:.2f})  (pipeline target: >= 25,000 events/s/core)")
    (ROOT / "bench" / "out").mkdir(exist_ok=True)  # absent in a fresh clone when --work-dir is elsewhere
    (ROOT / "bench" / "out" / f"pipeline-{args.events}.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2))
    if not args.keep:
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
