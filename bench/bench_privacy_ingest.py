"""Issue 11's ingest target on the realistic path, by hand:

    .venv/bin/python bench/bench_privacy_ingest.py [--staff 1000] [--days 7] [--seed 1] [--repeat 3]

"Ingest stays within 10 % of its current events/s, measured in the same run as the enrichment-free
pipeline." Why this script beside ``bench_baselines.py`` (which times the baselines step alone over flat
NDJSON, the harshest denominator): a site ingests FHIR AuditEvents, so the ratio that matters is taken on
that path. The generated hospital of ``bench/detection_quality.py`` (same seed, same files) is ingested by
the ``fhir-auditevent-file`` connector into a fresh SQLite store with ``ingest_connector``, as ``wardwatch
ingest`` does, three ways interleaved in one process:

* ``plain``: no enrichment at all (the enrichment-free pipeline);
* ``base``: the privacy enrichment issue 11 started from (working hours, roster, patients, VIP list);
* ``full``: ``base`` plus every context knob ``docs/enrichment.md`` documents (encounters, per-user
  baselines), i.e. what ``detection_quality.py`` runs.

It reports events per CPU second of the process (best of ``--repeat``; wall time on a shared machine is
noise), the ratios ``full/plain``, ``base/plain`` and ``full/base``, and peak RSS. The events written must
be the same number in every variant (checked).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.detection_quality import generate  # noqa: E402
from bench.hospital.evaluate import build_config, optional_knobs  # noqa: E402
from engine.app import build_connector, build_enrichment  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.ingest import ingest_connector  # noqa: E402
from engine.store import open_store  # noqa: E402


def variants(out: Path) -> dict[str, dict[str, Any]]:
    """The three configs, written from the detection benchmark's own builder so they cannot drift apart."""
    full = build_config(out, optional_knobs())
    base = build_config(out, {})
    plain = build_config(out, {})
    plain["enrichment"] = {}
    return {"plain": plain, "base": base, "full": full}


def ingest_once(out: Path, name: str, data: dict[str, Any], work: Path) -> tuple[float, float, int]:
    """One ingest into a fresh store: (CPU seconds, wall seconds, events written)."""
    store_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
    data = json.loads(json.dumps(data))
    data["store"]["sqlite"]["path"] = str(store_dir / "wardwatch.db")
    cfg_path = out / f"bench-{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    config = load_config(cfg_path)
    store = open_store("sqlite", path=store_dir / "wardwatch.db")
    try:
        connector = build_connector(config, config["connectors"][0])
        chain = build_enrichment(config)   # lookups load here, outside the timer: a service loads them once
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        stats = ingest_connector(store, connector, chain, config["scheduler"]["batch_size"], workers=0)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return cpu, wall, stats.written
    finally:
        store.close()
        shutil.rmtree(store_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--staff", type=int, default=1000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--incidents-per-kind", type=int, default=3)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "privacy_ingest")
    args = ap.parse_args(argv)
    out = args.work.resolve() / "hospital"
    counts = generate(out, args.staff, args.days, args.seed, args.incidents_per_kind)
    configs = variants(out)
    runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in configs}
    for _ in range(args.repeat):
        for name, data in configs.items():   # interleaved: load drifts alike for all three
            runs[name].append(ingest_once(out, name, data, args.work.resolve()))
    written = {name: {r[2] for r in rs} for name, rs in runs.items()}
    if len({n for s in written.values() for n in s}) != 1:
        raise SystemExit(f"the variants wrote different event counts: {written}")
    events = next(iter(written["plain"]))
    best = {name: events / min(r[0] for r in rs) for name, rs in runs.items()}
    result = {
        "params": vars(args) | {"work": str(args.work)}, "accesses": counts["accesses"], "events": events,
        "events_per_cpu_second": {k: round(v) for k, v in best.items()},
        "cpu_seconds": {k: [round(r[0], 2) for r in rs] for k, rs in runs.items()},
        "wall_seconds": {k: [round(r[1], 2) for r in rs] for k, rs in runs.items()},
        "ratio": {"full/plain": round(best["full"] / best["plain"], 3),
                  "base/plain": round(best["base"] / best["plain"], 3),
                  "full/base": round(best["full"] / best["base"], 3)},
        "us_per_event": {k: round(1e6 / v, 1) for k, v in best.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    (args.work / "result.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"{events} events ({args.staff} staff, {args.days} days, seed {args.seed}), best of {args.repeat}, "
          f"CPU seconds of this process:")
    for name in configs:
        print(f"  {name:<6} {best[name]:>9,.0f} events/CPU-s  {1e6 / best[name]:6.1f} us/event  "
              f"runs {', '.join(f'{c:.2f}' for c, _w, _n in runs[name])} CPU-s")
    print("  ratios: " + ", ".join(f"{k} {v}" for k, v in result["ratio"].items())
          + f"; peak RSS {result['peak_rss_mb']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
