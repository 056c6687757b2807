"""Episodes: one alert per burst, identical however the evaluation runs were cut."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.episodes import Hit, RuleInfo, assign_anchors, build_alert, merge_revision

RULE = RuleInfo("r1", "Rule", "high", ("attack.t1110",), "", "correlation", "event_count", "event_count", None,
                {"gte": 3})


def hit(ts: int, group: str = "u1", ids: tuple[str, ...] = ()) -> Hit:
    return Hit({"user.name": group}, group, ts, ts - 10, ids or (f"e{ts}",), metric=ts % 7)


def test_burst_within_period_is_one_episode_and_next_burst_another():
    hits = [hit(t) for t in (0, 10, 50, 99, 100, 150)]
    episodes = assign_anchors(hits, 100, lambda g, t: None)
    assert sorted(episodes) == [("u1", 0), ("u1", 100)]
    assert [h.ts_ms for h in episodes[("u1", 0)]] == [0, 10, 50, 99]


def test_groups_are_independent():
    hits = [hit(0, "a"), hit(5, "b"), hit(120, "a")]
    assert sorted(assign_anchors(hits, 100, lambda g, t: None)) == [("a", 0), ("a", 120), ("b", 5)]


def test_stored_anchor_is_continued():
    episodes = assign_anchors([hit(130)], 100, lambda g, t: 50 if 50 <= t < 150 else None)
    assert list(episodes) == [("u1", 50)]


def test_zero_period_gives_one_episode_per_hit():
    assert len(assign_anchors([hit(1), hit(1, ids=("x",)), hit(2)], 0, lambda g, t: None)) == 2


def _run_in_chunks(ts_list: list[int], cuts: list[int], period: int) -> set[tuple[str, int]]:
    """Process hits in several runs, remembering anchors the way the store does (latest anchor per group)."""
    stored: dict[str, int] = {}
    anchors: set[tuple[str, int]] = set()
    edges = [-1, *sorted(set(cuts)), max(ts_list) + 1]
    for low, high in zip(edges, edges[1:]):
        chunk = [hit(t) for t in ts_list if low <= t < high]

        def known(group: str, ts: int) -> int | None:
            anchor = stored.get(group)
            return anchor if anchor is not None and anchor <= ts < anchor + period else None

        for group, anchor in assign_anchors(chunk, period, known):
            anchors.add((group, anchor))
            stored[group] = max(stored.get(group, anchor), anchor)
    return anchors


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=1, max_size=40), st.lists(st.integers(0, 1000), max_size=5),
       st.integers(1, 300))
def test_anchors_do_not_depend_on_how_runs_are_cut(ts_list, cuts, period):
    assert _run_in_chunks(ts_list, cuts, period) == _run_in_chunks(ts_list, [], period)


def test_alert_content_is_a_function_of_the_episode_and_id_is_stable():
    hits = [hit(0, ids=("a", "b")), hit(40, ids=("b", "c")), hit(20, ids=("c",))]
    times = {"a": 0, "b": 5, "c": 30}
    first = build_alert(RULE, {"user.name": "u1"}, "u1", 0, hits, times, evidence_cap=2)
    again = build_alert(RULE, {"user.name": "u1"}, "u1", 0, list(reversed(hits)), times, evidence_cap=2)
    assert first.to_dict() == again.to_dict()
    assert first.evidence == ["a", "b"] and first.evidence_total == 3
    assert first.window_start == "1969-12-31T23:59:59.990Z" and first.last_trigger == "1970-01-01T00:00:00.040Z"
    assert first.metric["value"] == max(h.metric for h in hits)
    other_anchor = build_alert(RULE, {"user.name": "u1"}, "u1", 100, hits, times, evidence_cap=2)
    assert other_anchor.id != first.id


def test_revision_bumps_only_when_content_changes():
    times = {"a": 0}
    stored = build_alert(RULE, {}, "u1", 0, [hit(0, ids=("a",))], times, 10)
    stored.status = "acknowledged"
    assert merge_revision(build_alert(RULE, {}, "u1", 0, [hit(0, ids=("a",))], times, 10), stored) is None
    grown = merge_revision(build_alert(RULE, {}, "u1", 0, [hit(0, ids=("a",)), hit(5)], times, 10), stored)
    assert grown is not None and grown.revision == 2 and grown.status == "acknowledged"


@settings(max_examples=500, deadline=None)
@given(st.integers(-10**12, 4 * 10**12))
def test_timestamp_ms_fast_path_round_trips(ms):
    from datetime import timedelta

    from engine.events import _EPOCH, format_timestamp, from_timestamp_ms, parse_timestamp, timestamp_ms

    text = format_timestamp(from_timestamp_ms(ms))
    assert timestamp_ms(text) == ms == (parse_timestamp(text) - _EPOCH) // timedelta(milliseconds=1)
