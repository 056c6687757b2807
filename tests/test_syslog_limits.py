"""Connection admission (per source and in total) and the rate-limited refusal warning."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.syslog.limits import LIMIT_PER_SOURCE, LIMIT_TOTAL, ConnectionLimiter, RefusalLog

SOURCES = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
operation = st.tuples(st.sampled_from(["acquire", "release"]), st.sampled_from(SOURCES))


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(operation, max_size=80), total=st.integers(1, 8), per_source=st.integers(1, 5))
def test_caps_hold_and_refusals_name_the_limit_that_bit(ops: list[tuple[str, str]], total: int,
                                                        per_source: int) -> None:
    limiter = ConnectionLimiter(total, per_source)
    model: dict[str, int] = {s: 0 for s in SOURCES}  # what is really open
    for op, source in ops:
        if op == "acquire":
            result = limiter.acquire(source)
            if sum(model.values()) >= total:
                assert result == LIMIT_TOTAL
            elif model[source] >= per_source:
                assert result == LIMIT_PER_SOURCE
            else:
                assert result is None
                model[source] += 1
        elif model[source]:  # the server releases only what it acquired
            limiter.release(source)
            model[source] -= 1
        assert limiter.open_connections == sum(model.values()) <= total
        assert all(limiter.open_from(s) == model[s] <= per_source for s in SOURCES)


def test_a_source_at_its_cap_does_not_block_another_source() -> None:
    limiter = ConnectionLimiter(max_connections=20, max_connections_per_source=16)
    assert [limiter.acquire("127.0.0.1") for _ in range(20)].count(None) == 16
    assert limiter.acquire("127.0.0.2") is None
    limiter.release("127.0.0.1")
    assert limiter.acquire("127.0.0.1") is None


def test_refusal_warning_is_rate_limited_and_reports_the_suppressed_count() -> None:
    log = RefusalLog(interval=3600)
    assert log.should_log("a") == 1  # the first refusal is always logged
    assert [log.should_log("a") for _ in range(5)] == [0] * 5
    assert log.should_log("b") == 1  # another listener/limit has its own budget
    log.interval = 0
    assert log.should_log("a") == 6  # the next warning says how many there were
