"""Rule load: the whole SigmaHQ Windows set, cold (no cache) and warm (parsed-rule cache), with baselines.

Each measurement runs in a fresh subprocess (imports, page cache and allocator state as a restart sees
them), reports wall and CPU seconds for the ``load_rules`` call alone (imports excluded, reported apart) and
the peak RSS of that process. CPU seconds (user + system) are what to read on a shared machine: wall time
grows with the load others put on the cores, CPU time much less. In ONE run, interleaved, so the ratios compare like with like on a noisy machine:
  1. safe_load     bare ``yaml.safe_load`` of every file (pure-Python PyYAML: what most tools do)
  2. c_safe_load   bare ``yaml.load(..., CSafeLoader)`` of every file (libyaml: the floor for parsing)
  3. python_yaml   ``load_rules`` with the pure-Python composer (the engine before this change), no cache
  4. cold          ``load_rules`` with libyaml, empty cache (it writes the cache)
  5. warm          ``load_rules`` with libyaml, cache written by 4
Targets (issue 10): warm < 2 s, cold < 5 s.

Usage:  .venv/bin/python bench/bench_rule_load.py [--repeat 3]
Writes bench/out/rule-load.json and prints a table (median of the repeats, the minimum in brackets; ratios on CPU time).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sigmahq_data import sigmahq_windows_dirs  # noqa: E402

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
mode, cache_dir, dirs = sys.argv[1], sys.argv[2], sys.argv[3:]
t0 = time.perf_counter()
import yaml
from engine.sigma import load_rules, source
from engine.sigma.source import rule_files
imported = time.perf_counter() - t0
files = list(rule_files(dirs))
rules = errors = 0
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
c = cpu()
t = time.perf_counter()
if mode in ("safe_load", "c_safe_load"):
    loader = yaml.SafeLoader if mode == "safe_load" else yaml.CSafeLoader
    for f in files:
        try:
            list(yaml.load_all(f.read_text(encoding="utf-8"), Loader=loader))
            rules += 1
        except yaml.YAMLError:
            errors += 1
else:
    if mode == "python_yaml":
        source.SAFE_LOADER = yaml.SafeLoader
    rs = load_rules(dirs, cache_dir=None if mode == "python_yaml" else cache_dir)
    rules, errors = len(rs.rules), len(rs.errors)
seconds = time.perf_counter() - t
print(json.dumps({{"mode": mode, "seconds": seconds, "cpu_seconds": cpu() - c, "import_seconds": imported, "files": len(files),
                  "rules": rules, "errors": errors,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

MODES = ("safe_load", "c_safe_load", "python_yaml", "cold", "warm")


def run(mode: str, cache_dir: Path, dirs: list[Path]) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), mode, str(cache_dir),
                          *map(str, dirs)], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    dirs = sigmahq_windows_dirs()
    if not dirs:
        sys.exit("no SigmaHQ rules under ../shared/datasets/sigmahq/rules*/windows")
    results: dict[str, list[dict]] = {m: [] for m in MODES}
    for _ in range(args.repeat):
        cache_dir = Path(tempfile.mkdtemp(prefix="ww-rule-cache-"))
        try:
            for mode in MODES:  # cold before warm: cold writes the cache warm reads
                results[mode].append(run(mode, cache_dir, dirs))
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
    summary = {}
    base_cpu = statistics.median(r["cpu_seconds"] for r in results["safe_load"])
    print(f"SigmaHQ Windows: {results['cold'][0]['files']} files, {results['cold'][0]['rules']} rules loaded, "
          f"{results['cold'][0]['errors']} refused; median of {args.repeat} (min)")
    print(f"{'mode':<12} {'wall s':>14} {'CPU s':>14} {'x safe_load':>12} {'peak RSS MB':>12} {'import s':>9}")
    for mode in MODES:
        secs = [r["seconds"] for r in results[mode]]
        med = statistics.median(secs)
        cpus = [r["cpu_seconds"] for r in results[mode]]
        cpu_med = statistics.median(cpus)
        rss = max(r["peak_rss_mb"] for r in results[mode])
        imp = statistics.median(r["import_seconds"] for r in results[mode])
        summary[mode] = {"median_s": med, "min_s": min(secs), "median_cpu_s": cpu_med, "min_cpu_s": min(cpus),
                         "peak_rss_mb": rss, "import_s": imp, "vs_safe_load": cpu_med / base_cpu}
        print(f"{mode:<12} {med:>7.2f} ({min(secs):>4.2f}) {cpu_med:>7.2f} ({min(cpus):>4.2f}) "
              f"{cpu_med / base_cpu:>12.2f} {rss:>12.0f} {imp:>9.2f}")
    for what in ("median_s", "median_cpu_s"):
        warm, cold = summary["warm"][what], summary["cold"][what]
        print(f"targets ({what}): warm {warm:.2f} s (< 2 s: {'met' if warm < 2 else 'NOT met'}), "
              f"cold {cold:.2f} s (< 5 s: {'met' if cold < 5 else 'NOT met'})")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "rule-load.json").write_text(json.dumps({"summary": summary, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
