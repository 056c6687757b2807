"""Throughput of the ``winlogbeat`` connector's line parser against a bare ``orjson.loads`` of the same lines.

Why this baseline: every line must be decoded as JSON anyway; the ratio says what the flavour detection,
the WindowsRecord mapping, ``normalise_record`` (SigmaHQ + ECS fields) and the event id cost on top of it.
Lines: the four test fixtures (Winlogbeat 7, Winlogbeat 8, Elastic Agent, NXLog), interleaved and repeated.
No file or socket I/O (the NDJSON tailer and the spool are benchmarked in ``bench_connectors``/``bench_syslog``).

    .venv/bin/python -m bench.bench_windows_winlogbeat [--lines 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import orjson

from connectors.windows.winlogbeat import WinlogbeatConnector

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "winlogbeat"
FILES = ("winlogbeat-7.ndjson", "winlogbeat-8.ndjson", "elastic-agent.ndjson", "nxlog.json")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, lines: list[bytes]) -> float:
    """CPU seconds (``process_time``: other processes on a shared machine do not count) for one pass."""
    start = time.process_time()
    for i, line in enumerate(lines):
        fn(line, i)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    per_file = [(DATA / name).read_bytes().splitlines() for name in FILES]
    mixed = [line for group in zip(*per_file) for line in group]
    lines = (mixed * (args.lines // len(mixed) + 1))[: args.lines]
    size = sum(map(len, lines)) / len(lines)
    print(f"{len(lines)} lines, mean {size:.0f} bytes, 4 flavours interleaved; start RSS {peak_rss_mib():.1f} MiB")
    conn = WinlogbeatConnector("bench", {"path": str(DATA), "timezone": "Europe/Berlin"})
    to_event = conn.document_to_event
    # warm-up: imports, zoneinfo cache
    for i, line in enumerate(mixed):
        assert type(to_event(line, f"line:{i}")) is dict
    baseline = full = float("inf")
    for _ in range(args.rounds):  # alternate, keep the best of each: a noisy neighbour hits both alike
        baseline = min(baseline, timed(lambda line, i: orjson.loads(line), lines))
        full = min(full, timed(lambda line, i: to_event(line, f"line:{i}"), lines))
    n = len(lines)
    print(f"orjson.loads (baseline):      {n / baseline:>10,.0f} lines/s (best of {args.rounds}, CPU time)")
    print(f"winlogbeat document_to_event: {n / full:>10,.0f} events/s")
    print(f"ratio: the parser takes {full / baseline:.1f}x the CPU time of orjson.loads alone; "
          f"peak RSS {peak_rss_mib():.1f} MiB")

if __name__ == "__main__":
    main()
