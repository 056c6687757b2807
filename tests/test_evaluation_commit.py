"""One evaluation round commits every rule's checkpoint with its alerts in ONE SQLite transaction (issue 10).

The SigmaHQ set paid one BEGIN/COMMIT per rule (2,407 per round). The contract stays: an alert and its
checkpoint are atomic, so a failure half-way through a round leaves none of the round's alerts nor any of
its checkpoints, and the repeat of the round lands on the same alerts.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.evaluation import Evaluator, build_jobs
from engine.sigma import load_rules
from engine.store.base import RuleCheckpoint, StoreError
from engine.store.sqlite import SqliteStore
from tests.store_fixtures import covering_watermark, ehr_event, make_alert

RULE = """\
title: Read number {n}
id: 7d3c0a55-1b2e-4c8f-9a61-00000000000{n}
status: test
logsource: {{product: ehr}}
detection:
    selection:
        event.action: read
        user.name: user{n}
    condition: selection
level: high
"""


def _rules(tmp_path: Path, count: int) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir()
    for n in range(count):
        (directory / f"r{n}.yml").write_text(RULE.format(n=n))
    return directory


def _store_with_events(path: Path) -> tuple[SqliteStore, list[str]]:
    store = SqliteStore(path)
    events = [ehr_event(i, **{"user.name": f"user{i % 4}"}) for i in range(40)]
    store.write(events)
    return store, [e["event.id"] for e in events]


def test_commit_rule_runs_is_all_or_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    raw = sqlite3.connect(tmp_path / "s.db")
    raw.execute("CREATE TRIGGER refuse BEFORE INSERT ON checkpoints WHEN NEW.rule_id = 'r2' "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    raw.commit()
    runs = [(RuleCheckpoint("r1", "5"), [make_alert("r1")]), (RuleCheckpoint("r2", "5"), [make_alert("r2")])]
    with pytest.raises(StoreError):
        store.commit_rule_runs(runs)
    assert store.list_alerts() == []
    assert store.get_checkpoint("r1").watermark is None
    raw.execute("DROP TRIGGER refuse")
    raw.commit()
    store.commit_rule_runs(runs)
    assert sorted(a.rule_id for a in store.list_alerts()) == ["r1", "r2"]
    assert [store.get_checkpoint(r).watermark for r in ("r1", "r2")] == ["5", "5"]
    raw.close()
    store.close()


def test_a_round_of_many_rules_is_one_transaction_and_a_failed_round_repeats_exactly(tmp_path: Path) -> None:
    ruleset = load_rules([str(_rules(tmp_path, 4))])
    assert not ruleset.errors
    jobs = build_jobs(ruleset)

    reference, ids = _store_with_events(tmp_path / "ref.db")
    Evaluator(reference, candidates=ruleset.candidates).run_many(jobs, upto=covering_watermark(reference, ids))
    expected = sorted((a.id, tuple(a.evidence)) for a in reference.list_alerts())
    assert len({rule for rule, _ in expected}) == 40  # one alert per matching read, 4 rules
    reference.close()

    store, ids = _store_with_events(tmp_path / "s.db")
    transactions = 0
    begin = store._transaction

    def counting(fn):  # type: ignore[no-untyped-def]
        nonlocal transactions
        transactions += 1
        return begin(fn)

    store._transaction = counting  # type: ignore[method-assign]
    failing = True
    commit = store.commit_rule_runs

    def crash_once(runs):  # type: ignore[no-untyped-def]
        if failing:
            raise StoreError("disk gone")
        return commit(runs)

    store.commit_rule_runs = crash_once  # type: ignore[method-assign]
    evaluator = Evaluator(store, candidates=ruleset.candidates)
    watermark = covering_watermark(store, ids)
    with pytest.raises(StoreError):
        evaluator.run_many(jobs, upto=watermark)
    assert store.list_alerts() == [] and all(store.get_checkpoint(j.id).watermark is None for j in jobs)
    failing = False
    evaluator.run_many(jobs, upto=watermark)
    assert transactions == 1  # 4 rules, one round: one commit
    assert sorted((a.id, tuple(a.evidence)) for a in store.list_alerts()) == expected
    assert all(store.get_checkpoint(j.id).watermark == watermark for j in jobs)
    store.close()
