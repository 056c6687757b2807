"""Throughput and peak RSS of the ``evtx`` connector against pyevtx-rs alone, over the evtx-samples corpus.

Why this baseline: every record must be parsed by pyevtx-rs (binary XML -> JSON text) and decoded anyway;
the ratio says what the connector adds on top: file identity, the tip cursor, the SigmaHQ flattening
(``record_from_evtx``), ``normalise_record`` (SigmaHQ + ECS fields, aliases) and the event id.

Phases, each in its own forked child (so each peak RSS is that phase's own), over every ``*.evtx`` under
../shared/datasets/evtx-samples (593 files, ~24,700 records, Security/Sysmon/PowerShell/System/...):

  records_json   ``PyEvtxParser(path, 1).records_json()``, records counted, JSON not decoded
  + json.loads   the same and ``json.loads(record["data"])`` (the baseline the ratio is against)
  connector      ``EvtxConnector`` one-shot ``read`` in batches of 5,000 until exhausted (parse, flatten,
                 normalise, event id, cursor), no store

Wall and CPU seconds, best of --rounds; ``parser_threads`` 1 everywhere (the connector's default).

    .venv/bin/python -m bench.bench_windows_evtx [--rounds 3] [--path DIR]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path
from typing import Any, Callable

from evtx import PyEvtxParser

from connectors.windows.evtx import EvtxConnector

SAMPLES = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "evtx-samples"


def _files(root: Path) -> list[str]:
    return [str(p) for p in sorted(root.rglob("*.evtx"))]


def _records_only(root: Path) -> int:
    n = 0
    for path in _files(root):
        try:
            for _ in PyEvtxParser(path, 1).records_json():
                n += 1
        except Exception:  # noqa: BLE001, S112 - the corpus parses; a damaged file would only be skipped here
            continue
    return n


def _records_and_json(root: Path) -> int:
    n = 0
    for path in _files(root):
        try:
            for record in PyEvtxParser(path, 1).records_json():
                json.loads(record["data"])
                n += 1
        except Exception:  # noqa: BLE001, S112
            continue
    return n


def _connector(root: Path) -> int:
    conn = EvtxConnector("bench", {"path": str(root), "parser_threads": 1})
    conn.read_to_end()
    cursor, n = None, 0
    while True:
        batch = conn.read(cursor, 5000)
        n += len(batch.events) + len(batch.dead_letters)
        cursor = batch.cursor
        if batch.exhausted:
            return n


def _child(fn: Callable[[Path], int], root: Path, rounds: int, out: Any) -> None:
    best_wall = best_cpu = float("inf")
    count = 0
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        count = fn(root)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    out.send({"n": count, "wall": best_wall, "cpu": best_cpu,
              "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def run_phase(fn: Callable[[Path], int], root: Path, rounds: int) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(fn, root, rounds, child))
    proc.start()
    result = parent.recv()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--path", type=Path, default=SAMPLES)
    args = parser.parse_args()
    if not args.path.is_dir():
        raise SystemExit(f"{args.path}: not found (the evtx-samples dataset)")
    files = _files(args.path)
    size = sum(Path(p).stat().st_size for p in files) / 2**20
    print(f"{len(files)} files, {size:.0f} MiB, best of {args.rounds}")
    results = {}
    for label, fn in (("records_json", _records_only), ("+ json.loads (baseline)", _records_and_json),
                      ("connector read", _connector)):
        r = results[label] = run_phase(fn, args.path, args.rounds)
        print(f"{label:<26} {r['n']:>7} items  {r['n'] / r['wall']:>9,.0f} events/s wall  "
              f"{r['n'] / r['cpu']:>9,.0f} events/s CPU  peak RSS {r['rss']:6.1f} MiB")
    base, full = results["+ json.loads (baseline)"], results["connector read"]
    print(f"ratio: the connector takes {full['cpu'] / base['cpu'] * base['n'] / full['n']:.2f}x the CPU time per "
          f"record of pyevtx-rs + json.loads")


if __name__ == "__main__":
    main()
