"""Events/s of the Cisco ASA parser over its fixture, repeated to ~100k lines, and the peak RSS.

Why the parser alone: the shared VPN layer (header split, ids, dead letters) is measured separately; this
number says whether the per-message-id regexes keep up with a busy gateway. Run:
``python -m bench.bench_vpn_cisco_asa [lines]``.
"""

from __future__ import annotations

import re
import resource
import sys
import time
from pathlib import Path

from connectors.vpn import cisco_asa
from connectors.vpn.contract import ParseContext

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "vpn-cisco_asa" / "cisco_asa.log"
HEADER = re.compile(r"<\d{1,3}>[A-Z][a-z]{2} \d{2} \d{4} \d{2}:\d{2}:\d{2} (\S+) : (.*)\Z")


def main(target: int = 100_000) -> None:
    """Parse the fixture's MSG parts ``target`` times in total; print events/s and peak RSS."""
    messages = []
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        m = HEADER.match(line)
        if m:
            messages.append((m.group(1), m.group(2)))
    work = (messages * (target // len(messages) + 1))[:target]
    contexts = {host: ParseContext(hostname=host) for host, _ in messages}
    parse = cisco_asa.parse
    start = time.perf_counter()
    for host, msg in work:
        parse(msg, contexts[host])
    elapsed = time.perf_counter() - start
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"cisco_asa: {len(work)} messages in {elapsed:.2f}s = {len(work) / elapsed:,.0f} events/s; "
          f"peak RSS {rss_kib / 1024:.1f} MiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
