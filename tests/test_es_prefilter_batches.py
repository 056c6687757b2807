"""Elasticsearch answers many rules' narrowing queries in batches (issue 10), with the alerts SQLite gives.

The evaluator hands the store one OR of every rule's Lucene prefilter. One query string of hundreds of rules
is one giant Lucene query (seconds per page, a timeout past ~500 SigmaHQ rules); the store splits it back
into the rules' own queries and sends them as batches in one ``_msearch`` per page. What a user sees: the
same alerts as SQLite, and search requests bounded by batches and pages, not by rules.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.bench_es_sigmahq import count_requests
from engine.app import store_pushdown
from engine.events import make_event_id
from engine.evaluation import Evaluator, build_jobs, run_all
from engine.sigma import load_rules
from engine.store import open_store
from engine.store.base import SearchQuery
from engine.store.elasticsearch import split_or
from tests.conftest import require_elasticsearch

RULES = 120


# --- the split of the evaluator's OR ------------------------------------------------------------------
_value = st.text(alphabet='ab*?:()" \\', min_size=1, max_size=12).map(
    lambda v: '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"')
_part = st.builds(lambda f, v, nested: f"({f}:{v} OR ({f}:{v}))" if nested else f"({f}:{v})",
                  st.sampled_from(["Image", "CommandLine", "event.dataset"]), _value, st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.lists(_part, min_size=1, max_size=8))
def test_split_or_gives_back_each_rule_query(parts: list[str]) -> None:
    assert split_or(" OR ".join(parts)) == parts


@pytest.mark.parametrize("text", ["(a:1) AND (b:2)", "a:1 OR (b:2)", "(a:1) OR (b:2) c:3", "(a:1", "a:1)",
                                  "(a:1) OR b:2", ""])
def test_split_or_leaves_any_other_query_whole(text: str) -> None:
    assert split_or(text) == [text]


# --- the real cluster ---------------------------------------------------------------------------------
def _rules(tmp: Path) -> Path:
    """RULES ordinary Sigma rules, each on its own program name (so each narrows to its own events)."""
    rules = tmp / "rules"
    rules.mkdir()
    for i in range(RULES):
        (rules / f"r{i:03d}.yml").write_text(f"""title: Suspicious tool {i}
id: 00000000-0000-4000-8000-{i:012d}
status: test
level: medium
logsource:
  product: windows
  service: security
detection:
  selection:
    EventID: 4688
    NewProcessName|endswith: '\\tool{i}.exe'
  condition: selection
""")
    return rules


def _events(count: int = 2400) -> list[dict[str, Any]]:
    """Process creations: most of ordinary programs, every 7th of one of the rules' tools (in mixed
    case, which Sigma matches and the lowercased keyword fields must too)."""
    events = []
    for n in range(count):
        if n % 7 == 0:
            name = f"C:\\Temp\\TOOL{n % (RULES + 10)}.EXE" if n % 2 else f"C:\\Temp\\tool{n % (RULES + 10)}.exe"
        else:
            name = f"C:\\Windows\\System32\\prog{n % 50}.exe"
        event = {"@timestamp": f"2026-11-04T{8 + n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
                 "event.dataset": "windows.security", "EventID": 4688, "NewProcessName": name,
                 "Computer": f"ws{n % 40}.klinik.example", "SubjectUserName": f"user{n % 300}"}
        event["event.id"] = make_event_id("test-batches", f"{n}:{name}")
        events.append(event)
    return events


def _alerts(store: Any) -> list[dict[str, Any]]:
    return sorted((a.to_dict() for a in store.list_alerts()), key=lambda a: a["id"])


@pytest.mark.elasticsearch
@pytest.mark.slow
def test_many_rules_same_alerts_as_sqlite_in_few_requests(tmp_path: Path) -> None:
    url = require_elasticsearch()
    ruleset = load_rules([str(_rules(tmp_path))])
    assert len(ruleset.rules) == RULES and not ruleset.errors
    jobs = build_jobs(ruleset)
    events = _events()
    sqlite = open_store("sqlite", path=tmp_path / "w.db")
    es = open_store("elasticsearch", hosts=[url], index_prefix=f"wwtest-batch-{uuid.uuid4().hex[:10]}",
                    replicas=0, search_page_size=200, prefilter_batch_rules=25,
                    prefilter_max_rules=200)
    try:
        for store in (sqlite, es):
            store.write(events)
        seen = count_requests(es)
        for store in (sqlite, es):
            run_all(Evaluator(store, candidates=ruleset.candidates, pushdown=store_pushdown(store)), jobs)
        during_run: Counter = Counter()
        for request, n in seen.items():  # "POST _msearch" -> "_msearch": the endpoint, whatever the method
            during_run[request.split(" ", 1)[1]] += n
        expected = _alerts(sqlite)
        assert len(expected) == sum(1 for n in range(len(events)) if n % 7 == 0 and n % (RULES + 10) < RULES)
        assert _alerts(es) == expected
        # 120 rules = 5 batches of 25; every batch's pages come back in the same _msearch requests:
        # matching events / page size + 1 rounds, never one request per rule.
        matching = len(expected)
        assert 1 <= during_run["_msearch"] <= matching // 200 + 2
        assert during_run["_search"] == 0  # no event scan went out as a plain search
    finally:
        es.delete_all()
        es.close()
        sqlite.close()


@pytest.mark.elasticsearch
def test_batched_search_is_the_single_query_search(tmp_path: Path) -> None:
    """Same events in the same order, batched or as one query string (also across page boundaries and
    with events matching several batches)."""
    url = require_elasticsearch()
    events = _events(1200)
    es = open_store("elasticsearch", hosts=[url], index_prefix=f"wwtest-batch-{uuid.uuid4().hex[:10]}",
                    replicas=0, search_page_size=50)
    try:
        es.write(events)
        # overlapping parts: every tool matches its own part and the catch-all tool1* part of batch 0
        parts = ["(NewProcessName:*tool1*)"] + [f"(NewProcessName:*\\\\tool{i}.exe)" for i in range(60)]
        query = SearchQuery(datasets=["windows.security"], prefilter=" OR ".join(parts), fields=["NewProcessName"])
        es.prefilter_batch_rules = 0
        single = [e["event.id"] for e in es.search(query)]
        es.prefilter_batch_rules = 7
        batched = [e["event.id"] for e in es.search(query)]
        assert len(single) > 50 and batched == single
        es.prefilter_max_rules = 10  # past the cap the store reads dataset + range: a superset
        everything = [e["event.id"] for e in es.search(query)]
        assert len(everything) == len(events) and set(single) <= set(everything)
    finally:
        es.delete_all()
        es.close()
