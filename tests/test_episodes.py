"""Episodes: one alert per group and period, identical however runs were cut and events arrived."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.alerts.episodes import Hit, RuleInfo, assign_anchors, build_alert, episode_anchor, merge_revision

RULE = RuleInfo("r1", "Rule", "high", ("attack.t1110",), "", "correlation", "event_count", "event_count", None,
                {"gte": 3})


def hit(ts: int, group: str = "u1", ids: tuple[str, ...] = ()) -> Hit:
    return Hit({"user.name": group}, group, ts, ts - 10, ids or (f"e{ts}",), metric=ts % 7)


def test_burst_within_period_is_one_episode_and_next_burst_another():
    hits = [hit(t) for t in (0, 10, 50, 99, 100, 150)]
    episodes = assign_anchors(hits, 100)
    assert sorted(episodes) == [("u1", 0), ("u1", 100)]
    assert [h.ts_ms for h in episodes[("u1", 0)]] == [0, 10, 50, 99]


def test_groups_are_independent():
    hits = [hit(0, "a"), hit(5, "b"), hit(120, "a")]
    assert sorted(assign_anchors(hits, 100)) == [("a", 0), ("a", 100), ("b", 0)]


def test_episodes_are_clock_periods_so_a_late_earlier_hit_joins_instead_of_overlapping():
    """Issue 7 item 6: a hit older than the stored episode's first trigger must not anchor a second one."""
    seen_first = assign_anchors([hit(3_630_000), hit(3_700_000)], 3_600_000)  # 01:00:30 and 01:01:40
    late = assign_anchors([hit(3_601_000)], 3_600_000)  # 01:00:01, arriving later
    assert list(seen_first) == list(late) == [("u1", 3_600_000)]
    assert episode_anchor(-1, 100) == -100 and episode_anchor(7, 0) == 7


def _ms(text: str) -> int:
    from engine.events import timestamp_ms
    return timestamp_ms(text)


def test_a_week_long_period_is_a_calendar_week_from_monday():
    """A ``7d`` suppression ("one alert per user, patient and week") split every Thursday 00:00 UTC, the
    epoch's weekday: a coder's reads of one namesake on Tuesday and on Thursday were two alerts and two cases.
    Whole weeks now start on Monday 00:00 UTC (ISO 8601); shorter periods stay aligned to the epoch."""
    week = 7 * 86_400_000
    tuesday, thursday, sunday = _ms("2026-11-03T10:25:03.000Z"), _ms("2026-11-05T07:54:48.000Z"), \
        _ms("2026-11-08T23:59:59.999Z")
    monday = _ms("2026-11-02T00:00:00.000Z")
    assert {episode_anchor(t, week) for t in (tuesday, thursday, sunday, monday)} == {monday}
    assert episode_anchor(_ms("2026-11-09T00:00:00.000Z"), week) == monday + week
    assert episode_anchor(thursday, 2 * week) in (monday, monday - week)  # two weeks: from a Monday too
    assert (episode_anchor(thursday, 2 * week) - monday) % week == 0
    assert episode_anchor(thursday, 86_400_000) == _ms("2026-11-05T00:00:00.000Z")  # a day: UTC midnight
    assert episode_anchor(3_601_000, 3_600_000) == 3_600_000  # an hour: the UTC clock hour
    episodes = assign_anchors([hit(tuesday), hit(thursday), hit(sunday)], week)
    assert list(episodes) == [("u1", monday)]


@settings(max_examples=200, deadline=None)
@given(ts=st.integers(-10**13, 10**13), weeks=st.integers(1, 8))
def test_every_whole_week_period_starts_on_a_monday_and_holds_the_time(ts: int, weeks: int) -> None:
    from datetime import datetime, timezone
    period = weeks * 7 * 86_400_000
    anchor = episode_anchor(ts, period)
    assert anchor <= ts < anchor + period
    start = datetime.fromtimestamp(anchor / 1000, timezone.utc)
    assert (start.weekday(), start.hour, start.minute, start.second, start.microsecond) == (0, 0, 0, 0, 0)


def test_zero_period_gives_one_episode_per_hit():
    assert len(assign_anchors([hit(1), hit(1, ids=("x",)), hit(2)], 0)) == 2


def _arrive(ts_list: list[int], groups: list[str], order: list[int], cuts: list[int],
            period: int) -> dict[tuple[str, int], list[tuple[int, tuple[str, ...]]]]:
    """Hits arriving in ``order`` and evaluated in runs cut at ``cuts``; each run merges into its episodes
    the way the evaluator does (an episode is recomputed from everything it has seen)."""
    arrived = [hit(ts_list[i], groups[i % len(groups)], ids=(f"e{i}",)) for i in order]
    stored: dict[tuple[str, int], list[Hit]] = {}
    edges = [0, *sorted(c for c in set(cuts) if 0 < c < len(arrived)), len(arrived)]
    for low, high in zip(edges, edges[1:]):
        for key, hits in assign_anchors(arrived[low:high], period).items():
            stored[key] = stored.get(key, []) + hits
    return {key: sorted((h.ts_ms, h.event_ids) for h in eps) for key, eps in stored.items()}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-500, 1000), min_size=1, max_size=40), st.lists(st.sampled_from("ab"), min_size=1,
       max_size=2), st.randoms(use_true_random=False), st.lists(st.integers(0, 40), max_size=6),
       st.integers(0, 300))
def test_episodes_do_not_depend_on_arrival_order_or_how_runs_are_cut(ts_list, groups, rnd, cuts, period):
    order = list(range(len(ts_list)))
    rnd.shuffle(order)
    batch = _arrive(ts_list, groups, list(range(len(ts_list))), [], period)
    assert _arrive(ts_list, groups, order, cuts, period) == batch
    spans = sorted((key[0], key[1], max(ts for ts, _ in eps)) for key, eps in batch.items())
    for (g1, a1, last1), (g2, a2, _) in zip(spans, spans[1:]):
        assert g1 != g2 or last1 < a2, "two episodes of one group overlap"


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


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-62_135_596_800_000, 253_402_300_799_999), min_size=1, max_size=20))
def test_iso_is_the_canonical_text_of_each_time_also_when_asked_again(times):
    """``iso`` is cached: asked twice, in any order, it gives the canonical form of that very time."""
    from engine.alerts.episodes import iso
    from engine.events import format_timestamp, from_timestamp_ms

    for ms in times + times[::-1]:
        assert iso(ms) == format_timestamp(from_timestamp_ms(ms))
