"""Parse throughput of the FortiGate VPN parser alone: the fixture repeated to ~100k lines.

Why the parser alone: the shared syslog/file layer has its own benchmark; this one says what the vendor's
key=value parsing and ECS mapping cost, so a slow regex shows up here and not as "the connector is slow".
Reported: events/s and the process's peak RSS.

    .venv/bin/python bench/bench_vpn_fortigate.py [--lines 100000]
"""

from __future__ import annotations

import argparse
import re
import resource
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from connectors.vpn import fortigate
from connectors.vpn.contract import ParseContext

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "vpn-fortigate" / "fortigate.log"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args()
    base = [re.sub(r"^<\d+>", "", line) for line in FIXTURE.read_text("utf-8").splitlines() if line]
    messages = (base * (args.lines // len(base) + 1))[:args.lines]
    context = ParseContext(timezone=ZoneInfo("Europe/Berlin"), hostname="fgt-edge-01")
    parse = fortigate.parse
    started = time.perf_counter()
    events = 0
    for message in messages:
        parse(message, context)
        events += 1
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"fortigate: {events} events in {elapsed:.2f} s = {events / elapsed:,.0f} events/s; "
          f"peak RSS {peak_kib / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
