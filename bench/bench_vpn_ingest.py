"""Whole-path VPN ingest: ``wardwatch ingest TYPE FILE`` for each vendor against a bare baseline, in one run.

The parser-only benchmarks (bench/bench_vpn_<vendor>.py) say whether the regexes keep up; this one says what
an operator gets: connector (file read, syslog header, event id) -> vendor parser -> normalise -> the
configured enrichment chain -> ``SqliteStore.write`` -> cursor commit, through the real CLI entry point.

Per vendor, on the same big file (the vendor fixture repeated to --lines; every copy is at another position,
so every line is a distinct event):
  baseline  read the file's lines, split them, bare ``executemany`` of one row per line into a SQLite file
            with the store's schema (bench/bench_pipeline.py ``open_baseline``/``baseline_insert``, the EHR
            pipeline's baseline), batch by batch as the ingest does
  ingest    ``engine.cli.main(["ingest", TYPE, FILE, "-o", "timezone=Europe/Berlin"])`` with a fresh SQLite
            store (optionally GeoIP from the test database, --geoip)
Each phase runs in its own forked child, so the peak RSS reported is that phase's own. The machines are
noisy: compare the ratio (ingest/baseline, same run), not absolute numbers.

Usage:  .venv/bin/python bench/bench_vpn_ingest.py [--lines 200000] [--geoip] [--only cisco-asa]
Writes bench/out/vpn-ingest-<lines>.json and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing as mp
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_pipeline import baseline_insert, open_baseline  # noqa: E402

FIXTURES = {
    "cisco-asa": ROOT / "fixtures/vpn-cisco_asa/cisco_asa.log",
    "fortigate": ROOT / "fixtures/vpn-fortigate/fortigate.log",
    "globalprotect": ROOT / "fixtures/vpn-globalprotect/globalprotect.log",
    "openvpn": ROOT / "fixtures/vpn-openvpn/openvpn.log",
}
INGESTED = "2026-12-02T00:00:00.000Z"


def big_file(type_name: str, lines: int, directory: Path) -> Path:
    """The vendor fixture repeated to ``lines`` lines (whole copies, then a prefix)."""
    text = FIXTURES[type_name].read_bytes().splitlines(keepends=True)
    path = directory / f"{type_name}.log"
    with open(path, "wb") as out:
        for n in range(lines):
            out.write(text[n % len(text)])
    return path


def baseline(path: Path, db: Path, batch: int) -> dict[str, Any]:
    """Read + split the lines and insert one row per line with a bare executemany, ``batch`` rows a time."""
    conn = open_baseline(db)
    started = time.perf_counter()
    n = 0
    rows: list[tuple] = []
    with open(path, "rb") as handle:
        for line in handle:
            _, _, message = line.rstrip(b"\n").partition(b" ")  # the header split every syslog reader does
            rows.append((str(n), "2026-11-02T00:00:00.000Z", "vpn.auth", INGESTED, message))
            n += 1
            if len(rows) == batch:
                baseline_insert(conn, rows)
                rows = []
    if rows:
        baseline_insert(conn, rows)
    seconds = time.perf_counter() - started
    conn.close()
    return {"events": n, "stored": n, "seconds": seconds}


def ingest(type_name: str, path: Path, workdir: Path, geoip: bool) -> dict[str, Any]:
    """``wardwatch ingest TYPE FILE`` in this process, the store a fresh SQLite file in ``workdir``."""
    from engine.cli import main

    enrichment = ""
    if geoip:
        from tests.test_geoip import write_fixture_dbs

        city, asn = write_fixture_dbs(workdir)
        enrichment = f"enrichment:\n  geoip:\n    city_db: {city}\n    asn_db: {asn}\n"
    config = workdir / "wardwatch.yaml"
    config.write_text(f"store:\n  sqlite:\n    path: {workdir}/store.db\nconnectors: []\nalerts:\n  sinks: []\n"
                      f"logging:\n  level: warning\n{enrichment}")
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = main(["--config", str(config), "ingest", type_name, str(path), "-o", "timezone=Europe/Berlin"])
    seconds = time.perf_counter() - started
    summary = (out.getvalue().strip().splitlines() or ["(no output)"])[-1]
    if code != 0:
        raise SystemExit(f"ingest {type_name} failed: {summary}")
    read, stored = summary.split(": ", 1)[1].split(" events read, ")
    return {"events": int(read), "stored": int(stored.split(" stored")[0]), "seconds": seconds}


def _child(fn: Any, args: tuple, queue: "mp.Queue[dict[str, Any]]") -> None:
    try:
        result = fn(*args)
    except BaseException as exc:  # noqa: BLE001 - the parent waits on the queue: always answer
        queue.put({"error": f"{type(exc).__name__}: {exc}"})
        raise
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(result)


def in_child(fn: Any, *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)`` in a forked child; its result plus the child's own peak RSS."""
    ctx = mp.get_context("fork")
    queue: "mp.Queue[dict[str, Any]]" = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if "error" in result:
        raise SystemExit(f"{getattr(fn, '__name__', fn)}{args[:1]}: {result['error']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=None, help="rows per baseline transaction "
                        "(default: the ingest's scheduler.batch_size)")
    parser.add_argument("--geoip", action="store_true", help="GeoIP enrichment from the test database "
                        "(needs the dev dependency mmdb-writer)")
    parser.add_argument("--only", choices=sorted(FIXTURES), action="append")
    parser.add_argument("--keep", action="store_true", help="keep the generated files and databases")
    args = parser.parse_args()
    from engine.config import DEFAULTS

    batch = args.batch or DEFAULTS["scheduler"]["batch_size"]
    out_dir = ROOT / "bench" / "out" / f"vpn-ingest-{args.lines}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    results: dict[str, Any] = {"lines": args.lines, "batch": batch, "geoip": args.geoip, "vendors": {}}
    print(f"{'vendor':14} {'baseline ev/s':>14} {'ingest ev/s':>12} {'ratio':>6} {'RSS base':>9} "
          f"{'RSS ingest':>10}", flush=True)
    for type_name in args.only or FIXTURES:
        work = out_dir / type_name
        work.mkdir()
        path = big_file(type_name, args.lines, work)
        base = in_child(baseline, path, work / "baseline.db", batch)
        full = in_child(ingest, type_name, path, work, args.geoip)
        if full["stored"] != args.lines:
            raise SystemExit(f"{type_name}: {full['stored']} of {args.lines} lines stored")
        row = {
            "baseline_events_per_s": round(base["events"] / base["seconds"]),
            "ingest_events_per_s": round(full["events"] / full["seconds"]),
            "baseline_peak_rss_mb": round(base["peak_rss_mb"], 1),
            "ingest_peak_rss_mb": round(full["peak_rss_mb"], 1),
        }
        row["ratio"] = round(row["ingest_events_per_s"] / row["baseline_events_per_s"], 3)
        results["vendors"][type_name] = row
        print(f"{type_name:14} {row['baseline_events_per_s']:>14,} {row['ingest_events_per_s']:>12,} "
              f"{row['ratio']:>6.3f} {row['baseline_peak_rss_mb']:>8.1f}M {row['ingest_peak_rss_mb']:>9.1f}M",
              flush=True)
    (ROOT / "bench" / "out" / f"vpn-ingest-{args.lines}.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2))
    if not args.keep:
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
