"""The scan matcher (engine/sigma/scan.py + codegen.py) matches exactly what the plain evaluator matches.

"Plain" is ``CompiledRule.matches`` over every rule. The fast path is ``RuleSet.matcher``: memoised index
lookups, the literal prefilter only where the index offers many checks, one check for rules with the same
detection, and each check's predicate generated as one function. Random rule sets reuse the prefilter
test's rule generator (wildcards, modifiers, keywords, null/exists, negations) and add what only the
matcher cares about: identical detections under other ids, index fields (``c: [x, y]``, numbers,
booleans), a logsource with an EventID condition on two datasets, and both prefilter decisions.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.sigma import load_rules, scan
from tests.test_prefilter_exact import _literals_of, events_for, rule_text

INDEXED = ["  sel: {c: [x, 'Y']}\n  condition: sel\n", "  sel: {c: 5}\n  condition: sel\n",
           "  sel: {c: true}\n  f: {a|contains: b}\n  condition: sel and not f\n",
           "  sel: {c: [5, 7], b|exists: true}\n  condition: sel\n", "  sel: {a: null}\n  condition: sel\n",
           "  sel: {b|exists: false, c: 'x'}\n  condition: sel\n"]
INDEXED_RULE = "title: I{n}\nid: 00000000-0000-4000-b000-{n:012d}\nlogsource: {{product: ehr}}\ndetection:\n{body}"
PROCESS = ("title: P{n}\nid: 00000000-0000-4000-9000-{n:012d}\nlogsource: {{category: process_creation, "
           "product: windows}}\ndetection:\n{body}")


def _ruleset(directory, docs: list[str]):
    (directory / "rules.yml").write_text("---\n".join(docs))
    return load_rules([directory])


def _with_id(doc: str, n: int) -> str:
    """The same detection under another title and id (its check is shared)."""
    head, _, rest = doc.partition("logsource:")
    return f"title: D{n}\nid: 00000000-0000-4000-a000-{n:012d}\nlogsource:{rest}"


def assert_exact(ruleset, matcher, event) -> None:
    plain = sorted(rule.id for rule in ruleset.rules.values() if rule.matches(event))
    fast = sorted(rule.id for rule in matcher(event))
    assert fast == plain, event  # the same rules, each once


def windows_event(draw, fragments: list[str]) -> dict:
    event = draw(events_for(fragments))
    event["event.dataset"] = draw(st.sampled_from(["windows.sysmon", "windows.security", "ehr.audit"]))
    event["EventID"] = draw(st.sampled_from([1, 4688, "1", "4688", 1.0, 2, [1, 3], None, True]))
    return event


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data(), count=st.integers(1, 6), copies=st.integers(0, 3), offered=st.sampled_from([0, 8, 1000]),
       generate_after=st.sampled_from([1, 5, 10_000]))
def test_the_matcher_matches_exactly_what_the_plain_evaluator_matches(tmp_path_factory, monkeypatch, data,
                                                                     count, copies, offered, generate_after):
    monkeypatch.setattr(scan, "PREFILTER_MIN_OFFERED", offered)
    monkeypatch.setattr(scan, "GENERATE_AFTER", generate_after)  # generated functions, closures, both
    docs = [data.draw(rule_text(n)) for n in range(count)]
    docs += [_with_id(data.draw(st.sampled_from(docs)), n) for n in range(copies)]
    for n, body in enumerate(data.draw(st.lists(st.sampled_from(INDEXED), max_size=4))):
        docs.append(f"title: I{n}\nid: 00000000-0000-4000-b000-{n:012d}\nlogsource: {{product: ehr}}\n"
                    f"detection:\n{body}")
    bodies = data.draw(st.lists(st.sampled_from(INDEXED + ["  sel: {a|endswith: 'b'}\n  condition: sel\n"]),
                                max_size=3))
    docs += [PROCESS.format(n=n, body=body) for n, body in enumerate(bodies)]
    ruleset = _ruleset(tmp_path_factory.mktemp("rules"), docs)
    matcher = ruleset.matcher(frozenset(ruleset.rules))
    part = ruleset.matcher(frozenset(sorted(ruleset.rules)[::2]))
    fragments = _literals_of(docs)
    for _ in range(12):
        event = windows_event(data.draw, fragments)
        assert_exact(ruleset, matcher, event)
        assert {r.id for r in part(event)} <= set(sorted(ruleset.rules)[::2])
        assert {r.id for r in part(event)} == {r.id for r in matcher(event)} & set(sorted(ruleset.rules)[::2])
        assert_exact(ruleset, matcher, event)  # again: the memoised lookup and the generated predicates


def test_a_generated_predicate_equals_the_closures(tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "GENERATE_AFTER", 1)
    ruleset = _ruleset(tmp_path, [PROCESS.format(n=0, body="  sel: {c: [x, 'Y'], b: true, a: [5, 7]}\n"
                                                           "  f: {d|exists: false}\n  condition: sel and f\n")])
    matcher = ruleset.matcher(frozenset(ruleset.rules))
    base = {"event.dataset": "windows.sysmon", "EventID": 1, "c": "y", "b": True, "a": 7}
    variants = [{}, {"EventID": "1"}, {"EventID": 2}, {"c": ["q", "X"]}, {"c": "xx"}, {"b": "TRUE"}, {"b": 1},
                {"a": "7"}, {"a": 7.0}, {"a": True}, {"d": None}, {"d": 0}, {"event.dataset": "windows.security"}]
    for variant in variants:
        for _ in range(2):  # the first call builds the generated function, the second runs it
            assert_exact(ruleset, matcher, {**base, **variant})
    assert matcher._plans["windows.sysmon"].checks[0][0].__name__ == "predicate"


def test_field_names_that_look_like_code_stay_names(tmp_path, monkeypatch):
    """Generated predicates quote field names from rule files as literals: a quote, a newline or Python in a
    field name is a name to look up, never code."""
    monkeypatch.setattr(scan, "GENERATE_AFTER", 1)
    field = "a') or 1 / 0 or ('\\n\\\"b"  # as code: ZeroDivisionError on every event
    ruleset = _ruleset(tmp_path, [PROCESS.format(n=0, body=f"  sel:\n    '{field.replace(chr(39), chr(39) * 2)}': x\n"
                                                           "  condition: sel\n")])
    (rule,) = ruleset.rules.values()
    matcher = ruleset.matcher(frozenset(ruleset.rules))
    hit = {"event.dataset": "windows.sysmon", "EventID": 1, field: "X"}
    for event in (hit, {**hit, field: "y"}, {"event.dataset": "windows.sysmon", "EventID": 1, "a": "x"}):
        for _ in range(2):
            assert_exact(ruleset, matcher, event)
    assert matcher(hit) == [rule]
    assert matcher._plans["windows.sysmon"].checks[0][0].__name__ == "predicate"


def test_rules_with_one_detection_share_one_check(tmp_path):
    body = "logsource: {product: ehr}\ndetection:\n  sel: {event.action: [read, vread], p|exists: true}\n" \
           "  condition: sel\n"
    docs = [f"title: R{n}\nid: 00000000-0000-4000-8000-{n:012d}\n{body}" for n in range(3)]
    docs.append("title: other\nid: 00000000-0000-4000-8000-000000000009\nlogsource: {product: ehr}\n"
                "detection:\n  sel: {event.action: read, p|exists: false}\n  condition: sel\n")
    ruleset = _ruleset(tmp_path, docs)
    plan = ruleset.matcher(frozenset(ruleset.rules))._plans["ehr.audit"]
    assert len(plan.checks) == 2
    event = {"event.dataset": "ehr.audit", "event.action": "READ", "p": "P1"}
    assert sorted(r.title for r in ruleset.matcher(frozenset(ruleset.rules))(event)) == ["R0", "R1", "R2"]


def test_the_literal_scan_serves_a_dataset_only_when_the_index_offers_many_checks(tmp_path):
    few = [f"title: R{n}\nid: 00000000-0000-4000-8000-{n:012d}\nlogsource: {{product: ehr}}\n"
           f"detection:\n  sel: {{a|contains: 'x{n}'}}\n  condition: sel\n" for n in range(scan.PREFILTER_MIN_OFFERED)]
    ruleset = _ruleset(tmp_path, few)
    assert not ruleset.matcher(frozenset(ruleset.rules)).uses_prefilter("ehr.audit")
    many = few + [few[0].replace("R0", "R99").replace("8000-000000000000", "8000-000000000099")
                  .replace("'x0'", "'y'")]
    (tmp_path / "more").mkdir()
    ruleset = _ruleset(tmp_path / "more", many)
    matcher = ruleset.matcher(frozenset(ruleset.rules))
    assert matcher.uses_prefilter("ehr.audit")
    assert [r.title for r in matcher({"event.dataset": "ehr.audit", "a": "--Y--"})] == ["R99"]


@pytest.mark.parametrize("value", [True, 1, "true", "1", 1.0, [True], ["x", 1]])
def test_the_memoised_lookup_tells_true_from_one(tmp_path, value):
    ruleset = _ruleset(tmp_path, [
        "title: T\nid: 00000000-0000-4000-8000-000000000001\nlogsource: {product: ehr}\n"
        "detection:\n  sel: {c: true}\n  condition: sel\n",
        "title: O\nid: 00000000-0000-4000-8000-000000000002\nlogsource: {product: ehr}\n"
        "detection:\n  sel: {c: 1}\n  condition: sel\n"])
    matcher = ruleset.matcher(frozenset(ruleset.rules))
    for first in (1, True, "1", "true"):
        matcher({"event.dataset": "ehr.audit", "c": first})  # fill the memo with a look-alike first
        assert_exact(ruleset, matcher, {"event.dataset": "ehr.audit", "c": value})


EHR_CHECKS = [  # three checks the index offers every read (as the shipped EHR pack does), one shared
    "title: R\nid: 00000000-0000-4000-8000-000000000011\nlogsource: {product: ehr}\n"
    "detection:\n  sel: {event.action: read, ehr.action: R}\n  condition: sel\n",
    "title: R2\nid: 00000000-0000-4000-8000-000000000012\nlogsource: {product: ehr}\n"
    "detection:\n  sel: {event.action: read, ehr.action: R}\n  condition: sel\n",
    "title: H\nid: 00000000-0000-4000-8000-000000000013\nlogsource: {product: ehr}\n"
    "detection:\n  sel: {event.action: read, wardwatch.time.after_hours: true}\n  condition: sel\n",
    "title: N\nid: 00000000-0000-4000-8000-000000000014\nlogsource: {product: ehr}\n"
    "detection:\n  sel: {event.action: [read, vread]}\n  f: {user.name|endswith: svc}\n  condition: sel and not f\n",
]


@pytest.mark.parametrize("generated", [True, False])
def test_the_offered_checks_run_as_one_generated_function_or_the_loop(tmp_path, monkeypatch, generated):
    """After ``GENERATE_AFTER`` events with the same offered checks, one generated function runs them all
    (or, where it cannot be built, the loop stays): the same rules either way."""
    monkeypatch.setattr(scan, "GENERATE_AFTER", 2)
    if not generated:
        def refuse(*args):
            raise SyntaxError("too deep")
        monkeypatch.setattr(scan, "generate_checks", refuse)
    ruleset = _ruleset(tmp_path, EHR_CHECKS)
    matcher = ruleset.matcher(frozenset(ruleset.rules))
    base = {"event.dataset": "ehr.audit", "event.action": "read", "ehr.action": "R", "user.name": "ann",
            "wardwatch.time.after_hours": False}
    variants = [{}, {"ehr.action": "r"}, {"wardwatch.time.after_hours": True}, {"user.name": "app-svc"},
                {"ehr.action": None, "wardwatch.time.after_hours": 1}, {"user.name": ["x", "svc"]},
                {"event.action": "READ"}, {"event.action": "vread", "ehr.action": "R"}, {"ehr.action": 7}]
    for _ in range(3):
        for variant in variants:
            assert_exact(ruleset, matcher, {**base, **variant})
    assert sorted(r.title for r in matcher(base)) == ["N", "R", "R2"]
    names = {cell[0].__name__ for cell in matcher._plans["ehr.audit"].runners.values()}
    assert names == ({"checks"} if generated else {"loop"})


def test_an_absent_field_short_cuts_only_items_of_value_predicates(tmp_path, monkeypatch):
    """``|gte``, ``|contains``, wildcards, ``|re`` are False on an absent field without their closure; an
    item with ``null`` among its values is not one of those (absent matches it)."""
    monkeypatch.setattr(scan, "GENERATE_AFTER", 1)
    bodies = ["  sel: {a: [null, 'x*']}\n  condition: sel\n", "  sel: {b|gte: 3}\n  condition: sel\n",
              "  sel: {c|contains: q}\n  condition: sel\n", "  sel: {d|re: '^z'}\n  condition: not sel\n",
              "  sel: {a: ['x*', 5]}\n  n: {b|lt: 1}\n  condition: sel and not n\n"]
    ruleset = _ruleset(tmp_path, [PROCESS.format(n=n, body=body) for n, body in enumerate(bodies)])
    matcher = ruleset.matcher(frozenset(ruleset.rules))
    base = {"event.dataset": "windows.sysmon", "EventID": 1}
    variants = [{}, {"a": None}, {"a": "xy"}, {"a": 5}, {"a": [None, "x"]}, {"b": 3}, {"b": "4"}, {"b": None},
                {"b": [1, 5]}, {"c": "aQb"}, {"c": None}, {"d": "zz"}, {"d": None}, {"a": "X", "b": 0}]
    for variant in variants:
        for _ in range(2):
            assert_exact(ruleset, matcher, {**base, **variant})
    assert sorted(r.title for r in matcher(base)) == ["P0", "P3"]  # null matches absent; not-re holds


@pytest.mark.parametrize("memo_max", [1, 2, 4096])
def test_the_generated_memo_probe_stays_exact_when_the_memo_starts_again(tmp_path, monkeypatch, memo_max):
    """The memo probe is generated per dataset (``lookup``) and holds the memo itself: a memo cleared
    when full (``MEMO_MAX``) must still serve, and look-alike values (1, True, "1", a list) stay apart."""
    monkeypatch.setattr(scan, "MEMO_MAX", memo_max)
    monkeypatch.setattr(scan, "GENERATE_AFTER", 2)
    ruleset = _ruleset(tmp_path, [INDEXED_RULE.format(n=n, body=body) for n, body in enumerate(INDEXED)])
    matcher = ruleset.matcher(frozenset(ruleset.rules))
    assert matcher._match["ehr.audit"].__name__ == "lookup"
    for _ in range(3):
        for c in ["x", "Y", 5, 7, True, 1, "1", "true", 5.0, None, ["x", 5], [True]]:
            for extra in ({}, {"b": "q"}, {"a": "cb", "b": 1}):
                assert_exact(ruleset, matcher, {"event.dataset": "ehr.audit", "c": c, **extra})
