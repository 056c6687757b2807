"""SQLite ingest: SqliteStore.write against a bare sqlite3 executemany of the same rows, in one run.

Why this shape: DESIGN.md asks that the store's write path stay close to what SQLite itself can do. Both
sides get the same schema (``engine.store.sqlite_schema``), the same pragmas, fresh files in the same
directory and the same generated events; only the write calls are timed (generation is not). Each phase
runs in its own forked process so its peak RSS is its own.

Baselines:
  bare_insert        executemany of ready-made row tuples (orjson encoding done outside the timer)
  bare_encode_insert the same, encoding each event with orjson inside the timer (what any store must do)
  store              SqliteStore.write(batch, cursor): validation, event.ingested, encoding, insert,
                     cursor upsert and event count, one transaction per batch

Usage: .venv/bin/python bench/bench_sqlite_ingest.py --events 1000000 --batch 5000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.events import Event, format_timestamp, make_event_id  # noqa: E402
from engine.store.base import CursorUpdate  # noqa: E402
from engine.store.sqlite import _INSERT_EVENT, SqliteStore  # noqa: E402
from engine.store.sqlite_schema import apply_pragmas, ensure_schema  # noqa: E402

DEPARTMENTS = ["cardiology", "oncology", "emergency", "radiology", "pediatrics", "icu", "pharmacy", "lab"]
WORKSTATIONS = [f"WS-{n:04d}" for n in range(400)]
OUTCOMES = ["success"] * 97 + ["failure"] * 3
PHASES = ("bare_insert", "bare_encode_insert", "store")


def generate(n_events: int, batch: int, seed: int = 7) -> Iterator[list[Event]]:
    """Stream realistic flat EHR audit events (~20 fields, event.original ~400 bytes) batch by batch."""
    rng = random.Random(seed)
    users = [(f"u{n:05d}", f"user{n:05d}") for n in range(3_000)]
    t = datetime(2026, 11, 2, 6, 0, tzinfo=timezone.utc)
    out: list[Event] = []
    for i in range(n_events):
        t += timedelta(milliseconds=rng.randint(0, 40))
        user_id, user_name = rng.choice(users)
        patient = f"P{rng.randrange(200_000):07d}"
        ip = f"10.{rng.randrange(32)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        ws = rng.choice(WORKSTATIONS)
        dept = rng.choice(DEPARTMENTS)
        outcome = rng.choice(OUTCOMES)
        stamp = format_timestamp(t)
        original = orjson.dumps({
            "AuditID": 10_000_000 + i, "Timestamp": stamp, "UserID": user_id, "UserName": user_name,
            "Workstation": ws, "ClientIP": ip, "PatientMRN": patient, "Action": "R", "Module": "ChartReview",
            "Department": dept, "Result": outcome.upper(), "Context": "Encounter",
            "EncounterID": f"E{rng.randrange(10**9):09d}", "Reason": "TREATMENT", "BreakTheGlass": False,
            "Application": "EHR-Prod", "Session": f"{rng.getrandbits(64):016x}",
        }).decode()
        out.append({
            "@timestamp": stamp,
            "event.dataset": "ehr.audit",
            "event.id": make_event_id("ehr-csv:/data/audit.csv", original),
            "event.kind": "event",
            "event.category": ["database"],
            "event.action": "read",
            "event.outcome": outcome,
            "event.module": "ehr",
            "user.name": user_name,
            "user.id": user_id,
            "source.ip": ip,
            "host.name": ws,
            "ehr.patient.id": patient,
            "ehr.action": "R",
            "ehr.department": dept,
            "ehr.break_the_glass": False,
            "ehr.module": "ChartReview",
            "observer.vendor": "EHR-Prod",
            "event.original": original,
        })
        if len(out) >= batch:
            yield out
            out = []
    if out:
        yield out


def _row(event: Event, ingested: str) -> tuple[str, str, str, str, bytes]:
    doc = dict(event)
    doc["event.ingested"] = ingested
    return (event["event.id"], event["@timestamp"], event["event.dataset"], ingested, orjson.dumps(doc))


def _open_bare(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None)
    apply_pragmas(conn)
    ensure_schema(conn, str(path))
    return conn


def phase(kind: str, path: Path, n_events: int, batch: int, result: "mp.Queue[dict[str, Any]]") -> None:
    timed = 0.0
    written = 0
    ingested = format_timestamp(datetime.now(timezone.utc))
    if kind == "store":
        store = SqliteStore(path)
        for b, events in enumerate(generate(n_events, batch)):
            t0 = time.perf_counter()
            res = store.write(events, CursorUpdate("bench", {"batch": b}))
            timed += time.perf_counter() - t0
            written += res.written
        store.close()
    else:
        conn = _open_bare(path)
        for events in generate(n_events, batch):
            rows = None if kind == "bare_encode_insert" else [_row(e, ingested) for e in events]
            t0 = time.perf_counter()
            if rows is None:
                rows = [_row(e, ingested) for e in events]
            conn.execute("BEGIN IMMEDIATE")
            written += conn.executemany(_INSERT_EVENT, rows).rowcount
            conn.execute("COMMIT")
            timed += time.perf_counter() - t0
        conn.close()
    result.put({
        "phase": kind,
        "events": n_events,
        "written": written,
        "seconds": round(timed, 3),
        "events_per_s": round(n_events / timed) if timed else None,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "file_mib": round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20, 1),
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--dir", type=Path, default=None, help="where the SQLite files go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite files")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--order", default="bare_insert,bare_encode_insert,store",
                        help="phase order (comma-separated); rotate it to check for order effects")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="ww-bench-", dir=args.dir))
    ctx = mp.get_context("fork")  # the parent is small at fork time, so each child's peak RSS is its own
    results: list[dict[str, Any]] = []
    try:
        phases = [p.strip() for p in args.order.split(",")]
        if sorted(phases) != sorted(PHASES):
            parser.error(f"--order must name each of {', '.join(PHASES)} once")
        for kind in phases:
            queue: mp.Queue[dict[str, Any]] = ctx.Queue()
            proc = ctx.Process(target=phase, args=(kind, workdir / f"{kind}.db", args.events, args.batch, queue))
            proc.start()
            results.append(queue.get())
            proc.join()
            if proc.exitcode != 0:
                raise SystemExit(f"phase {kind} failed with exit code {proc.exitcode}")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    by = {r["phase"]: r for r in results}
    ratios = {
        "store_vs_bare_insert": round(by["store"]["events_per_s"] / by["bare_insert"]["events_per_s"], 3),
        "store_vs_bare_encode_insert": round(
            by["store"]["events_per_s"] / by["bare_encode_insert"]["events_per_s"], 3),
    }
    print(f"SQLite ingest, {args.events:,} events, batch {args.batch:,}, sqlite {sqlite3.sqlite_version}")
    print(f"{'phase':<20} {'events/s':>10} {'seconds':>9} {'peak RSS MiB':>13} {'file MiB':>9}")
    for r in results:
        print(f"{r['phase']:<20} {r['events_per_s']:>10,} {r['seconds']:>9.2f} {r['peak_rss_mib']:>13.1f} "
              f"{r['file_mib']:>9.1f}")
    for name, value in ratios.items():
        print(f"ratio {name}: {value:.3f}")

    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    report = {
        "benchmark": "sqlite_ingest", "when": stamp, "events": args.events, "batch": args.batch,
        "sqlite": sqlite3.sqlite_version, "python": platform.python_version(), "cpus": os.cpu_count(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "results": results, "ratios": ratios,
    }
    out_file = args.out / f"sqlite_ingest_{stamp}.json"
    out_file.write_text(json.dumps(report, indent=2))
    print(f"wrote {out_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
