"""Unit tests for the correlation engine: one test (or a few) per bullet of SIGMA-CONFORMANCE item 19."""

from __future__ import annotations

import random
from typing import Any

import pytest

from engine.correlation import Match, Trigger, evaluate_correlation, trigger_as_match
from engine.correlation.spec import CorrelationSpec

MIN = 60_000


def spec(kind: str = "event_count", rules: tuple[str, ...] = ("A",), **kwargs: Any) -> CorrelationSpec:
    kwargs.setdefault("timespan_ms", 5 * MIN)
    if kind not in ("temporal", "temporal_ordered"):
        kwargs.setdefault("condition", {"gte": 2})
    return CorrelationSpec(id="corr", type=kind, rules=rules, **kwargs)


def m(rule: str, ts: int, event_id: str, **fields: Any) -> Match:
    return Match(rule_id=rule, ts_ms=ts, event_id=event_id, fields={k.replace("__", "."): v for k, v in fields.items()})


def at(minutes: int, seconds: int = 0) -> int:
    return minutes * MIN + seconds * 1000


# --- sliding windows, not buckets -------------------------------------------------------------------------


def test_events_at_4_59_and_5_01_count_together() -> None:
    triggers = evaluate_correlation(spec(), [m("A", at(4, 59), "e1"), m("A", at(5, 1), "e2")])
    assert [(t.ts_ms, t.metric, t.event_ids, t.window_start_ms) for t in triggers] == [
        (at(5, 1), 2, ("e1", "e2"), at(4, 59))
    ]


def test_window_is_inclusive_at_exactly_timespan_and_exclusive_beyond() -> None:
    inside = evaluate_correlation(spec(), [m("A", 0, "e1"), m("A", 5 * MIN, "e2")])
    outside = evaluate_correlation(spec(), [m("A", 0, "e1"), m("A", 5 * MIN + 1, "e2")])
    assert [t.metric for t in inside] == [2]
    assert outside == []


def test_one_trigger_per_timestamp_including_later_sorted_ties() -> None:
    matches = [m("A", 1000, "e3"), m("A", 1000, "e1"), m("A", 1000, "e2")]
    triggers = evaluate_correlation(spec(condition={"gte": 3}), matches)
    assert len(triggers) == 1
    assert triggers[0].event_ids == ("e1", "e2", "e3")
    assert triggers[0].ts_ms == 1000


def test_a_trigger_for_every_timestamp_where_the_condition_holds() -> None:
    matches = [m("A", at(i), f"e{i}") for i in range(4)] + [m("A", at(20), "late")]
    triggers = evaluate_correlation(spec(), matches)
    assert [t.ts_ms for t in triggers] == [at(1), at(2), at(3)]
    assert triggers[-1].metric == 4


def test_output_sorted_by_time_then_group_key_and_independent_of_input_order() -> None:
    matches = [m("A", at(i % 7), f"e{i}", user=f"u{i % 3}") for i in range(30)]
    expected = evaluate_correlation(spec(group_by=("user",)), matches)
    random.Random(4).shuffle(matches)
    assert evaluate_correlation(spec(group_by=("user",)), matches) == expected
    assert [(t.ts_ms, t.group_key) for t in expected] == sorted((t.ts_ms, t.group_key) for t in expected)


# --- group-by ---------------------------------------------------------------------------------------------


def test_group_by_equality_across_referenced_rules() -> None:
    s = spec(rules=("A", "B"), group_by=("user.name",))
    matches = [
        m("A", at(0), "e1", user__name="alice"),
        m("B", at(1), "e2", user__name="alice"),
        m("B", at(1), "e3", user__name="bob"),
    ]
    [trigger] = evaluate_correlation(s, matches)
    assert trigger.group == {"user.name": "alice"}
    assert trigger.group_key == '{"user.name":"alice"}'
    assert trigger.event_ids == ("e1", "e2")


def test_group_values_compare_by_canonical_form() -> None:
    s = spec(group_by=("event.code", "tags"))
    matches = [
        m("A", 0, "e1", event__code=4688, tags=["a", "b"]),
        m("A", 1, "e2", event__code="4688", tags=["a", "b"]),
        m("A", 2, "e3", event__code="4688", tags=["b", "a"]),  # list order matters
    ]
    [trigger] = evaluate_correlation(s, matches)
    assert trigger.group == {"event.code": "4688", "tags": '["a","b"]'}
    assert trigger.event_ids == ("e1", "e2")


def test_group_by_is_case_sensitive_exact_equality() -> None:
    s = spec(group_by=("user",))
    assert evaluate_correlation(s, [m("A", 0, "e1", user="Alice"), m("A", 1, "e2", user="alice")]) == []


def test_match_without_a_group_by_field_is_not_correlated() -> None:
    s = spec(group_by=("user", "host"))
    matches = [
        m("A", 0, "e1", user="alice", host="h"),
        m("A", 1, "e2", user="alice"),
        m("A", 2, "e3", user="alice", host=None),
    ]
    assert evaluate_correlation(s, matches) == []


def test_without_group_by_everything_is_one_group_and_unreferenced_rules_are_ignored() -> None:
    matches = [m("A", 0, "e1", user="a"), m("A", 1, "e2", user="b"), m("Z", 2, "e3")]
    [trigger] = evaluate_correlation(spec(), matches)
    assert trigger.group == {} and trigger.group_key == "{}"
    assert trigger.event_ids == ("e1", "e2")


# --- an event matching two referenced rules ----------------------------------------------------------------


def test_event_matching_two_rules_counts_for_both_in_temporal() -> None:
    s = spec("temporal", ("A", "B"))
    [trigger] = evaluate_correlation(s, [m("A", 0, "e1"), m("B", 0, "e1")])
    assert trigger.metric == 2 and trigger.event_ids == ("e1",)


def test_event_matching_two_rules_is_one_event_for_event_count() -> None:
    s = spec(rules=("A", "B"))
    assert evaluate_correlation(s, [m("A", 0, "e1"), m("B", 0, "e1")]) == []
    [trigger] = evaluate_correlation(s, [m("A", 0, "e1"), m("B", 0, "e1"), m("B", 1, "e2")])
    assert trigger.metric == 2


def test_duplicate_matches_collapse() -> None:
    assert evaluate_correlation(spec(), [m("A", 0, "e1"), m("A", 0, "e1")]) == []


def test_temporal_needs_every_rule_in_the_window() -> None:
    s = spec("temporal", ("A", "B", "C"))
    assert evaluate_correlation(s, [m("A", at(0), "1"), m("B", at(1), "2"), m("C", at(6), "3")]) == []
    [trigger] = evaluate_correlation(s, [m("A", at(1), "1"), m("B", at(0), "2"), m("C", at(5), "3")])
    assert (trigger.ts_ms, trigger.window_start_ms, trigger.metric_name) == (at(5), at(0), "temporal")


def test_temporal_condition_counts_distinct_rules_present() -> None:
    s = spec("temporal", ("A", "B", "C"), condition={"gte": 2})
    [trigger] = evaluate_correlation(s, [m("A", 0, "1"), m("A", 1, "2"), m("C", 2, "3")])
    assert trigger.metric == 2 and trigger.ts_ms == 2


# --- temporal_ordered -------------------------------------------------------------------------------------


def ordered(*events: tuple[str, int], rules: tuple[str, ...] = ("A", "B", "C")) -> list[Trigger]:
    matches = [m(rule, ts, f"e{i}") for i, (rule, ts) in enumerate(events)]
    return evaluate_correlation(spec("temporal_ordered", rules), matches)


def test_temporal_ordered_a_c_b_fails() -> None:
    assert ordered(("A", at(0)), ("C", at(1)), ("B", at(2))) == []


def test_temporal_ordered_a_b_c_succeeds_and_later_completion_counts() -> None:
    [trigger] = ordered(("A", at(0)), ("B", at(1)), ("C", at(2)))
    assert (trigger.ts_ms, trigger.metric_name, trigger.metric) == (at(2), "temporal_ordered", 3)
    [trigger] = ordered(("A", at(0)), ("C", at(1)), ("B", at(2)), ("C", at(3)))
    assert trigger.ts_ms == at(3)


def test_temporal_ordered_whole_sequence_must_fit_in_the_window() -> None:
    assert ordered(("A", at(0)), ("B", at(1)), ("C", at(5, 1))) == []
    # a later A restarts the sequence inside the window
    [trigger] = ordered(("A", at(0)), ("B", at(1)), ("A", at(2)), ("B", at(3)), ("C", at(6)))
    assert trigger.window_start_ms == at(1)


def test_temporal_ordered_one_event_cannot_serve_two_steps() -> None:
    matches = [m("A", 0, "e1"), m("B", 0, "e1")]
    assert evaluate_correlation(spec("temporal_ordered", ("A", "B")), matches) == []
    matches.append(m("B", 0, "e2"))  # same time, later event id: a later position
    assert len(evaluate_correlation(spec("temporal_ordered", ("A", "B")), matches)) == 1


def test_temporal_ordered_equal_timestamps_order_by_event_id() -> None:
    s = spec("temporal_ordered", ("A", "B"))
    assert evaluate_correlation(s, [m("A", 0, "e2"), m("B", 0, "e1")]) == []
    assert len(evaluate_correlation(s, [m("A", 0, "e1"), m("B", 0, "e2")])) == 1


def test_temporal_ordered_condition_is_checked_against_the_step_count() -> None:
    matches = [m("A", 0, "e1"), m("B", 1, "e2")]
    assert len(evaluate_correlation(spec("temporal_ordered", ("A", "B"), condition={"gte": 2}), matches)) == 1
    assert evaluate_correlation(spec("temporal_ordered", ("A", "B"), condition={"gt": 2}), matches) == []


def test_temporal_ordered_repeated_step() -> None:
    s = spec("temporal_ordered", ("A", "A", "B"))
    assert evaluate_correlation(s, [m("A", 0, "e1"), m("B", 1, "e2")]) == []
    assert len(evaluate_correlation(s, [m("A", 0, "e1"), m("A", 1, "e2"), m("B", 2, "e3")])) == 1


# --- value_count and the numeric aggregates ---------------------------------------------------------------


def test_value_count_counts_distinct_values() -> None:
    s = spec("value_count", group_by=("user",), condition_field="patient", condition={"gte": 3})
    matches = [
        m("A", 0, "e1", user="u", patient="p1"),
        m("A", 1, "e2", user="u", patient="p1"),
        m("A", 2, "e3", user="u", patient="P1"),
        m("A", 3, "e4", user="u"),  # no value: not a contributing event
        m("A", 4, "e5", user="u", patient=7),
        m("A", 5, "e6", user="u", patient="7"),
    ]
    triggers = evaluate_correlation(s, matches)
    assert [(t.ts_ms, t.metric, t.metric_name) for t in triggers] == [(4, 3, "value_count"), (5, 3, "value_count")]
    assert triggers[0].event_ids == ("e1", "e2", "e3", "e5")
    assert evaluate_correlation(s, matches[:4]) == []


def numeric(kind: str, values: list[Any], **kwargs: Any) -> Trigger:
    s = spec(kind, condition_field="bytes", condition=kwargs.pop("condition", {"gte": -1e18}), **kwargs)
    triggers = evaluate_correlation(s, [m("A", i, f"e{i}", bytes=v) for i, v in enumerate(values)])
    return triggers[-1]


def test_value_sum_of_numbers_and_numeric_strings_ignoring_others() -> None:
    trigger = numeric("value_sum", [1, "2", " 3.5 ", "x", None, True, "1_000", "nan", [4]])
    assert trigger.metric == 6.5 and trigger.metric_name == "value_sum"
    assert trigger.event_ids == ("e0", "e1", "e2")


def test_value_sum_is_exact_and_integral_results_are_ints() -> None:
    assert numeric("value_sum", [0.1, 0.2]).metric == 0.1 + 0.2
    result = numeric("value_sum", [0.5, 0.5, 2]).metric
    assert result == 3 and isinstance(result, int)
    assert numeric("value_sum", [10**20, 1]).metric == 10**20 + 1


def test_value_avg() -> None:
    assert numeric("value_avg", [1, 2, 4]).metric == pytest.approx(7 / 3)
    assert numeric("value_avg", [1, 3]).metric == 2


def test_value_median_and_percentile_linear_interpolation() -> None:
    assert numeric("value_median", [4, 1, 3, 2]).metric == 2.5
    assert numeric("value_median", [5, 1, 3]).metric == 3
    values = list(range(10, 0, -1))
    assert numeric("value_percentile", values, percentile=90).metric == pytest.approx(9.1)
    assert numeric("value_percentile", values, percentile=0).metric == 1
    assert numeric("value_percentile", values, percentile=100).metric == 10


def test_numeric_aggregates_slide() -> None:
    s = spec("value_sum", condition_field="n", condition={"gt": 10}, timespan_ms=10)
    matches = [m("A", 0, "a", n=8), m("A", 5, "b", n=3), m("A", 11, "c", n=1), m("A", 16, "d", n=7)]
    triggers = evaluate_correlation(s, matches)
    assert [(t.ts_ms, t.metric) for t in triggers] == [(5, 11)]
    s = spec("value_median", condition_field="n", condition={"gte": 0}, timespan_ms=10)
    assert [t.metric for t in evaluate_correlation(s, matches)] == [8, 5.5, 2, 4]


# --- condition operators and ranges ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "fires_at_counts"),
    [
        ({"gt": 2}, [3, 4]),
        ({"gte": 2}, [2, 3, 4]),
        ({"lt": 2}, [1]),
        ({"lte": 2}, [1, 2]),
        ({"eq": 3}, [3]),
        ({"neq": 3}, [1, 2, 4]),
        ({"gt": 1, "lte": 3}, [2, 3]),
        ({"gte": 2.5, "lt": 3.5}, [3]),
    ],
)
def test_condition_operators_and_ranges(condition: dict[str, float], fires_at_counts: list[int]) -> None:
    matches = [m("A", i, f"e{i}") for i in range(4)]
    triggers = evaluate_correlation(spec(condition=condition, timespan_ms=100), matches)
    assert [t.metric for t in triggers] == fires_at_counts


# --- aliases and chaining ---------------------------------------------------------------------------------


def test_aliases_map_one_name_to_different_fields_per_rule() -> None:
    s = spec(
        "temporal",
        ("login", "access"),
        group_by=("who",),
        aliases={"who": {"login": "user.name", "access": "ehr.user.id"}},
    )
    matches = [
        m("login", at(0), "e1", user__name="alice", ehr__user__id="zzz"),
        m("access", at(1), "e2", ehr__user__id="alice", user__name="bob"),
        m("access", at(1), "e3", ehr__user__id="bob"),
    ]
    [trigger] = evaluate_correlation(s, matches)
    assert trigger.group == {"who": "alice"}
    assert trigger.event_ids == ("e1", "e2")


def test_alias_can_name_the_condition_field() -> None:
    s = spec(
        "value_count",
        ("A", "B"),
        condition_field="pt",
        condition={"gte": 2},
        aliases={"pt": {"A": "patient.id", "B": "ehr.patient.id"}},
    )
    matches = [m("A", 0, "e1", patient__id="p1"), m("B", 1, "e2", ehr__patient__id="p2")]
    [trigger] = evaluate_correlation(s, matches)
    assert trigger.metric == 2


def test_chained_correlation_via_trigger_as_match() -> None:
    failures = spec(rules=("failed_login",), group_by=("user",), condition={"gte": 3})
    inner = evaluate_correlation(failures, [m("failed_login", at(i), f"f{i}", user="alice") for i in range(3)])
    assert len(inner) == 1
    chained = trigger_as_match(inner[0])
    assert chained == trigger_as_match(inner[0])  # deterministic id
    assert (chained.rule_id, chained.ts_ms, chained.fields) == ("corr", at(2), {"user": "alice"})

    outer = CorrelationSpec(
        id="brute_then_access",
        type="temporal_ordered",
        rules=("corr", "record_access"),
        group_by=("user",),
        timespan_ms=10 * MIN,
    )
    access = [m("record_access", at(4), "a1", user="alice"), m("record_access", at(1), "a0", user="alice")]
    [trigger] = evaluate_correlation(outer, [chained, *access])
    assert trigger.event_ids == ("a0", chained.event_id, "a1")
    assert trigger.ts_ms == at(4)


def test_trigger_as_match_ids_differ_by_group_and_time() -> None:
    triggers = evaluate_correlation(
        spec(group_by=("u",), condition={"gte": 1}),
        [m("A", 0, "1", u="a"), m("A", 0, "2", u="b"), m("A", 1, "3", u="a")],
    )
    assert len({trigger_as_match(t).event_id for t in triggers}) == 3


# --- extended conditions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "present", "fires"),
    [
        ("A and not B", {"A"}, True),
        ("A and not B", {"A", "B"}, False),
        ("(A or B) and C", {"B", "C"}, True),
        ("(A or B) and C", {"A", "B"}, False),
        ("A or B and C", {"A"}, True),
        ("not A or B", {"C"}, True),
        ("NOT (A OR C)", {"B"}, True),
    ],
)
def test_extended_conditions(expression: str, present: set[str], fires: bool) -> None:
    s = spec("temporal", ("A", "B", "C"), extended_condition=expression)
    triggers = evaluate_correlation(s, [m(rule, 0, f"e-{rule}") for rule in sorted(present)])
    assert bool(triggers) is fires


@pytest.mark.parametrize("expression", ["A and", "A or D", "(A", "A B", "", "and A", "A)"])
def test_bad_extended_condition_is_an_error(expression: str) -> None:
    with pytest.raises(ValueError):
        evaluate_correlation(spec("temporal", ("A", "B"), extended_condition=expression), [])


# --- validation, evidence cap, scale ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        dict(kind="bogus"),
        dict(condition={"ge": 2}),
        dict(condition={"gte": "2"}),
        dict(condition={}),
        dict(kind="value_count"),
        dict(kind="value_percentile", condition_field="n"),
        dict(kind="value_percentile", condition_field="n", percentile=101),
        dict(timespan_ms=-1),
        dict(rules=()),
        dict(kind="event_count", extended_condition="A"),
    ],
)
def test_invalid_specs_are_rejected(bad: dict[str, Any]) -> None:
    bad = dict(bad)
    kind = bad.pop("kind", "event_count")
    with pytest.raises(ValueError):
        evaluate_correlation(spec(kind, **bad), [m("A", 0, "e")])


def test_max_event_ids_caps_evidence_but_not_the_total() -> None:
    matches = [m("A", i, f"e{i}") for i in range(5)]
    capped = evaluate_correlation(spec(condition={"gte": 5}), matches, max_event_ids=2)
    assert [(t.event_ids, t.event_total) for t in capped] == [(("e0", "e1"), 5)]

