"""``elasticsearch-source`` read throughput vs a bare PIT + ``search_after`` loop, same cluster, same run.

Both sides read the same index of N documents (the connector's test fixture, repeated with fresh ids:
Windows, Cisco ASA, FortiGate, PAN-OS and generic ECS documents in its proportions), with the same page size
and the same sort (``event.ingested``, ``_shard_doc``). The baseline only pages and counts hits (what
``helpers.scan`` with a PIT does); the connector also maps every document (Windows record contract, our VPN
parsers, identity) and keeps its cursor. Each side runs in a forked child so its peak RSS is its own;
rounds alternate and the ratio uses the medians.

    WARDWATCH_TEST_ES_URL=http://127.0.0.1:9200 .venv/bin/python bench/bench_elasticsearch_source.py --docs 50000
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402
from elasticsearch import Elasticsearch, helpers  # noqa: E402
from elasticsearch.serializer import OrjsonSerializer  # noqa: E402

from connectors.elasticsearch_source.connector import ElasticsearchSourceConnector  # noqa: E402

FIXTURE = Path(__file__).resolve().parent.parent / "tests/data/elasticsearch_source/documents.ndjson"


def load(es: Elasticsearch, index: str, n: int) -> None:
    docs = [orjson.loads(line)["_source"] for line in FIXTURE.read_bytes().splitlines()]
    base = datetime.now(timezone.utc)

    def actions():
        for i in range(n):
            src = docs[i % len(docs)]
            ingested = (base + timedelta(microseconds=i * 100)).isoformat().replace("+00:00", "Z")
            winlog = src.get("winlog")
            if winlog:  # a distinct Windows record per copy (else the copies share one identity)
                src = {**src, "winlog": {**winlog, "record_id": str(1_000_000 + i)}}
            yield {"_index": index, "_id": f"b{i}", "_source": {**src, "event": {**src.get("event", {}),
                                                                              "ingested": ingested}}}

    helpers.bulk(es, actions(), chunk_size=2000, refresh="true")


def baseline(url: str, index: str, page: int) -> int:
    es = Elasticsearch(url, request_timeout=60, serializer=OrjsonSerializer())  # the connector's decoder
    pit = es.open_point_in_time(index=index, keep_alive="1m")["id"]
    after = None
    total = 0
    while True:
        body: dict[str, Any] = {"size": page, "pit": {"id": pit, "keep_alive": "1m"}, "track_total_hits": False,
                                "sort": [{"event.ingested": {"order": "asc", "numeric_type": "date"}},
                                         {"_shard_doc": "asc"}]}
        if after is not None:
            body["search_after"] = after
        response = es.search(**body)
        pit = response.get("pit_id", pit)
        hits = response["hits"]["hits"]
        total += len(hits)
        if len(hits) < page:
            break
        after = hits[-1]["sort"]
    es.close_point_in_time(id=pit)
    es.close()
    return total


def connector(url: str, index: str, page: int) -> int:
    conn = ElasticsearchSourceConnector("bench", {"index": index, "hosts": [url], "batch_size": page})
    cursor = None
    total = 0
    while True:
        batch = conn.read(cursor, 5000)
        assert batch.unavailable is None, batch.unavailable
        total += len(batch.events) + len(batch.dead_letters)
        cursor = batch.cursor
        if batch.exhausted:
            break
    conn.close()
    return total


def idle_poll(url: str, index: str, page: int) -> tuple[float, int]:
    """Seconds of one poll that finds nothing new while every document is inside the overlap window: the
    steady-state cost of the overlap re-read (the connector skips all of them)."""
    conn = ElasticsearchSourceConnector("bench", {"index": index, "hosts": [url], "batch_size": page,
                                                  "overlap": "1h"})
    cursor = None
    while True:
        batch = conn.read(cursor, 5000)
        cursor = batch.cursor
        if batch.exhausted:
            break
    started = time.perf_counter()
    batch = conn.read(cursor, 5000)
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed, len(batch.events)


def _child(side: str, url: str, index: str, page: int, queue: Any) -> None:
    started = time.perf_counter()
    cpu = time.process_time()
    count = (baseline if side == "baseline" else connector)(url, index, page)
    queue.put((count, time.perf_counter() - started, time.process_time() - cpu,
               resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def run(side: str, url: str, index: str, page: int) -> tuple[int, float, float, float]:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(side, url, index, page, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    url = os.environ.get("WARDWATCH_TEST_ES_URL", "http://127.0.0.1:9200")
    es = Elasticsearch(url, request_timeout=120)
    index = f"wwbench-src-{uuid.uuid4().hex[:8]}"
    es.indices.create(index=index, settings={"number_of_shards": 1, "number_of_replicas": 0},
                      mappings={"properties": {"@timestamp": {"type": "date"},
                                               "event": {"properties": {"ingested": {"type": "date"}}}}})
    try:
        load(es, index, args.docs)
        run("baseline", url, index, args.page)  # warm-up: caches, JIT
        results: dict[str, list[tuple[int, float, float, float]]] = {"baseline": [], "connector": []}
        for _ in range(args.rounds):
            for side in ("baseline", "connector"):
                results[side].append(run(side, url, index, args.page))
        rates = {}
        for side, rows in results.items():
            assert all(r[0] == args.docs for r in rows), (side, [r[0] for r in rows])
            rate = statistics.median(args.docs / r[1] for r in rows)
            rates[side] = rate
            print(f"{side:9s}: {rate:10,.0f} docs/s (median of {len(rows)}), client CPU "
                  f"{statistics.median(r[2] for r in rows):.2f} s, peak RSS {max(r[3] for r in rows):.1f} MiB")
        print(f"ratio connector/baseline: {rates['connector'] / rates['baseline']:.0%} ({args.docs:,} documents, "
              f"page {args.page})")
        seconds, new = idle_poll(url, index, args.page)
        assert new == 0
        print(f"idle poll re-reading {args.docs:,} documents inside the overlap: {seconds:.2f} s "
              f"({args.docs / seconds:,.0f} skipped docs/s)")
    finally:
        es.indices.delete(index=index)
        es.close()


if __name__ == "__main__":
    main()
