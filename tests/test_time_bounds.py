"""``--from``/``--to`` (engine.time_bounds): ISO times and durations back from now, or one usage error."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import UsageError
from engine.events import format_timestamp
from engine.time_bounds import parse_bound, parse_range

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=timezone.utc)
TIMES = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1),
                     timezones=st.just(timezone.utc))


@given(TIMES)
def test_a_canonical_time_reads_back_as_itself(dt):
    text = format_timestamp(dt)
    assert parse_bound(text, "--from") == text


@given(TIMES, st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_an_offset_is_converted_to_utc(dt, minutes):
    local = dt.astimezone(timezone(timedelta(minutes=minutes)))
    assert parse_bound(local.isoformat(), "--to") == format_timestamp(dt)


@given(st.integers(min_value=0, max_value=10_000), st.sampled_from(["s", "m", "h", "d", "w"]))
def test_a_duration_is_back_from_now(n, unit):
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit] * n
    assert parse_bound(f"{n}{unit}", "--from", NOW) == format_timestamp(NOW - timedelta(seconds=seconds))


@given(st.text(max_size=30))
def test_any_text_is_a_time_or_one_usage_error(text):
    try:
        value = parse_bound(text, "--from", NOW)
    except UsageError as exc:
        assert str(exc).startswith("--from: not a time: ") and "\n" not in str(exc)
    else:
        assert value is None or (len(value) == 24 and value.endswith("Z"))


def test_dates_and_empty_ranges():
    with pytest.raises(UsageError, match="not a time"):
        parse_bound("99999999999w", "--from", NOW)  # before year 1: one line, not an OverflowError
    assert parse_bound("2026-11-02", "--from") == "2026-11-02T00:00:00.000Z"
    assert parse_bound(None, "--from") is None
    assert parse_range("2026-11-02", None) == ("2026-11-02T00:00:00.000Z", None)
    with pytest.raises(UsageError, match="is not before --to"):
        parse_range("2026-11-02", "2026-11-02")
