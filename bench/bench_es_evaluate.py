"""Rule evaluation on Elasticsearch over ~1M EHR access events, next to SQLite on the same events.

One run: generate FHIR AuditEvents (as bench_pipeline.py does), ingest them through the real pipeline
(connector -> enrichment -> store) into a fresh Elasticsearch prefix and a fresh SQLite file, then evaluate
the whole rule pack (rules/) on each store with the engine's evaluator — on Elasticsearch each rule is
pushed down as Lucene, on SQLite the store scans dataset + time range. Both must give the same alerts.

Usage:  WARDWATCH_TEST_ES_URL=http://127.0.0.1:9200 .venv/bin/python bench/bench_es_evaluate.py [--events 1000000]
Writes bench/out/es-evaluate-<events>.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_pipeline import generate, peak_rss_mb  # noqa: E402
from connectors.fhir_file import FhirAuditEventFileConnector  # noqa: E402
from engine.app import store_pushdown  # noqa: E402
from engine.config import DEFAULTS  # noqa: E402
from engine.enrich import EnrichmentChain  # noqa: E402
from engine.enrich.time_context import TimeContextEnricher  # noqa: E402
from engine.evaluation import Evaluator, build_jobs, run_all  # noqa: E402
from engine.ingest import ingest_connector  # noqa: E402
from engine.sigma import load_rules  # noqa: E402
from engine.store import open_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    url = os.environ.get("WARDWATCH_TEST_ES_URL") or "http://127.0.0.1:9200"
    out_dir = ROOT / "bench" / "out" / f"es-evaluate-{args.events}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    source = out_dir / "auditevents.ndjson"
    generate(source, args.events)
    enrich = EnrichmentChain([TimeContextEnricher("Europe/Berlin", "07:00", "19:00",
                                                  ["mon", "tue", "wed", "thu", "fri"])])
    ruleset = load_rules([str(ROOT / "rules")])
    jobs = build_jobs(ruleset, DEFAULTS["alerts"]["suppression"])
    results: dict = {"events": args.events, "rules": len(jobs)}
    stores = {
        "sqlite": open_store("sqlite", path=out_dir / "w.db"),
        "elasticsearch": open_store("elasticsearch", hosts=[url], index_prefix=f"wwbench-{uuid.uuid4().hex[:8]}",
                                    replicas=0),
    }
    alerts: dict[str, list] = {}
    try:
        for kind, store in stores.items():
            started = time.perf_counter()
            stats = ingest_connector(store, FhirAuditEventFileConnector("bench", {"path": str(source)}), enrich,
                                     args.batch)
            ingest_s = time.perf_counter() - started
            evaluator = Evaluator(store, candidates=ruleset.candidates, pushdown=store_pushdown(store))
            started = time.perf_counter()
            runs = run_all(evaluator, jobs)
            evaluate_s = time.perf_counter() - started
            alerts[kind] = sorted((a.to_dict() for a in store.list_alerts()), key=lambda a: a["id"])
            results[kind] = {
                "ingest_seconds": round(ingest_s, 2), "ingest_events_per_s": round(stats.written / ingest_s),
                "evaluate_seconds": round(evaluate_s, 2), "evaluate_events_per_s": round(args.events / evaluate_s),
                "matched": sum(r.matched for r in runs), "alerts": len(alerts[kind]),
                "peak_rss_mb": round(peak_rss_mb()),
            }
            print(f"{kind:14} ingest {ingest_s:7.1f} s ({results[kind]['ingest_events_per_s']:,}/s)  "
                  f"evaluate {evaluate_s:7.1f} s ({results[kind]['evaluate_events_per_s']:,} events/s)  "
                  f"alerts {len(alerts[kind])}  peak RSS {results[kind]['peak_rss_mb']} MB", flush=True)
        results["same_alerts"] = alerts["sqlite"] == alerts["elasticsearch"]
        results["es_vs_sqlite_evaluate"] = round(results["sqlite"]["evaluate_seconds"]
                                                 / results["elasticsearch"]["evaluate_seconds"], 3)
        print(f"same alerts on both stores: {results['same_alerts']}; "
              f"evaluation speed ES/SQLite: {results['es_vs_sqlite_evaluate']}")
    finally:
        stores["elasticsearch"].delete_all()
        for store in stores.values():
            store.close()
        (ROOT / "bench" / "out" / f"es-evaluate-{args.events}.json").write_bytes(
            orjson.dumps(results, option=orjson.OPT_INDENT_2))
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
