"""The stream clock (``engine.events.timestamp_clock``: the rule scan's and the privacy enricher's) gives
``timestamp_ms``'s result for every value.

It remembers the last validated minute and checks only the second and millisecond characters of a stamp in
the same minute, so the cases that matter are stamps that share a head with the previous one but are not
canonical (other scripts' digits in the seconds or milliseconds, a comma for the dot, a missing ``Z``),
heads that are not canonical, dates that do not exist, and values that are not strings at all. Results and errors must be those of ``timestamp_ms``, in any order.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.events import timestamp_clock, timestamp_ms

HEADS = ["2026-11-02T10:00:00.", "2026-11-02T10:00:01.", "2026-11-02T10:59:59.", "2026-13-02T10:00:00.",
         "2026-02-30T10:00:00.", "2026-11-02 10:00:00.", "0999-11-02T10:00:00.", "2026-11-02T10:00:0٣.",
         "2026-11-02T24:00:00.", "2026-11-02T10:00:99.", "2026-11-02T10:00:00,", "2026-11-02T10:00:00:",
         "2026-11-02T10:00:001", "2026-11-02T10:00:5 .", "2026-11-02T10:01:30.", "2026-11-02T10:01:3a."]
TAILS = ["000Z", "123Z", "999Z", "12٣Z", "123z", "12aZ", "1234", "123+", " 12Z"]


class Text(str):
    """A str subclass: the general path's business."""


def _outcome(fn: Any, value: Any) -> tuple[str, Any]:
    try:
        return ("ok", fn(value))
    except Exception as exc:  # noqa: BLE001 - the error itself is what is compared
        return (type(exc).__name__, str(exc))


values = st.one_of(
    st.builds(lambda h, t: h + t, st.sampled_from(HEADS), st.sampled_from(TAILS)),
    st.builds(lambda h, t: h + t, st.sampled_from(HEADS[:3] + HEADS[-3:]), st.sampled_from(TAILS[:3])),
    st.sampled_from(["2026-11-02T10:00:00Z", "2026-11-02T10:00:00.123+00:00", "", "x" * 24, 1_793_613_600_123]),
    st.builds(lambda h, t: Text(h + t), st.sampled_from(HEADS[:2]), st.sampled_from(TAILS[:2])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=1, max_size=30))
def test_the_clock_equals_timestamp_ms_in_any_order(stamps: list[Any]) -> None:
    clock = timestamp_clock()
    for stamp in stamps:
        assert _outcome(clock, stamp) == _outcome(timestamp_ms, stamp), stamp


@pytest.mark.parametrize("after", ["2026-11-02T10:00:00.12٣Z", "2026-11-02T10:00:00.123z",
                                   "2026-11-02T10:00:00.1234"])
def test_a_stamp_of_the_remembered_second_is_still_checked(after: str) -> None:
    clock = timestamp_clock()
    assert clock("2026-11-02T10:00:00.001Z") == timestamp_ms("2026-11-02T10:00:00.001Z")
    assert _outcome(clock, after) == _outcome(timestamp_ms, after)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=1, max_size=30))
def test_the_canonical_only_clock_answers_canonical_stamps_alone(stamps: list[Any]) -> None:
    from engine.events import CANONICAL_TIMESTAMP

    clock = timestamp_clock(canonical_only=True)
    for value in stamps:
        canonical = type(value) is str and bool(CANONICAL_TIMESTAMP.match(value))
        assert _outcome(clock, value) == (_outcome(timestamp_ms, value) if canonical else ("ok", None))
