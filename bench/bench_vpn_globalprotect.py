"""Parse throughput of the PAN-OS GlobalProtect parser alone (no syslog layer, no store).

Why the parser alone: it is the only vendor-specific cost of the VPN path; the shared syslog/file layer is
benchmarked with the other connectors. The fixture (GLOBALPROTECT CSV and SYSTEM-log lines, ~475) is
repeated to ~100k messages; the syslog header is split off beforehand, as the shared layer does.

    .venv/bin/python bench/bench_vpn_globalprotect.py [--lines 100000]
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.vpn import globalprotect  # noqa: E402
from connectors.vpn.contract import ParseContext  # noqa: E402

FIXTURE = ROOT / "fixtures" / "vpn-globalprotect" / "globalprotect.log"
HEADER = re.compile(r"^<\d+>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d (\S+) (.*)$")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args()
    records = []
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        match = HEADER.match(line)
        assert match, line
        records.append((match.group(1), match.group(2)))
    messages = (records * (args.lines // len(records) + 1))[: args.lines]
    berlin = ZoneInfo("Europe/Berlin")
    contexts = {host: ParseContext(timezone=berlin, hostname=host, year=2026) for host, _ in records}
    started = time.perf_counter()
    for host, message in messages:
        globalprotect.parse(message, contexts[host])
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"globalprotect: {len(messages)} messages in {elapsed:.2f} s = {len(messages) / elapsed:,.0f} events/s; "
          f"peak RSS {peak_kib / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
