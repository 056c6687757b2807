"""Elasticsearch ingest: ElasticsearchStore.write vs a bare ``elasticsearch.helpers.bulk`` baseline.

Both sides get the same pre-generated flat EHR audit events, the same index template (es_layout), the same
client (so the same HTTP/compatibility settings), the same chunk size, ``_id`` = event.id and op_type
create, each into a fresh prefix. After an untimed warm-up, rounds alternate baseline/store; the ratio uses
the median round of each (the server dominates and is noisy: JIT, merges, GC), and the client CPU seconds
per side show the store's own overhead. Target (DESIGN.md): store >= 85% of the baseline.

    WARDWATCH_TEST_ES_URL=http://127.0.0.1:9200 .venv/bin/python bench/bench_es_ingest.py --events 200000
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from elasticsearch import helpers  # noqa: E402

from engine.events import format_timestamp, from_timestamp_ms, make_event_id  # noqa: E402
from engine.store import es_layout  # noqa: E402
from engine.store.elasticsearch import ElasticsearchStore  # noqa: E402

ACTIONS = ["read", "update", "print", "export", "login", "logout", "search"]
ROLES = ["physician", "nurse", "admin", "billing", "it"]


def generate(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    base = 1_793_610_000_000  # 2026-11-02
    out = []
    for i in range(n):
        user = f"u{rng.randrange(2000):04d}"
        raw = f"{i}|{user}|{rng.random()}"
        out.append({
            "@timestamp": format_timestamp(from_timestamp_ms(base + i * 7)),
            "event.id": make_event_id("bench", raw),
            "event.dataset": "ehr.audit",
            "event.action": rng.choice(ACTIONS),
            "event.outcome": "success" if rng.random() > 0.05 else "failure",
            "event.original": raw * 3,
            "user.name": user.upper() if rng.random() < 0.1 else user,
            "user.roles": [rng.choice(ROLES)],
            "source.ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "host.name": f"ehr-app-{rng.randrange(8)}",
            "ehr.patient.id": f"P{rng.randrange(100000):06d}",
            "ehr.action": rng.choice(ACTIONS),
            "ehr.break_the_glass": rng.random() < 0.01,
            "ehr.department": rng.choice(["cardiology", "oncology", "er", "icu", "radiology"]),
            "ehr.record_type": rng.choice(["note", "lab", "medication", "imaging"]),
        })
    return out


def run_baseline(store: ElasticsearchStore, events: list[dict[str, Any]], chunk: int) -> float:
    ingested = format_timestamp(from_timestamp_ms(time.time_ns() // 1_000_000))
    started = time.perf_counter()
    ok, errors = helpers.bulk(
        store.es,
        ({"_op_type": "create", "_index": es_layout.events_index(store.prefix, "ehr.audit", e["@timestamp"]), "_id": e["event.id"], "_source": {**e, "event.ingested": ingested}}
         for e in events),
        chunk_size=chunk, max_chunk_bytes=store.bulk_chunk_bytes, stats_only=True)
    elapsed = time.perf_counter() - started
    assert ok == len(events) and not errors, (ok, errors)
    return elapsed


def run_store(store: ElasticsearchStore, events: list[dict[str, Any]], chunk: int) -> float:
    started = time.perf_counter()
    written = 0
    for i in range(0, len(events), chunk):
        written += store.write(events[i:i + chunk]).written
    elapsed = time.perf_counter() - started
    assert written == len(events), written
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5000, help="events per store.write / bulk chunk")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=20_000, help="untimed events per side first (JIT warm-up)")
    parser.add_argument("--url", default=os.environ.get("WARDWATCH_TEST_ES_URL", "http://127.0.0.1:9200"))
    args = parser.parse_args()

    t0 = time.perf_counter()
    events = generate(args.events)
    print(f"generated {len(events)} events in {time.perf_counter() - t0:.1f}s", flush=True)
    times: dict[str, list[float]] = {"baseline": [], "store": []}
    cpu: dict[str, list[float]] = {"baseline": [], "store": []}
    if args.warmup:
        warm = generate(args.warmup, seed=99)
        for fn in (run_baseline, run_store):
            store = ElasticsearchStore(hosts=[args.url], index_prefix=f"wwbench-{uuid.uuid4().hex[:8]}", replicas=0,
                                       bulk_chunk_docs=args.batch)
            try:
                fn(store, warm, args.batch)
            finally:
                store.delete_all()
                store.close()
        print(f"warmed up with {args.warmup} events per side", flush=True)
    for rnd in range(args.rounds):
        for side in ("baseline", "store"):
            store = ElasticsearchStore(hosts=[args.url], index_prefix=f"wwbench-{uuid.uuid4().hex[:8]}", replicas=0,
                                       bulk_chunk_docs=args.batch)
            try:
                cpu0 = time.process_time()
                elapsed = (run_baseline if side == "baseline" else run_store)(store, events, args.batch)
                cpu1 = time.process_time() - cpu0
            finally:
                store.delete_all()
                store.close()
            times[side].append(elapsed)
            cpu[side].append(cpu1)
            print(f"round {rnd + 1} {side:8s}: {elapsed:6.2f}s  {len(events) / elapsed:9,.0f} events/s  "
                  f"client CPU {cpu1:5.2f}s", flush=True)
    base_rate = len(events) / statistics.median(times["baseline"])
    store_rate = len(events) / statistics.median(times["store"])
    print(f"server Elasticsearch {store.server_version}; median of {args.rounds} rounds: baseline helpers.bulk "
          f"{base_rate:,.0f} events/s, ElasticsearchStore.write {store_rate:,.0f} events/s, "
          f"ratio {store_rate / base_rate:.1%} (target >= 85%); client CPU median baseline "
          f"{statistics.median(cpu['baseline']):.2f}s, store {statistics.median(cpu['store']):.2f}s")
    return 0 if store_rate / base_rate >= 0.85 else 1


if __name__ == "__main__":
    raise SystemExit(main())
