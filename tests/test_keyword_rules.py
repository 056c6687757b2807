"""Keyword rules over stored events: "any string field contains", whatever other rules run alongside.

Issue 7, item 7: the scan fetched only the fields its rules name, and a keyword rule names none, so on its
own it never matched, and with other rules it saw only their fields. Both stores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.app import store_pushdown
from engine.config import DEFAULTS
from engine.evaluation import Evaluator, build_jobs
from engine.events import Event, make_event_id
from engine.sigma import load_rules
from engine.store.base import Store
from tests.store_fixtures import covering_watermark, store  # noqa: F401  (pytest fixture)

ROOT = Path(__file__).resolve().parent.parent

KEYWORD_RULE = """\
title: Credential dumping tool named in an EHR record
id: 2f0c7a1e-9d55-4d0b-8f5e-7c1b6a9e4d21
name: ehr_keyword_mimikatz
status: test
logsource: {product: ehr}
detection:
    keywords:
        - mimikatz
    condition: keywords
level: high
"""


NOTE_RULE = """\
title: Chart note mentions a review
id: 2f0c7a1e-9d55-4d0b-8f5e-7c1b6a9e4d22
name: ehr_note_review
status: test
logsource: {product: ehr}
detection:
    selection:
        ehr.note|contains: review
    condition: selection
level: low
"""


def event(n: int, **fields: Any) -> Event:
    return {
        "@timestamp": f"2026-11-02T10:{n:02d}:00.000Z",
        "event.dataset": "ehr.audit",
        "event.id": make_event_id("test:keywords", str(n)),
        "event.action": "read",
        "user.name": "jdoe",
        **fields,
    }


EVENTS = [
    event(1, **{"ehr.note": "ran Mimikatz.exe from the ward PC"}),  # a field no rule names
    event(2, **{"event.original": '{"cmd": "invoke-mimikatz"}'}),
    event(3, **{"ehr.note": "routine chart review"}),
    event(4, **{"wardwatch.time.after_hours": True}),
]


def keyword_alerts(store: Store, tmp_path: Path, *extra_rules: Path | str) -> list[tuple[str, list[str]]]:
    """The keyword rule's alerts when it runs with ``extra_rules`` (rule paths, or YAML text) in one scan."""
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "keyword.yml").write_text(KEYWORD_RULE)
    for n, extra in enumerate(r for r in extra_rules if isinstance(r, str)):
        (tmp_path / "rules" / f"extra{n}.yml").write_text(extra)
    extra_rules = tuple(r for r in extra_rules if isinstance(r, Path))
    ruleset = load_rules([str(tmp_path / "rules"), *map(str, extra_rules)],
                         placeholders=DEFAULTS["rules"]["placeholders"])
    assert not ruleset.errors
    jobs = build_jobs(ruleset)
    evaluator = Evaluator(store, candidates=ruleset.candidates, pushdown=store_pushdown(store))
    results = evaluator.run_many(jobs, upto=covering_watermark(store, [e["event.id"] for e in EVENTS]))
    return sorted((a.rule_title, a.evidence) for r in results for a in r.alerts
                  if a.rule_id == "2f0c7a1e-9d55-4d0b-8f5e-7c1b6a9e4d21")


@pytest.mark.parametrize("others", [(), (ROOT / "rules" / "healthcare",), (NOTE_RULE,)],
                         ids=["alone", "with-demo-rules", "with-a-rule-naming-the-field"])
def test_keyword_rule_matches_any_string_field_alone_or_with_other_rules(
        store: Store, tmp_path: Path, others: tuple[Path | str, ...]) -> None:
    store.write(EVENTS)
    alerts = keyword_alerts(store, tmp_path, *others)
    assert sorted(eid for _, evidence in alerts for eid in evidence) == sorted(
        e["event.id"] for e in EVENTS[:2])


def _rule_scans(tmp_path: Path, *rules: str, keyword: bool = True) -> list[Any]:
    """The SearchQuery of every rule scan of one SQLite evaluation of the keyword rule (or not) + ``rules``."""
    from engine.store import open_store
    from engine.store.base import SearchQuery

    store = open_store("sqlite", path=tmp_path / "w.db")
    asked: list[SearchQuery] = []
    search = store.search
    store.search = lambda query: (asked.append(query), search(query))[1]  # type: ignore[method-assign]
    try:
        store.write(EVENTS)
        if keyword:
            keyword_alerts(store, tmp_path, *rules)
        else:
            (tmp_path / "rules").mkdir(exist_ok=True)
            for n, text in enumerate(rules):
                (tmp_path / "rules" / f"only{n}.yml").write_text(text)
            ruleset = load_rules([str(tmp_path / "rules")])
            Evaluator(store, candidates=ruleset.candidates).run_many(
                build_jobs(ruleset), upto=covering_watermark(store, [e["event.id"] for e in EVENTS]))
    finally:
        store.close()
    return [q for q in asked if q.datasets]  # the rule scans, not the test's own watermark polling


def test_on_sqlite_the_keyword_rules_whole_event_scan_serves_every_rule(tmp_path: Path) -> None:
    """Without a store-side narrowing query (SQLite) the new events are read once, whole, for all rules
    (issue 10: reading them twice was a third of the SigmaHQ evaluate phase); rules without keywords keep
    their narrow scan (only the fields they read) when no keyword rule runs."""
    both = _rule_scans(tmp_path / "both", NOTE_RULE)
    assert [q.fields for q in both] == [None]
    narrow = _rule_scans(tmp_path / "narrow", NOTE_RULE, keyword=False)
    assert len(narrow) == 1 and narrow[0].fields is not None
    assert "ehr.note" in narrow[0].fields and "event.original" not in narrow[0].fields


ORIGINAL_RULE = """\
title: Raw record names a credential dumping tool
id: 2f0c7a1e-9d55-4d0b-8f5e-7c1b6a9e4d23
name: ehr_original_mimikatz
status: test
logsource: {product: ehr}
detection:
    selection:
        event.original|contains: mimikatz
    condition: selection
level: high
"""


def test_a_field_rule_on_an_unindexed_field_is_not_narrowed_away(store: Store, tmp_path: Path) -> None:
    """``event.original`` is kept but not indexed on Elasticsearch: a pushed-down query on it matches nothing,
    so such a rule must reach the evaluator without a store prefilter (the same answer as SQLite)."""
    store.write(EVENTS)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "original.yml").write_text(ORIGINAL_RULE)
    ruleset = load_rules([str(tmp_path / "rules")])
    assert not ruleset.errors
    evaluator = Evaluator(store, candidates=ruleset.candidates, pushdown=store_pushdown(store))
    results = evaluator.run_many(build_jobs(ruleset),
                                 upto=covering_watermark(store, [e["event.id"] for e in EVENTS]))
    assert [a.evidence for r in results for a in r.alerts] == [[EVENTS[1]["event.id"]]]
