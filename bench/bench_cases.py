"""Case building cost: alert revisions/s delivered with cases (the ``@cases`` builder + a JSONL sink writing
alerts and cases) against the same delivery without cases (the JSONL sink writing alerts only: the baseline,
measured in the same run on a copy of the same store).

Why this ratio: cases are built in the delivery loop, so they slow delivery down, never evaluation. The
alerts are shaped like a month of a hospital's privacy alerts: many users with one or two alerts, a few
with dozens (the bulk readers the cases exist for), each alert naming a user and often a patient.

    .venv/bin/python -m bench.bench_cases [--alerts 20000] [--users 1000] [--days 30]
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

from engine.alerts.cases import CaseBuilder, case_settings
from engine.alerts.model import Alert, alert_id
from engine.alerts.sinks import JsonlSink, deliver_pending
from engine.store import open_store
from engine.store.base import RuleCheckpoint


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_alerts(n: int, users: int, days: int, seed: int = 11) -> list[Alert]:
    rng = random.Random(seed)
    heavy = [f"u{i:04d}" for i in range(max(1, users // 50))]  # 2 % of users raise a third of the alerts
    out = []
    for i in range(n):
        user = rng.choice(heavy) if rng.random() < 0.33 else f"u{rng.randrange(users):04d}"
        day, second = rng.randrange(days), rng.randrange(86_400)
        first = (f"2026-{11 + day // 30:02d}-{day % 30 + 1:02d}T{second // 3600:02d}:{second // 60 % 60:02d}:"
                 f"{second % 60:02d}.000Z")
        group = {"user.name": user}
        if rng.random() < 0.6:
            group["ehr.patient.id"] = f"P{rng.randrange(50_000):05d}"
        rule = rng.choice(("after_hours", "bulk", "btg", "same_last_name", "deceased"))
        key = str(sorted(group.items()))
        out.append(Alert(id=alert_id(rule, key, f"{first}:{i}"), rule_id=rule, rule_title=f"Rule {rule}",
                         rule_level=rng.choice(("low", "medium", "high")), rule_tags=[], kind="match",
                         group=group, group_key=key, window_start=first, window_end=first, first_trigger=first,
                         last_trigger=first, evidence=[f"e{i}-{j}" for j in range(rng.randrange(1, 6))],
                         evidence_total=3))
    return out


def deliver(path: Path, out: Path, cases: bool) -> tuple[float, int, int]:
    store = open_store("sqlite", path=path)
    sinks = [JsonlSink(out / "alerts.jsonl", deliver="both" if cases else "alerts")]
    if cases:
        sinks.insert(0, CaseBuilder(store, case_settings({})))
    started = time.perf_counter()
    deliver_pending(store, sinks)
    seconds = time.perf_counter() - started
    n_cases = len(store.list_cases()) if cases else 0
    store.close()
    return seconds, n_cases, len((out / "alerts.jsonl").read_bytes().splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-cases-"))
    try:
        alerts = make_alerts(args.alerts, args.users, args.days)
        source = tmp / "source.db"
        store = open_store("sqlite", path=source)
        for i in range(0, len(alerts), 1000):
            store.commit_rule_run(RuleCheckpoint("bench", None), alerts[i:i + 1000])
        store.close()
        results = {}
        for name, cases in (("baseline", False), ("cases", True)):
            work = tmp / name
            work.mkdir()
            for suffix in ("", "-wal", "-shm"):
                if Path(f"{source}{suffix}").exists():
                    shutil.copy(f"{source}{suffix}", f"{work / 'w.db'}{suffix}")
            results[name] = deliver(work / "w.db", work, cases)
        base, with_cases = results["baseline"], results["cases"]
        print(f"{args.alerts} alerts, {args.users} users, {args.days} days")
        print(f"baseline (alerts only):  {args.alerts / base[0]:>10,.0f} alerts/s  ({base[0]:.2f} s)")
        print(f"with cases:              {args.alerts / with_cases[0]:>10,.0f} alerts/s  ({with_cases[0]:.2f} s),"
              f" {with_cases[1]} cases (an alert names a user and often a patient: {with_cases[1] / args.alerts:.2f} cases per alert)")
        print(f"ratio cases/baseline:    {base[0] / with_cases[0]:.2f}")
        print(f"peak RSS:                {rss_mib():.0f} MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
