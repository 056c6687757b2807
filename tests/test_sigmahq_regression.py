"""SigmaHQ's Windows rules, unmodified, and SigmaHQ's own regression tests, through our product path.

When ``../shared/datasets/sigmahq`` is present (skipped cleanly otherwise):

* every rule of its ``rules*/windows`` directories loads, or is listed in docs/sigmahq.md with its reason
  (the doc's generated block must equal a fresh report), and the load count is asserted;
* the 202 positive regression tests (``regression_data/**/info.yml``: an ``.evtx`` + rule id + expected
  match count) pass: ONE ``evtx`` connector reads the whole regression directory into ONE store through
  ``ingest_connector`` (what ``wardwatch ingest`` runs; SQLite, and Elasticsearch with a unique index
  prefix), the whole set is evaluated by the engine's ``Evaluator`` (on Elasticsearch with the service's
  Lucene pushdown), and each rule's alert evidence is traced back to its source file by the event ids that
  file gives when read on its own (the connector's ids are Computer + Channel + EventRecordID).

Pass rule as SigmaHQ's ``tests/regression_tests_runner.py``: at least ``match_count`` matches (one when
absent); more is a warning there. We also require the store's count to equal the count the rule gives on the
file's events directly, so an extra match is a real further matching record, not a store artefact.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.base import connector_class
from engine.app import alerts_over_sample, store_pushdown
from engine.enrich import EnrichmentChain
from engine.evaluation import Evaluator, build_jobs, iter_alerts, run_all
from engine.ingest import ingest_connector
from engine.sigma import load_rules
from engine.store import open_store
from engine.store.base import Store
from scripts.sigmahq_report import DOC, SIGMAHQ, generated_block, report, rule_dirs
from tests.conftest import require_elasticsearch

#: SigmaHQ/sigma at 8eaafff (the dataset's pinned version): rules in rules/windows.
EXPECTED_RULES = 2407
EXPECTED_TESTS = 202
#: Regression data shipped for rules the dataset does not hold (rules-emerging-threats, rules-threat-hunting):
#: these tests cannot run here. Any other missing rule is a failure.
ABSENT_RULES = {
    "271de298-cc0e-4842-acd8-079a0a99ea65", "af688c76-4ce4-4309-bfdd-e896f01acf27",
    "540703fb-a874-4385-a9d6-7cd1bfab268c", "5299fadf-f228-4526-8274-251db1960be9",
    "bae7c70b-8569-44e9-accf-b30073da8a5d", "7c3a5b1d-9e2f-4a8c-b5d7-1e0f3c6a9b2d",
    "f2e4b7d9-5c3a-4f8b-9e1d-7a6c2b3f4e5d", "9b4e7c2a-3f6d-4a8b-b5e9-1c7d3f2e6a4b",
    "a7c3e5f2-8b1d-4e9a-b6c2-3d7f5e8a9b4c", "8a2f4b1c-3d5e-4f7a-9b2c-1e4f6d8a9c2b",
}


def _require_dataset() -> None:
    if not rule_dirs() or not (SIGMAHQ / "regression_data").is_dir():
        pytest.skip(f"SigmaHQ dataset absent ({SIGMAHQ})")


@dataclass(frozen=True)
class Case:
    name: str  # the info.yml's directory: the rule's file name
    rule_id: str
    evtx: Path
    match_count: int | None


def regression_cases() -> list[Case]:
    cases = []
    for info in sorted((SIGMAHQ / "regression_data").rglob("info.yml")):
        data = yaml.safe_load(info.read_text(encoding="utf-8")) or {}
        rule_id = str((data.get("rule_metadata") or [{}])[0].get("id"))
        for test in data.get("regression_tests_info") or []:
            if test.get("type") == "evtx":
                cases.append(Case(info.parent.name, rule_id, SIGMAHQ / test["path"], test.get("match_count")))
    return cases


def read_evtx(path: Path) -> list[dict[str, Any]]:
    """Events of ``path`` as the ``evtx`` connector reads them in a one-shot run (``wardwatch ingest``)."""
    connector = connector_class("evtx")("sigmahq", {"path": str(path)})
    connector.read_to_end()
    events, cursor = [], None
    while True:
        batch = connector.read(cursor, 100_000)
        assert batch.dead_letters == [], [(d.location, d.reason) for d in batch.dead_letters]
        events += batch.events
        cursor = batch.cursor
        if batch.exhausted:
            return events


@pytest.fixture(scope="module")
def ruleset() -> Any:
    _require_dataset()
    return load_rules([str(d) for d in rule_dirs()])


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    _require_dataset()
    return regression_cases()


@pytest.fixture(scope="module")
def file_events(cases: list[Case]) -> dict[str, list[dict[str, Any]]]:
    """Each regression file's events, read on its own: which ``event.id`` came from which file.

    The connector's ``event.id`` is Computer + Channel + EventRecordID (no file path), so this per-file
    reading is how an alert's evidence is traced back to the test it belongs to."""
    return {str(path): read_evtx(path) for path in sorted({c.evtx for c in cases})}


def _run(store: Store, ruleset: Any, cases: list[Case],
         file_events: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Ingest every regression file into ``store`` with ONE ``evtx`` connector over the whole directory,
    evaluate every rule, and judge each case; returns the tally."""
    connector = connector_class("evtx")("sigmahq", {"path": str(SIGMAHQ / "regression_data")})
    connector.read_to_end()
    stats = ingest_connector(store, connector, EnrichmentChain([]), 1000)
    assert stats.dead_letters == 0
    assert stats.written == len({e["event.id"] for events in file_events.values() for e in events})
    evaluator = Evaluator(store, evidence_cap=10**9, candidates=ruleset.candidates,
                          pushdown=store_pushdown(store))
    wanted = {c.rule_id for c in cases}
    jobs = [job for job in build_jobs(ruleset) if job.id in wanted]
    files_of: dict[str, set[str]] = {}
    for path, events in file_events.items():
        for event in events:
            files_of.setdefault(event["event.id"], set()).add(path)
    counts: Counter[tuple[str, str]] = Counter()
    for alert in iter_alerts(run_all(evaluator, jobs)):
        for event_id in alert.evidence:
            for path in files_of[event_id]:
                counts[(alert.rule_id, path)] += 1
    tally: dict[str, Any] = {"exact": 0, "more": [], "absent": [], "failed": []}
    for case in cases:
        rule = ruleset.rules.get(case.rule_id)
        if rule is None:
            (tally["absent"] if case.rule_id in ABSENT_RULES else tally["failed"]).append(
                f"{case.name}: rule {case.rule_id} not in the set")
            continue
        got = counts[(case.rule_id, str(case.evtx))]
        direct = sum(1 for e in file_events[str(case.evtx)] if rule.matches(e))
        expected = case.match_count if case.match_count is not None else 1
        if got != direct or got < expected:
            tally["failed"].append(f"{case.name}: {got} match(es) via the store, {direct} direct, "
                                   f"expected {case.match_count if case.match_count is not None else '>= 1'}")
        elif case.match_count is not None and got == expected or case.match_count is None and got >= 1:
            tally["exact"] += 1
        else:
            tally["more"].append(f"{case.name}: {got} > {expected}")
    return tally


def _assert_figure(tally: dict[str, Any], cases: list[Case]) -> None:
    assert len(cases) == EXPECTED_TESTS
    assert tally["failed"] == [], "\n".join(tally["failed"])
    assert len(tally["absent"]) == len(ABSENT_RULES), tally["absent"]
    passed = tally["exact"] + len(tally["more"])
    assert passed == EXPECTED_TESTS - len(ABSENT_RULES)  # 192 / 192 runnable tests
    # the over-counts are SigmaHQ files holding more matching records than their info.yml states
    assert len(tally["more"]) <= 6, tally["more"]


@pytest.mark.slow  # loading 2,407 rules: about 6 s (shared with the regression tests)
def test_every_sigmahq_windows_rule_loads_or_is_documented_with_its_reason(ruleset: Any) -> None:
    refused = {e.path for e in ruleset.errors}
    assert len(ruleset.rules) + len(refused) == sum(1 for d in rule_dirs() for _ in d.rglob("*.yml"))
    assert len(ruleset.rules) == EXPECTED_RULES and not refused
    doc = generated_block(DOC.read_text(encoding="utf-8"))
    assert doc, f"{DOC}: generated block missing"
    assert doc == report(ruleset), "docs/sigmahq.md is stale: run scripts/sigmahq_report.py"
    assert f"**{EXPECTED_RULES} of {EXPECTED_RULES} rules load; 0 refused.**" in doc


def test_regression_data_names_rules_and_files_that_exist(cases: list[Case]) -> None:
    assert len(cases) == EXPECTED_TESTS
    assert all(c.evtx.is_file() for c in cases)


@pytest.mark.slow
def test_sigmahq_regression_tests_pass_on_sqlite(ruleset: Any, cases: list[Case], tmp_path: Path,
                                                 file_events: dict[str, list[dict[str, Any]]]) -> None:
    store = open_store("sqlite", path=tmp_path / "sigmahq.db")
    try:
        _assert_figure(_run(store, ruleset, cases, file_events), cases)
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.elasticsearch
def test_sigmahq_regression_tests_pass_on_elasticsearch(ruleset: Any, cases: list[Case],
                                                        file_events: dict[str, list[dict[str, Any]]]) -> None:
    url = require_elasticsearch()
    store = open_store("elasticsearch", hosts=[url], index_prefix=f"wwtest-sigmahq-{uuid.uuid4().hex[:10]}")
    try:
        _assert_figure(_run(store, ruleset, cases, file_events), cases)
    finally:
        store.delete_all()
        store.close()


EVTX_SAMPLES = SIGMAHQ.parent / "evtx-samples"


@pytest.mark.slow
@pytest.mark.parametrize("sample, rule_id, expected, event_id", [
    # SYSTEM + System integrity come only from the 4688 aliases (User, IntegrityLevel)
    ("EVTX-to-MITRE-Attack/TA0002-Execution/T1053.005-Scheduled Task/"
     "ID4688-4698 Persistent scheduled task with SYSTEM privileges creation.evtx",
     "2617e7ed-adb7-40ba-b0f3-8f9945fe6c09", 1, 4688),
    # a file_access rule (FileName, Image) on Security 4663 object access auditing
    ("EVTX-ATTACK-SAMPLES/Other/APT28-CredentialStealer.evtx", "a1dfd976-4852-41d4-9507-dc6590a3ccd0", 2, 4663),
])
def test_real_windows_audit_events_raise_sigmahq_generic_rules(ruleset: Any, sample: str, rule_id: str,
                                                               expected: int, event_id: int) -> None:
    path = EVTX_SAMPLES / sample
    if not path.is_file():
        pytest.skip(f"{path} not present")
    events = read_evtx(path)
    by_id = {e["event.id"]: e for e in events}
    alerts = [a for a in alerts_over_sample(ruleset, events) if a.rule_id == rule_id]
    matched = [by_id[e] for a in alerts for e in a.evidence]
    assert len(matched) == expected
    assert {(e["event.dataset"], e["EventID"]) for e in matched} == {("windows.security", event_id)}
