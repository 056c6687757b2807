"""Profile / time the FHIR AuditEvent file connector and the time-context enricher alone (no store).

Usage: .venv/bin/python bench/profile_fhir_ingest.py [--events 100000] [--file PATH] [--profile] [--repeat 3]
Generates the same events as bench/bench_pipeline.py (its ``generate``) unless --file points at an NDJSON file.
Prints events/s for: connector read, connector + enrichment. With --profile, a cProfile of connector+enrich.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_pipeline import generate  # noqa: E402

from connectors.fhir_file import FhirAuditEventFileConnector  # noqa: E402
from engine.enrich import EnrichmentChain  # noqa: E402
from engine.enrich.time_context import TimeContextEnricher  # noqa: E402


def run(path: Path, batch: int, enrich: EnrichmentChain | None) -> int:
    connector = FhirAuditEventFileConnector("bench", {"path": str(path)})
    cursor = None
    n = 0
    while True:
        result = connector.read(cursor, batch)
        events = enrich.enrich_all(result.events) if enrich is not None else result.events
        n += len(events)
        cursor = result.cursor
        if result.exhausted:
            break
    connector.close()
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--file")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tmp = None
    if args.file:
        path = Path(args.file)
    else:
        tmp = tempfile.TemporaryDirectory()
        path = Path(tmp.name) / "auditevents.ndjson"
        generate(path, args.events)
    enrich = EnrichmentChain([TimeContextEnricher("Europe/Berlin", "07:00", "19:00",
                                                  ["mon", "tue", "wed", "thu", "fri"])])
    for label, chain in (("connector", None), ("connector+enrich", enrich)):
        best = None
        for _ in range(args.repeat):
            started = time.perf_counter()
            n = run(path, args.batch, chain)
            seconds = time.perf_counter() - started
            best = seconds if best is None else min(best, seconds)
        print(f"{label:18} {n} events  best {best:.2f} s  {n / best:>10.0f} events/s", flush=True)
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(path, args.batch, enrich)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
