"""Cost of the care-relationship context (encounters) in the privacy enrichment, by hand:

    .venv/bin/python bench/bench_encounters.py [--copies 40] [--repeat 3]

The accesses and encounters of ``fixtures/privacy/encounters`` are cloned ``--copies`` times under new patient
ids (so the index holds copies x 430 encounters and every access hits a real encounter), then enriched three
ways in the same run: no enrichment (a dict copy: the floor), the privacy enricher as before (roster + VIP
list), and the same plus encounters (NDJSON export). Reports events/s, µs/event, the ratio against the
enricher without encounters, index load time and peak RSS; then enrichment + ``SqliteStore.write`` for each variant,
alternating batch by batch. Both encounter modes: ``encounters_flags: sensitive`` (default) and ``all``.
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


def run(variants: dict, events: list[dict], repeat: int) -> dict[str, float]:
    """Best of ``repeat`` rounds; each round runs every variant once, so all see the same machine load."""
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeat):
        for label, enrich in variants.items():
            batch = [dict(e) for e in events]
            t = time.perf_counter()
            for e in batch:
                enrich(e)
            best[label] = min(best[label], time.perf_counter() - t)
    rates = {label: len(events) / seconds for label, seconds in best.items()}
    for label, rate in rates.items():
        print(f"{label:<34} {rate:>12,.0f} events/s {1e6 / rate:>8.2f} µs/event")
    return rates


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
        every = PrivacyEnricher.from_config({**base, "encounters_ndjson": tmp, "encounters_flags": "all",
                                             "encounters_department_map": DEPARTMENT_MAP})
        n_enc = sum(len(s.index) for s in with_enc.encounters)
        print(f"{len(events):,} accesses, {n_enc:,} encounters indexed in {load_s:.2f} s")
        rates = run({"no enrichment (dict copy)": lambda e: e, "privacy (roster + VIP)": before.enrich,
                     "privacy + encounters (sensitive)": with_enc.enrich, "privacy + encounters (all)": every.enrich},
                    events, args.repeat)
        floor, plain, care, care_all = rates.values()
        ingest = store_phase(Path(tmp), events, {"without": before, "sensitive": with_enc, "all": every})
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"encounters / privacy without: sensitive {care / plain:.2f}x (+{1e6 / care - 1e6 / plain:.2f} µs/event), "
          f"all {care_all / plain:.2f}x (+{1e6 / care_all - 1e6 / plain:.2f} µs/event); floor {floor:,.0f} events/s; "
          f"peak RSS {rss_mb:.0f} MB")
    print(f"enrich + SQLite write vs without encounters: sensitive {ingest['sensitive'] / ingest['without']:.3f}x, "
          f"all {ingest['all'] / ingest['without']:.3f}x")


def store_phase(tmp: Path, events: list[dict], enrichers: dict[str, PrivacyEnricher], size: int = 5000) -> dict:
    """Privacy enrichment + ``SqliteStore.write``, the two variants alternating batch by batch (same load)."""
    from engine.store.sqlite import SqliteStore

    stores = {label: SqliteStore(tmp / f"{label.replace(' ', '-')}.db") for label in enrichers}
    spent = dict.fromkeys(enrichers, 0.0)
    for i in range(0, len(events), size):
        for label, enricher in enrichers.items():
            batch = [dict(e) for e in events[i:i + size]]
            t = time.perf_counter()
            stores[label].write([enricher.enrich(e) for e in batch])
            spent[label] += time.perf_counter() - t
    rates = {}
    for label, seconds in spent.items():
        stores[label].close()
        rates[label] = len(events) / seconds
        print(f"enrich + SQLite write, {label:<16} {rates[label]:>10,.0f} events/s")
    return rates


if __name__ == "__main__":
    main()
