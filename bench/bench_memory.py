"""Peak RSS of the one-shot commands against input size: bounded by the batch size = roughly flat.

For each size (default 100k and 1M events) it generates the benchmark's FHIR AuditEvent NDJSON
(``bench_pipeline.generate``: realistic BALP reads, one bulk reader) and runs, each in its own subprocess
of ``wardwatch`` with a throw-away config and data dir:
  1. parse      ``wardwatch parse fhir-auditevent-file FILE`` (stdout: the flat events, kept for 2)
  2. rules test ``wardwatch rules test rules/healthcare --events <parse output>``
  3. run --once ``wardwatch run --once`` with that file as the only connector, embedded SQLite store,
                the whole rule pack (rules/)
  4. hunt       ``wardwatch hunt rules/healthcare --from 1970-01-01T00:00:00Z --format json`` over the
                store 3 filled (every stored event, the results to /dev/null)
and reports wall seconds and the child's own peak RSS (``os.wait4``). A baseline in the same run:
``python -c "import engine.cli"`` (the interpreter + imports, the floor no command goes below).
The evaluator works in slices of 200k events (``Evaluator.slice_events``), so below that RSS grows with
the input: compare sizes from one slice up (``--sizes 200000 1000000``) to see whether it is bounded.

Usage:  .venv/bin/python bench/bench_memory.py [--sizes 100000 1000000]
Writes bench/out/memory.json and prints a table; "growth" is peak RSS at the largest size / at the smallest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_pipeline import generate  # noqa: E402

WARDWATCH = [sys.executable, "-m", "engine.cli"]


def measure(argv: list[str], cwd: Path, stdout: Path | None = None) -> dict:
    """Run ``argv``; its exit code, wall seconds and peak RSS (MB) of that child alone."""
    started = time.perf_counter()
    with open(stdout if stdout is not None else os.devnull, "wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    result = {"rc": proc.returncode, "seconds": time.perf_counter() - started, "peak_rss_mb": usage.ru_maxrss / 1024}
    if proc.returncode != 0:
        result["stderr"] = err.decode(errors="replace")[-2000:]
    return result


def config(workdir: Path, fhir: Path) -> Path:
    path = workdir / "wardwatch.yaml"
    path.write_text(json.dumps({  # JSON is YAML
        "store": {"kind": "sqlite", "sqlite": {"path": "data/ww.db"}},
        "rules": {"paths": [str(ROOT / "rules")]},
        "connectors": [{"name": "bench", "type": "fhir-auditevent-file", "path": str(fhir)}],
        "alerts": {"sinks": [{"type": "jsonl", "path": "data/alerts.jsonl"}]},
        "logging": {"level": "warning"},
    }))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    results: dict[str, dict[int, dict]] = {}
    for size in args.sizes:
        work = Path(tempfile.mkdtemp(prefix=f"ww-mem-{size}-"))
        try:
            fhir = work / "audit.ndjson"
            generate(fhir, size)
            flat = work / "flat.ndjson"
            cfg = str(config(work, fhir))
            runs = {
                "baseline (import)": measure([sys.executable, "-c", "import engine.cli"], work),
                "parse": measure(WARDWATCH + ["--config", cfg, "parse", "fhir-auditevent-file", str(fhir)],
                                 work, stdout=flat),
            }
            runs["rules test"] = measure(WARDWATCH + ["--config", cfg, "rules", "test",
                                                      str(ROOT / "rules" / "healthcare"), "--events", str(flat),
                                                      "--format", "json"], work)
            runs["run --once"] = measure(WARDWATCH + ["--config", cfg, "run", "--once"], work)
            runs["hunt"] = measure(WARDWATCH + ["--config", cfg, "hunt", str(ROOT / "rules" / "healthcare"),
                                                "--from", "1970-01-01T00:00:00Z", "--format", "json"], work)
            for name, run in runs.items():
                results.setdefault(name, {})[size] = run
                note = f"  FAILED rc={run['rc']}: {run.get('stderr', '').strip().splitlines()[-1:]}" if run["rc"] else ""
                print(f"{size:>9,} {name:<18} {run['seconds']:>8.1f} s {run['peak_rss_mb']:>8.0f} MB{note}",
                      flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    lo, hi = min(args.sizes), max(args.sizes)
    print(f"\n{'command':<18}" + "".join(f"{s:>12,}" for s in args.sizes) + "   growth (peak RSS MB)")
    for name, by_size in results.items():
        growth = by_size[hi]["peak_rss_mb"] / by_size[lo]["peak_rss_mb"]
        print(f"{name:<18}" + "".join(f"{by_size[s]['peak_rss_mb']:>12.0f}" for s in args.sizes) + f"   {growth:.2f}x")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "memory.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
