"""The correlation engine alone: 200k matches, 500 users over an hour, 5-minute sliding windows.

    .venv/bin/python bench/bench_correlation.py

Reports seconds per correlation type (a speed check that used to be a timed unit test: speed belongs here).
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.correlation import Match, evaluate_correlation  # noqa: E402
from engine.correlation.spec import CorrelationSpec  # noqa: E402


def matches(count: int) -> list[Match]:
    rng = random.Random(7)
    return [Match(rule_id=rng.choice("AB"), ts_ms=rng.randrange(3_600_000), event_id=f"e{i}",
                  fields={"user": f"u{rng.randrange(500)}", "patient": f"p{rng.randrange(2000)}"})
            for i in range(count)]


def main() -> None:
    for kind in ("event_count", "value_count"):
        spec = CorrelationSpec(id="c", type=kind, rules=("A", "B"), group_by=("user",), timespan_ms=300_000,
                               condition={"gte": 8}, condition_field="patient")
        data = matches(200_000)
        started = time.perf_counter()
        triggers = evaluate_correlation(spec, data, max_event_ids=100)
        engine_s = time.perf_counter() - started
        print(f"{kind:12} 200k matches in {engine_s:.2f} s ({len(triggers)} triggers)")


if __name__ == "__main__":
    main()
