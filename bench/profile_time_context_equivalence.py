"""Differential check: the current TimeContextEnricher (minute cache) against a saved older copy.

Usage: .venv/bin/python bench/profile_time_context_equivalence.py OLD_TIME_CONTEXT.py [--cases 200000]

Zones with half-hour offsets, 30-minute DST (Lord Howe), historical offsets with seconds (Monrovia until 1972,
Amsterdam before 1937) and DST transitions; timestamps clustered in minutes so the cache is hit with other
seconds of the same minute; odd values (non-canonical, invalid, not strings, missing).
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.enrich.time_context import TimeContextEnricher  # noqa: E402

ZONES = ["Europe/Berlin", "Asia/Kolkata", "Australia/Lord_Howe", "Africa/Monrovia", "Europe/Amsterdam",
         "America/St_Johns", "Pacific/Chatham", "UTC", "America/New_York", "Asia/Kathmandu"]
HOURS = [("07:00", "19:00"), ("07:30", "16:45"), ("00:00", "23:59"), ("22:00", "06:00")]
ODD = ["2026-11-02T06:05:24.773", "2026-11-02T06:05:24Z", "2026-11-02T06:05:60.000Z", "2026-13-02T06:05:24.773Z",
       "0999-06-01T12:00:00.000Z", "9999-12-31T23:59:59.999Z", "0001-01-01T00:00:00.000Z", 1700000000,
       1700000000123, None, "", "x", 1.5, "2026-11-02T06:05:24.773+05:00", "2026-11-02 06:05:24.773Z"]


def load_old(path: str):
    spec = importlib.util.spec_from_file_location("old_time_context", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def result(enricher, event):
    try:
        out = enricher.enrich(dict(event))
    except Exception as exc:  # noqa: BLE001
        return ("raise", type(exc).__name__, str(exc))
    return ("ok", list(out.items()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("--cases", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    old_module = load_old(args.old)
    rng = random.Random(args.seed)
    checked = 0
    for zone in ZONES:
        for start, end in HOURS:
            days = rng.sample(["mon", "tue", "wed", "thu", "fri", "sat", "sun"], rng.randint(0, 7))
            old = old_module.TimeContextEnricher(zone, start, end, days)
            new = TimeContextEnricher(zone, start, end, days)
            base = [datetime(1900, 1, 1, tzinfo=timezone.utc), datetime(1972, 1, 1, tzinfo=timezone.utc),
                    datetime(2026, 3, 29, tzinfo=timezone.utc), datetime(2026, 10, 25, tzinfo=timezone.utc),
                    datetime(1936, 6, 1, tzinfo=timezone.utc), datetime(2026, 4, 4, 14, tzinfo=timezone.utc)]
            for _ in range(args.cases // (len(ZONES) * len(HOURS))):
                roll = rng.random()
                if roll < 0.05:
                    event = {"@timestamp": rng.choice(ODD)} if rng.random() < 0.9 else {}
                else:
                    anchor = rng.choice(base)
                    moment = anchor + timedelta(minutes=rng.randint(-1500, 1500), milliseconds=rng.randint(0, 59999))
                    text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
                    event = {"@timestamp": text, "x": 1}
                a, b = result(old, event), result(new, event)
                if a != b:
                    print("DIFFERENCE", zone, start, end, days, event, a, b)
                    sys.exit(1)
                checked += 1
    print(f"identical on {checked} events")


if __name__ == "__main__":
    main()
