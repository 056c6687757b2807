"""Rule state and alert revisions read and written for a whole evaluation round at once (issue 10).

An evaluation round of the SigmaHQ set touches ~2,400 checkpoints and thousands of alerts; one request each
was most of the evaluate phase on Elasticsearch. The batched reads must give exactly what the single ones
give (on both stores, also past their chunk sizes and before any index exists), the batched commit must keep
the optimistic-concurrency guard of the single one, and a round on Elasticsearch must cost a bounded number
of state requests, not one per rule or alert.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest

from bench.bench_es_sigmahq import count_requests
from engine.evaluation import Evaluator, build_jobs, run_all
from engine.sigma import load_rules
from engine.store import open_store
from engine.store.base import RuleCheckpoint, Store, StoreConflict
from tests.conftest import require_elasticsearch
from tests.store_fixtures import ehr_event, make_alert, store, ts  # noqa: F401 - fixture

MANY = 1_200  # past SQLite's 500 parameters and Elasticsearch's 1,000 ids a request


def test_batched_reads_before_anything_is_stored(store: Store) -> None:  # noqa: F811
    assert store.get_alerts(["nope", "nada"]) == {}
    checkpoints = store.get_checkpoints(["r1", "r2"])
    assert checkpoints == {"r1": RuleCheckpoint("r1"), "r2": RuleCheckpoint("r2")}


def test_batched_reads_are_the_single_reads(store: Store) -> None:  # noqa: F811
    alerts = [make_alert(f"rule-{i}", f"user.name=u{i}", first=ts(i)) for i in range(MANY)]
    runs = [(RuleCheckpoint(f"rule-{i}", f"w{i}", {"n": i}), alerts[i:i + 1] if i % 3 == 0 else [])
            for i in range(MANY)]
    store.commit_rule_runs(runs)
    ids = [a.id for a in alerts] + ["absent"]
    found = store.get_alerts(ids + ids[:5])  # a repeated id is answered once
    expected = {a.id: store.get_alert(a.id) for i, a in enumerate(alerts) if i % 3 == 0}
    assert found == expected and len(found) == MANY // 3
    rule_ids = [f"rule-{i}" for i in range(MANY)] + ["never-ran"]
    checkpoints = store.get_checkpoints(rule_ids)
    assert checkpoints == {r: store.get_checkpoint(r) for r in rule_ids}
    assert checkpoints["rule-7"] == RuleCheckpoint("rule-7", "w7", {"n": 7})
    assert checkpoints["never-ran"].watermark is None
    # every alert of the round is in the outbox, once
    assert sorted(a.id for a in store.pending_deliveries("test-sink", limit=MANY)) == sorted(expected)


def test_a_second_round_advances_what_the_first_wrote(store: Store) -> None:  # noqa: F811
    first = make_alert("rule-1", "user.name=jdoe")
    store.commit_rule_runs([(RuleCheckpoint("rule-1", "w1"), [first]), (RuleCheckpoint("rule-2", "w1"), [])])
    store.get_checkpoints(["rule-1", "rule-2"])
    revised = make_alert("rule-1", "user.name=jdoe", revision=2, triggers=3)
    store.commit_rule_runs([(RuleCheckpoint("rule-1", "w2"), [revised]), (RuleCheckpoint("rule-2", "w2"), [])])
    assert store.get_alerts([first.id]) == {first.id: revised}
    assert {r: c.watermark for r, c in store.get_checkpoints(["rule-1", "rule-2"]).items()} == \
        {"rule-1": "w2", "rule-2": "w2"}


@pytest.mark.elasticsearch
def test_batched_checkpoints_keep_the_concurrency_guard(tmp_path: Path) -> None:
    """Two engines on one index prefix: the one whose checkpoints another changed since it read them is
    refused (StoreConflict), and repeating a commit that did land (a retried request) is not."""
    url = require_elasticsearch()
    prefix = f"wwtest-state-{uuid.uuid4().hex[:10]}"
    a = open_store("elasticsearch", hosts=[url], index_prefix=prefix, replicas=0)
    b = open_store("elasticsearch", hosts=[url], index_prefix=prefix, replicas=0)
    try:
        a.commit_rule_runs([(RuleCheckpoint("r1", "w1"), []), (RuleCheckpoint("r2", "w1"), [])])
        b.get_checkpoints(["r1", "r2"])
        a.commit_rule_runs([(RuleCheckpoint("r2", "w2"), [])])
        # b still holds r2 at w1's version: its round must not overwrite a's w2 silently
        with pytest.raises(StoreConflict, match="checkpoint 'r2' was changed by another engine"):
            b.commit_rule_runs([(RuleCheckpoint("r1", "w3"), []), (RuleCheckpoint("r2", "w3"), [])])
        assert b.get_checkpoints(["r1", "r2"]) == {"r1": RuleCheckpoint("r1", "w3"), "r2": RuleCheckpoint("r2", "w2")}
        # b forgets the versions it saw (a request that landed but whose answer was lost): writing the
        # same values again settles as success, the values stay
        b._versions.clear()  # noqa: SLF001 - the state a lost answer leaves behind
        a.commit_rule_runs([(RuleCheckpoint("r1", "w3"), []), (RuleCheckpoint("r2", "w2"), [])])
        assert a.get_checkpoints(["r1", "r2"]) == {"r1": RuleCheckpoint("r1", "w3"), "r2": RuleCheckpoint("r2", "w2")}
    finally:
        a.delete_all()  # type: ignore[attr-defined]
        a.close()
        b.close()


RULES = 60


def _rules(tmp: Path) -> Path:
    rules = tmp / "rules"
    rules.mkdir()
    for i in range(RULES):
        (rules / f"r{i:03d}.yml").write_text(f"""title: Record {i} read
id: 00000000-0000-4000-8000-{i:012d}
status: test
level: medium
logsource:
  product: ehr
detection:
  selection:
    ehr.patient.id: 'p{i}'
  condition: selection
""")
    return rules


@pytest.mark.elasticsearch
def test_a_round_of_many_rules_costs_a_few_state_requests(tmp_path: Path) -> None:
    """60 rules, each firing: the round reads checkpoints and alert revisions and writes them in a fixed
    number of requests (before: a GET and a PUT per rule and a GET per alert), with SQLite's alerts."""
    url = require_elasticsearch()
    ruleset = load_rules([str(_rules(tmp_path))])
    assert len(ruleset.rules) == RULES and not ruleset.errors
    jobs = build_jobs(ruleset)
    events = [ehr_event(n, **{"ehr.patient.id": f"p{n % RULES}"}) for n in range(3 * RULES)]
    sqlite = open_store("sqlite", path=tmp_path / "w.db")
    es = open_store("elasticsearch", hosts=[url], index_prefix=f"wwtest-round-{uuid.uuid4().hex[:10]}",
                    replicas=0)
    try:
        for s in (sqlite, es):
            s.write(events)
        seen = count_requests(es)
        for s in (sqlite, es):
            run_all(Evaluator(s, candidates=ruleset.candidates), jobs)
        by_endpoint: Counter = Counter()
        for request, n in seen.items():
            by_endpoint[request.split(" ", 1)[1]] += n
        expected = sorted((a.to_dict() for a in sqlite.list_alerts()), key=lambda a: a["id"])
        assert len(expected) == len(events)
        assert sorted((a.to_dict() for a in es.list_alerts()), key=lambda a: a["id"]) == expected
        assert by_endpoint["_doc"] == 0  # no single GET or PUT of a document (was 60 + 60 + 180)
        assert by_endpoint["_mget"] <= 3  # checkpoints (+ unseen-state read) and alert revisions
        assert by_endpoint["_bulk"] <= 2  # the alerts, then the checkpoints
    finally:
        es.delete_all()  # type: ignore[attr-defined]
        es.close()
        sqlite.close()


def test_count_alerts_counts_the_stored_alerts(store: Store) -> None:  # noqa: F811
    assert store.count_alerts() == 0
    alerts = [make_alert(f"rule-{i % 3}", f"user.name=u{i}", first=ts(i)) for i in range(7)]
    store.commit_rule_runs([(RuleCheckpoint("rule-0", "w1"), alerts)])
    store.commit_rule_runs([(RuleCheckpoint("rule-0", "w2"), alerts[:2])])  # revisions replace, not add
    assert store.count_alerts() == len(store.list_alerts()) == 7
