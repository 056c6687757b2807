"""Cost of the care-relationship context (encounters) in the privacy enrichment, by hand:

    .venv/bin/python bench/bench_encounters.py [--copies 40] [--repeat 3]

The accesses and encounters of ``fixtures/privacy/encounters`` are cloned ``--copies`` times under new patient
ids (so the index holds copies x 430 encounters and every access hits a real encounter), then enriched three
ways in the same run: no enrichment (a dict copy: the floor), the privacy enricher as before (roster + VIP
list), and the same plus encounters (NDJSON export). Reports events/s, µs/event, the ratio against the
enricher without encounters, index load time and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ENC = ROOT / "fixtures" / "privacy" / "encounters"
sys.path.insert(0, str(ENC))

from generate import DEPARTMENT_MAP  # type: ignore  # noqa: E402

from engine.enrich.privacy import PrivacyEnricher  # noqa: E402


def clone(copies: int, out: Path) -> list[dict]:
    """Encounter.ndjson x copies into ``out`` (patients renamed P1000 -> P1000-3), and the accesses likewise."""
    encounters = (ENC / "Encounter.ndjson").read_text(encoding="utf-8").splitlines()
    accesses = [json.loads(line) for line in (ENC / "accesses.ndjson").read_text(encoding="utf-8").splitlines()]
    with (out / "Encounter.ndjson").open("w", encoding="utf-8") as fh:
        for k in range(copies):
            for line in encounters:
                r = json.loads(line)
                r["id"] = f"{r['id']}-{k}"
                r["subject"]["reference"] += f"-{k}" if k else ""
                fh.write(json.dumps(r) + "\n")
    events = []
    for k in range(copies):
        for e in accesses:
            e = dict(e)
            if k:
                e["ehr.patient.id"] += f"-{k}"
            events.append(e)
    return events


def run(label: str, enrich, events: list[dict], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        batch = [dict(e) for e in events]
        t = time.perf_counter()
        for e in batch:
            enrich(e)
        best = min(best, time.perf_counter() - t)
    rate = len(events) / best
    print(f"{label:<34} {rate:>12,.0f} events/s {1e6 / rate:>8.2f} µs/event")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        events = clone(args.copies, Path(tmp))
        base = {"roster_csv": str(ENC / "staff.csv"), "vip_list_file": str(ENC / "vip.txt"),
                "timezone": "Europe/Berlin"}
        before = PrivacyEnricher.from_config(base)
        t = time.perf_counter()
        with_enc = PrivacyEnricher.from_config({**base, "encounters_ndjson": tmp,
                                                "encounters_department_map": DEPARTMENT_MAP})
        load_s = time.perf_counter() - t
        n_enc = sum(len(s.index) for s in with_enc.encounters)
        print(f"{len(events):,} accesses, {n_enc:,} encounters indexed in {load_s:.2f} s")
        floor = run("no enrichment (dict copy)", lambda e: e, events, args.repeat)
        plain = run("privacy (roster + VIP)", before.enrich, events, args.repeat)
        care = run("privacy + encounters", with_enc.enrich, events, args.repeat)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"encounters / privacy without: {care / plain:.2f}x events/s "
          f"(+{1e6 / care - 1e6 / plain:.2f} µs/event); floor {floor:,.0f} events/s; peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
