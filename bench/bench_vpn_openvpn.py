"""Parse throughput of the OpenVPN vendor parser alone: fixture messages (syslog header already split, as
the shared VPN layer hands them over) repeated to ~100k lines, through ``connectors.vpn.openvpn.parse``.

Why the parser alone: the shared layer (reading, syslog header, spool, event ids) is benchmarked on its
own; this number says whether OpenVPN's regex-per-line-form design keeps up with a busy gateway.

    .venv/bin/python -m bench.bench_vpn_openvpn [--lines 100000]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from connectors.syslog.rfc5424 import parse_syslog
from connectors.vpn import openvpn
from connectors.vpn.contract import ParseContext

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "vpn-openvpn" / "openvpn.log"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args()
    messages = []
    for raw in FIXTURE.read_bytes().splitlines():
        m = parse_syslog(raw)
        messages.append((m.text(), ParseContext(hostname=m.hostname, appname=m.appname, year=2026)))
    work = (messages * (args.lines // len(messages) + 1))[: args.lines]
    parse = openvpn.parse
    start = time.perf_counter()
    for text, ctx in work:
        parse(text, ctx)
    elapsed = time.perf_counter() - start
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"openvpn: {len(work)} lines in {elapsed:.2f} s = {len(work) / elapsed:,.0f} events/s; "
          f"peak RSS {rss_mib:.1f} MiB")


if __name__ == "__main__":
    main()
