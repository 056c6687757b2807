"""Issue 10: can a rule's Elasticsearch prefilter drop an event the rule matches? (exactness, not speed)

Every SigmaHQ Windows rule that fires on ``evtx-samples`` (matched in memory with ``CompiledRule.matches``,
the evaluator's ground truth) is pushed down on its own, as the evaluator would (``store_pushdown``), over the
same events in a fresh Elasticsearch prefix; each matched event must be among the events the store returns.
A prefilter is only allowed to return *more*. Prints each rule that lost events, with a few of them.

Usage:  WARDWATCH_TEST_ES_URL=http://127.0.0.1:9200 .venv/bin/python bench/check_es_pushdown_exact.py [--rules N]
Writes bench/out/es-pushdown-exact.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import sigmahq_data  # noqa: E402


def matched_by_rule(ruleset: Any, events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Ground truth: event ids each rule matches (candidates + exact matching, as the evaluator does)."""
    out: dict[str, set[str]] = {}
    for event in events:
        for rule in ruleset.candidates(event):
            if rule.matches(event):
                out.setdefault(rule.id, set()).add(event["event.id"])
    return out


def lost_events(store: Any, ruleset: Any, matched: dict[str, set[str]], limit: int | None) -> list[dict[str, Any]]:
    """For each firing pushable rule: the matched events its own prefilter does not return."""
    from engine.app import store_pushdown
    from engine.store.base import SearchQuery, StoreError

    pushdown = store_pushdown(store)
    assert pushdown is not None
    watermark = store.watermark()
    report = []
    for n, rule_id in enumerate(sorted(matched)):
        if limit is not None and n >= limit:
            break
        rule = ruleset.rules[rule_id]
        query = None if rule.reads_every_field else pushdown(rule)
        if query is None:
            continue
        started = time.perf_counter()
        try:
            got = {e["event.id"] for e in store.search(SearchQuery(
                datasets=tuple(sorted(rule.datasets)), fields=[], prefilter=f"({query})", ingested_upto=watermark))}
        except StoreError as exc:  # a slow wildcard query timing out is not an answer either way
            report.append({"rule": rule_id, "title": rule.title, "error": str(exc)[:200]})
            print(f"ERROR {rule.title}: {str(exc)[:120]}", flush=True)
            continue
        missing = sorted(matched[rule_id] - got)
        report.append({"rule": rule_id, "title": rule.title, "matched": len(matched[rule_id]),
                       "returned": len(got), "missing": len(missing), "missing_ids": missing[:5],
                       "seconds": round(time.perf_counter() - started, 2), "query": query if missing else None})
        if missing:
            print(f"LOST {len(missing)}/{len(matched[rule_id])}  {rule.title}  ({rule_id})", flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, help="check only the first N firing rules (by id)")
    args = parser.parse_args()
    if not sigmahq_data.available():
        raise SystemExit("needs ../shared/datasets/sigmahq and ../shared/datasets/evtx-samples")
    from engine.logs import configure_logging
    from engine.store import open_store

    configure_logging("warning", "json")
    url = os.environ.get("WARDWATCH_TEST_ES_URL") or "http://127.0.0.1:9200"
    ruleset = sigmahq_data.load_sigmahq_rules()
    events = list({e["event.id"]: e for e in sigmahq_data.iter_events()}.values())
    matched = matched_by_rule(ruleset, events)
    store = open_store("elasticsearch", hosts=[url], replicas=0, request_timeout=120,
                       index_prefix=f"wwbench-exact-{uuid.uuid4().hex[:8]}")
    try:
        for i in range(0, len(events), 5000):
            store.write(events[i:i + 5000])
        while store.watermark() is None or sum(1 for _ in store.search(_all(store))) < len(events):
            time.sleep(1)
        report = lost_events(store, ruleset, matched, args.rules)
    finally:
        store.delete_all()  # type: ignore[attr-defined]
        store.close()
    bad = [r for r in report if r.get("missing")]
    errors = [r for r in report if "error" in r]
    print(f"{len(report)} firing pushable rules checked over {len(events):,} events ({len(errors)} timed out): "
          f"{len(bad)} lost events "
          f"({sum(r['missing'] for r in bad)} (rule, event) matches); "
          f"{sum(r.get('seconds', 0) for r in report):.1f} s of searches")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "es-pushdown-exact.json").write_bytes(orjson.dumps({"events": len(events), "rules": report},
                                                              option=orjson.OPT_INDENT_2))


def _all(store: Any) -> Any:
    from engine.store.base import SearchQuery

    return SearchQuery(fields=[], ingested_upto=store.watermark())


if __name__ == "__main__":
    main()
