"""Issue 10: the SigmaHQ Windows rules over ``evtx-samples`` on Elasticsearch next to SQLite, same run.

Events come through the ``evtx`` connector and the real ingest path into a fresh SQLite file and a fresh
Elasticsearch prefix; then every SigmaHQ job is evaluated on each store with the engine's evaluator (on
Elasticsearch with each rule's Lucene prefilter pushed down). Both must give the same alerts. The search
round trips to Elasticsearch are counted (``_search`` and ``_msearch`` requests): with batched narrowing
queries they are bounded by the batches, not by the number of rules.

Then, on the same Elasticsearch events, the narrowing search alone for the first N pushable SigmaHQ rules:
one query string (the store before issue 10), the rules' queries in batches in one ``_msearch`` per page,
and no prefilter (dataset + ingest range, what the store does past ``prefilter_max_rules``); the three must
return the same events (the last a superset).

Usage:  WARDWATCH_TEST_ES_URL=http://127.0.0.1:9200 .venv/bin/python bench/bench_es_sigmahq.py
Writes bench/out/es-sigmahq.json.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import sigmahq_data  # noqa: E402
from bench.bench_pipeline import peak_rss_mb  # noqa: E402


def count_requests(store: Any) -> Counter:
    """Count the store's HTTP requests by endpoint (a wrapper around the client's transport)."""
    seen: Counter = Counter()
    transport = store.es.transport
    inner = transport.perform_request

    def perform_request(method: str, target: str, *args: Any, **kwargs: Any) -> Any:
        parts = target.split("?", 1)[0].strip("/").split("/")
        seen[next((f"{method} {p}" for p in parts if p.startswith("_")), f"{method} /<index>")] += 1
        return inner(method, target, *args, **kwargs)

    transport.perform_request = perform_request  # type: ignore[method-assign]
    return seen


def prefilter_points(store: Any, ruleset: Any, sizes: tuple[int, ...] = (25, 100, 200)) -> list[dict[str, Any]]:
    """Wall seconds of one narrowing search of N rules' prefilters: single query string vs batches."""
    from engine.app import store_pushdown
    from engine.store.base import SearchQuery, StoreError

    pushdown = store_pushdown(store)
    parts: list[str] = []
    datasets: set[str] = set()
    for rule in sorted(ruleset.rules.values(), key=lambda r: r.id):
        query = None if rule.reads_every_field else pushdown(rule)
        if query is not None:
            parts.append(f"({query})")
            datasets |= set(rule.datasets)
    points = []
    saved = store.prefilter_batch_rules, store.prefilter_max_rules
    for n in sizes:
        point: dict[str, Any] = {"rules": n}
        got: dict[str, list] = {}
        for mode, batch, cap in (("single", 0, 0), ("batched", saved[0], 0), ("no_prefilter", 0, 1)):
            store.prefilter_batch_rules, store.prefilter_max_rules = batch, cap
            query = SearchQuery(datasets=sorted(datasets), prefilter=" OR ".join(parts[:n]), fields=["EventID"])
            started = time.perf_counter()
            try:
                got[mode] = [e["event.id"] for e in store.search(query)]
                point[mode] = {"seconds": round(time.perf_counter() - started, 2), "events": len(got[mode])}
            except StoreError as exc:
                point[mode] = {"seconds": round(time.perf_counter() - started, 2), "error": str(exc)[:120]}
        if "single" in got and "batched" in got:
            point["same_events"] = got["single"] == got["batched"]
        print(f"prefilter of {n:4} rules: " + "  ".join(
            f"{m} {point[m]['seconds']:.2f} s ({point[m].get('events', 'error')})"
            for m in ("single", "batched", "no_prefilter")) + f"  same: {point.get('same_events')}", flush=True)
        points.append(point)
    store.prefilter_batch_rules, store.prefilter_max_rules = saved
    return points


def main() -> None:
    if not sigmahq_data.available():
        raise SystemExit("needs ../shared/datasets/sigmahq and ../shared/datasets/evtx-samples")
    from connectors.windows.evtx import EvtxConnector
    from engine.app import store_pushdown
    from engine.config import DEFAULTS
    from engine.enrich import EnrichmentChain
    from engine.evaluation import Evaluator, build_jobs, run_all
    from engine.ingest import ingest_connector
    from engine.logs import configure_logging
    from engine.store import open_store

    configure_logging("warning", "json")
    url = os.environ.get("WARDWATCH_TEST_ES_URL") or "http://127.0.0.1:9200"
    work = Path(tempfile.mkdtemp(prefix="wardwatch-bench-es-sigmahq-"))
    ruleset = sigmahq_data.load_sigmahq_rules()
    jobs = build_jobs(ruleset, DEFAULTS["alerts"]["suppression"])
    results: dict[str, Any] = {"rules": len(ruleset.rules), "jobs": len(jobs)}
    stores = {
        "sqlite": open_store("sqlite", path=work / "w.db"),
        "elasticsearch": open_store("elasticsearch", hosts=[url], replicas=0,
                                    index_prefix=f"wwbench-sigmahq-{uuid.uuid4().hex[:8]}"),
    }
    alerts: dict[str, list] = {}
    try:
        for kind, store in stores.items():
            connector = EvtxConnector("evtx-samples", {"path": str(sigmahq_data.EVTX_DIR)})
            started = time.perf_counter()
            stats = ingest_connector(store, connector, EnrichmentChain([]), 5000)
            ingest_s = time.perf_counter() - started
            seen = count_requests(store) if kind == "elasticsearch" else Counter()
            evaluator = Evaluator(store, candidates=ruleset.candidates, pushdown=store_pushdown(store))
            started, cpu = time.perf_counter(), time.process_time()
            runs = run_all(evaluator, jobs)
            evaluate_s = time.perf_counter() - started
            cpu_s = time.process_time() - cpu
            alerts[kind] = sorted((a.to_dict() for a in store.list_alerts()), key=lambda a: a["id"])
            results["events"] = stats.written
            results[kind] = {
                "ingest_seconds": round(ingest_s, 2), "evaluate_seconds": round(evaluate_s, 2),
                "evaluate_cpu_seconds": round(cpu_s, 2),
                "evaluate_events_per_s": round(stats.written / evaluate_s),
                "matched": sum(r.matched for r in runs), "alerts": len(alerts[kind]),
                "requests": {k: v for k, v in sorted(seen.items())}, "peak_rss_mb": round(peak_rss_mb()),
            }
            print(f"{kind:14} {stats.written:,} events  evaluate {evaluate_s:6.1f} s wall {cpu_s:6.1f} s CPU "
                  f"({results[kind]['evaluate_events_per_s']:,} events/s)  alerts {len(alerts[kind])}  "
                  f"requests {dict(seen)}  peak RSS {results[kind]['peak_rss_mb']} MB", flush=True)
        results["prefilter"] = prefilter_points(stores["elasticsearch"], ruleset)
        results["same_alerts"] = alerts["sqlite"] == alerts["elasticsearch"]
        results["es_vs_sqlite_evaluate"] = round(results["sqlite"]["evaluate_seconds"]
                                                 / results["elasticsearch"]["evaluate_seconds"], 3)
        print(f"same alerts on both stores: {results['same_alerts']}; "
              f"evaluation speed ES/SQLite: {results['es_vs_sqlite_evaluate']}")
    finally:
        stores["elasticsearch"].delete_all()
        for store in stores.values():
            store.close()
        (ROOT / "bench" / "out").mkdir(exist_ok=True)
        (ROOT / "bench" / "out" / "es-sigmahq.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                            epilog="Elasticsearch: WARDWATCH_TEST_ES_URL (default http://127.0.0.1:9200)"
                            ).parse_args()   # --help, and a stray argument is refused instead of ignored
    main()
