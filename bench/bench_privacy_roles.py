"""Privacy enrichment cost of roles and rare surnames: events/s with surname counts on, against the same
enricher with them off (``surname_frequencies=None``: the flags as they were before, same_last_name only).

Why this ratio: issue 11 allows ingest to lose at most 10 % to the new context. The surname work per event is
one set intersection and a dict lookup; the counting itself runs once per patient-directory (re)load, so it
is timed separately (``count`` below) for a directory the size of a regional hospital's MPI.

    .venv/bin/python -m bench.bench_privacy_roles [--patients 200000] [--staff 2000] [--events 300000]
        [--rounds 3]

Rounds alternate (off, on, off, on, ...) so machine noise hits both sides alike; the best round counts.
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import tempfile
import time
from pathlib import Path

from engine.enrich.privacy import PrivacyEnricher

SYLLABLES = ["ka", "lo", "mi", "ber", "ten", "sch", "ul", "mar", "win", "hof", "en", "ger", "dor", "ric", "an"]


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def surname(rng: random.Random) -> str:
    """A Zipf-like mix: a few very common names, a long tail of rare ones (as in real registers)."""
    if rng.random() < 0.3:
        return rng.choice(["Smith", "Müller", "Meyer", "Schulz", "Weber", "Fischer"])
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()


def write_site(root: Path, patients: int, staff: int, rng: random.Random) -> None:
    with (root / "patients.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "family_name", "address", "postal_code", "deceased_date"])
        for i in range(patients):
            dead = "2026-01-01" if rng.random() < 0.01 else ""
            w.writerow([f"P{i}", surname(rng), f"Weg {rng.randint(1, 99)}", f"{10000 + rng.randint(0, 300)}", dead])
    with (root / "roster.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["user_id", "login", "family_name", "department", "role", "address", "postal_code"])
        for i in range(staff):
            w.writerow([f"U{i}", f"user{i}", surname(rng), rng.choice(["Cardiology", "Billing", "Emergency"]),
                        rng.choice(["nurse", "physician", "billing"]), f"Weg {rng.randint(1, 99)}",
                        f"{10000 + rng.randint(0, 300)}"])


def events(n: int, patients: int, staff: int, rng: random.Random) -> list[dict]:
    return [{"@timestamp": f"2026-03-{rng.randint(10, 20)}T{rng.randint(0, 23):02d}:15:00.000Z",
             "event.dataset": "ehr.audit", "event.action": "read", "user.name": f"user{rng.randrange(staff)}",
             "ehr.patient.id": f"P{rng.randrange(patients)}"} for _ in range(n)]


def run(enricher: PrivacyEnricher, batch: list[dict]) -> float:
    copies = [dict(e) for e in batch]
    t = time.perf_counter()
    for e in copies:
        enricher.enrich(e)
    return len(copies) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=200_000)
    ap.add_argument("--staff", type=int, default=2000)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rng = random.Random(11)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_site(root, args.patients, args.staff, rng)
        on = PrivacyEnricher.from_config({"roster_csv": str(root / "roster.csv"),
                                          "patients_csv": str(root / "patients.csv")})
        t = time.perf_counter()
        freq = on.surname_frequencies.surname_frequencies()
        count_s = time.perf_counter() - t
        off = PrivacyEnricher(roster=on.roster, patients=on.patients)  # same tables, no surname counts
        batch = events(args.events, args.patients, args.staff, rng)
        best = {"off": 0.0, "on": 0.0}
        for _ in range(args.rounds):
            best["off"] = max(best["off"], run(off, batch))
            best["on"] = max(best["on"], run(on, batch))
        rare = sum(1 for e in (on.enrich(dict(x)) for x in batch[:50_000])
                   if e.get("ehr.relationship.same_last_name_rare"))
    print(f"patients {args.patients}, staff {args.staff}, events {args.events}, rounds {args.rounds}")
    print(f"surname counting (once per reload): {count_s:.2f} s for {freq.total} patients, {len(freq.counts)} names")
    print(f"enrich without surname counts: {best['off']:,.0f} events/s")
    print(f"enrich with roles + rare surnames: {best['on']:,.0f} events/s  (ratio {best['on'] / best['off']:.2f})")
    print(f"same_last_name_rare true on {rare} of 50,000 random accesses; peak RSS {rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
