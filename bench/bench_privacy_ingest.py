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

``--against TREE`` also measures another checkout, the tree the issue started from, because "its current
events/s" is that tree's ingest. That checkout needs its own virtualenv (``TREE/.venv``, or
``--against-python``):

    git worktree add /tmp/issue11-start 57bd506
    python3.11 -m venv /tmp/issue11-start/.venv && /tmp/issue11-start/.venv/bin/pip install -q -e /tmp/issue11-start
    .venv/bin/python bench/bench_privacy_ingest.py --repeat 5 --against /tmp/issue11-start

Then every run happens in a child process (``bench/ingest_child.py``), this tree's three variants and that
tree's ``plain`` and ``base`` interleaved in each round. The extra ratios are ``then base/plain`` (the
issue's starting point, against its own plain pipeline), ``target`` = (``full/plain``) / (``then
base/plain``) (the target reads 0.9: the ingest with every context knob, normalised by the plain pipeline
of its own run, against the ingest at the start, normalised the same way) and ``full/then base`` (events/s
against events/s, not normalised: the machine's noise stays in it).

With ``--repeat`` above 1 it also prints the same ratios taken within each round (``paired_ratios``) and
their median: the figure to quote on a shared machine, where one variant's runs spread by a third; and the
ratios of each variant's mean CPU seconds over all its runs (``mean_ratios``), which no single run decides. Child
processes of one round share a ``PYTHONHASHSEED`` (the round's number).

``--instructions`` counts instructions instead of timing (valgrind's callgrind, ``apt-get install valgrind``):
every variant ingests once, in a child process under callgrind, with the instrumentation switched on for the
ingest alone (``callgrind_control``, after the child's setup). Why: an instruction count is the same in every
run (``PYTHONHASHSEED=0``), so a change's effect reads to the instruction on a machine whose CPU seconds spread
by half; it is no events/s (a cache miss costs no instruction and much time), so it is reported beside the
CPU-second ratios, never instead of them. Under callgrind an ingest runs ~50x slower: ``--max-batches N``
limits each ingest to its first N batches (8: 40,000 events, ~1.5 minutes per variant).

``--stages`` runs every ingest in a child process with CPU timers around its stages (``time_stages`` in
``bench/ingest_child.py``: read, enrichment and each of its steps, baselines, store write with its encode and
insert) and prints each variant's stages of its best run, in µs per event: where a ratio's difference sits.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
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


def prepare(out: Path, name: str, data: dict[str, Any], work: Path) -> tuple[Path, Path]:
    """A variant's config file, with a fresh store directory of its own: (config path, store directory)."""
    store_dir = Path(tempfile.mkdtemp(prefix=f"{name.replace(' ', '-')}-", dir=work))
    data = json.loads(json.dumps(data))
    data["store"]["sqlite"]["path"] = str(store_dir / "wardwatch.db")
    cfg_path = out / f"bench-{name.replace(' ', '-')}.yaml"  # beside the hospital: its file names are relative
    cfg_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return cfg_path, store_dir


Run = tuple[float, float, int, "dict[str, float] | None"]


def ingest_once(out: Path, name: str, data: dict[str, Any], work: Path) -> Run:
    """One ingest into a fresh store, in this process: (CPU seconds, wall seconds, events written, None)."""
    cfg_path, store_dir = prepare(out, name, data, work)
    config = load_config(cfg_path)
    store = open_store("sqlite", path=store_dir / "wardwatch.db")
    try:
        connector = build_connector(config, config["connectors"][0])
        chain = build_enrichment(config)   # lookups load here, outside the timer: a service loads them once
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        stats = ingest_connector(store, connector, chain, config["scheduler"]["batch_size"], workers=0)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return cpu, wall, stats.written, None
    finally:
        store.close()
        shutil.rmtree(store_dir, ignore_errors=True)


def ingest_in_child(python: Path, tree: Path, out: Path, name: str, data: dict[str, Any],
                    work: Path, stages: bool = False, hash_seed: int | None = None) -> Run:
    """One ingest by ``tree``'s code in a child process run by ``python`` (``bench/ingest_child.py``); with
    ``stages``, the fourth element is its stages' CPU seconds.

    ``hash_seed``: the child's ``PYTHONHASHSEED``. Why: each child otherwise draws its own, and the string
    hashes decide how the events' and caches' dicts collide; ``main`` gives every child of one round the
    same seed (and each round another), so a round's variants differ in their code, not in their luck."""
    cfg_path, store_dir = prepare(out, name, data, work)
    env = dict(os.environ) | ({"PYTHONHASHSEED": str(hash_seed)} if hash_seed is not None else {})
    try:
        wall = time.perf_counter()
        done = subprocess.run([str(python), str(ROOT / "bench" / "ingest_child.py"), str(tree), str(cfg_path),
                               *(["--stages"] if stages else [])], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - wall
        result = child_result(name, f"{python} bench/ingest_child.py {tree}", done.returncode, done.stdout, done.stderr)
        return float(result["cpu"]), wall, int(result["written"]), result.get("stages")
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)


def child_result(name: str, command: str, returncode: int, stdout: str, stderr: str, ok: bool = True) -> dict[str, Any]:
    """The JSON line an ``ingest_child.py`` run printed last; one line naming the variant, the command and the
    child's last words when it failed (or ``ok`` says its output lacks what was asked)."""
    if returncode != 0 or not ok:
        raise SystemExit(f"{name}: {command} failed (exit {returncode}): "
                         f"{(stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(stdout.strip().splitlines()[-1])


def instructions_in_child(python: Path, tree: Path, out: Path, name: str, data: dict[str, Any], work: Path,
                          max_batches: int | None) -> tuple[int, int]:
    """One ingest by ``tree``'s code under callgrind, counted from the end of its setup: (instructions,
    events written)."""
    cfg_path, store_dir = prepare(out, name, data, work)
    handshake = Path(tempfile.mkdtemp(prefix="handshake-", dir=work))
    env = dict(os.environ) | {"PYTHONHASHSEED": "0", "WARDWATCH_BENCH_HANDSHAKE": str(handshake)}
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={handshake / 'callgrind.out'}", str(python),
               str(ROOT / "bench" / "ingest_child.py"), str(tree), str(cfg_path),
               *(["--max-batches", str(max_batches)] if max_batches else [])]
    try:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        while not (handshake / "ready").exists():
            if child.poll() is not None:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["callgrind_control", "--instr=on", str(child.pid)], check=True, capture_output=True)
            (handshake / "go").touch()
        stdout, stderr = child.communicate()
        counted = [line for line in stderr.splitlines() if "Collected :" in line]
        result = child_result(name, f"valgrind {python} bench/ingest_child.py {tree}", child.returncode, stdout,
                              stderr, ok=bool(counted))
        return int(counted[-1].split(":")[-1]), int(result["written"])
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)
        shutil.rmtree(handshake, ignore_errors=True)


def count_instructions(args: argparse.Namespace, out: Path, configs: dict[str, dict[str, Any]], work: Path,
                       against: tuple[Path, Path] | None) -> int:
    """``--instructions``: every variant once under callgrind; instructions per event and the ratios."""
    runs = {name: (Path(sys.executable), ROOT, data) for name, data in configs.items()}
    if against is not None:
        runs |= {f"then {name}": (against[1], against[0], configs[name]) for name in ("plain", "base")}
    counted = {name: instructions_in_child(python, tree, out, name, data, work, args.max_batches)
               for name, (python, tree, data) in runs.items()}
    written = {n for _, n in counted.values()}
    if len(written) != 1:
        raise SystemExit(f"the variants wrote different event counts: { {k: v[1] for k, v in counted.items()} }")
    events = written.pop()
    # "events per instruction" stands in for events/s: the ratios are those of main, on instructions
    ratio = {k: round(v, 3) for k, v in ratios({name: 1 / n for name, (n, _) in counted.items()}).items()}
    result = {"params": vars(args) | {"work": str(args.work), "against": str(args.against),
                                      "against_python": str(args.against_python)},
              "events": events, "instructions": {k: n for k, (n, _) in counted.items()},
              "instructions_per_event": {k: round(n / events) for k, (n, _) in counted.items()},
              "instruction_ratio": ratio}
    (args.work / "result-instructions.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"{events} events ({args.staff} staff, {args.days} days, seed {args.seed}"
          + (f", first {args.max_batches} batches" if args.max_batches else "") + "), instructions under callgrind:")
    for name, (n, _) in counted.items():
        print(f"  {name:<10} {n / events:>10,.0f} instructions/event")
    print("  ratios on instructions: " + ", ".join(f"{k} {v}" for k, v in ratio.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--staff", type=int, default=1000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--incidents-per-kind", type=int, default=3)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "privacy_ingest")
    ap.add_argument("--against", type=Path, metavar="TREE",
                    help="also ingest with this checkout's plain and base pipelines (the tree the issue started "
                         "from); every run then happens in a child process")
    ap.add_argument("--against-python", type=Path, metavar="PYTHON",
                    help="the Python that has TREE's dependencies (default: TREE/.venv/bin/python)")
    ap.add_argument("--instructions", action="store_true",
                    help="count each variant's instructions once under valgrind's callgrind instead of timing")
    ap.add_argument("--max-batches", type=int, default=None, metavar="N",
                    help="with --instructions: ingest only the first N batches")
    ap.add_argument("--stages", action="store_true",
                    help="time each stage too (every run then happens in a child process) and print them")
    args = ap.parse_args(argv)
    if args.against is not None:  # before the minutes of generating: a wrong path is told at once
        tree = args.against.resolve()
        python = args.against_python or tree / ".venv" / "bin" / "python"
        if not (tree / "engine").is_dir() or not Path(python).exists():
            raise SystemExit(f"--against {tree}: needs a Wardwatch checkout and its Python ({python})")
    if args.max_batches is not None and not args.instructions:
        raise SystemExit("--max-batches limits --instructions runs only (a timed ingest reads everything)")
    if args.instructions and (shutil.which("valgrind") is None or shutil.which("callgrind_control") is None):
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    out = args.work.resolve() / "hospital"
    counts = generate(out, args.staff, args.days, args.seed, args.incidents_per_kind)
    configs = variants(out)
    work = args.work.resolve()
    if args.instructions:
        return count_instructions(args, out, configs, work, (tree, Path(python)) if args.against is not None else None)
    runners: dict[str, Any] = {name: (lambda seed, n=name, d=data: ingest_once(out, n, d, work))
                               for name, data in configs.items()}
    if args.against is not None or args.stages:
        runners = {name: (lambda seed, n=name, d=data: ingest_in_child(Path(sys.executable), ROOT, out, n, d, work,
                                                                       args.stages, seed))
                   for name, data in configs.items()}
    if args.against is not None:
        for name in ("plain", "base"):
            runners[f"then {name}"] = (lambda seed, n=name: ingest_in_child(Path(python), tree, out, f"then {n}",
                                                                            configs[n], work, args.stages, seed))
    runs: dict[str, list[Run]] = {name: [] for name in runners}
    for round_no in range(args.repeat):
        for name, run in runners.items():   # interleaved: load drifts alike for all of them
            runs[name].append(run(round_no + 1))
    written = {name: {r[2] for r in rs} for name, rs in runs.items()}
    if len({n for s in written.values() for n in s}) != 1:
        raise SystemExit(f"the variants wrote different event counts: {written}")
    events = next(iter(written["plain"]))
    best = {name: events / min(r[0] for r in rs) for name, rs in runs.items()}
    ratio = {k: round(v, 3) for k, v in ratios(best).items()}
    rounds = paired_ratios({name: [r[0] for r in rs] for name, rs in runs.items()})
    means = mean_ratios({name: [r[0] for r in rs] for name, rs in runs.items()})
    result = {
        "params": vars(args) | {"work": str(args.work), "against": str(args.against),
                                "against_python": str(args.against_python)},
        "accesses": counts["accesses"], "events": events,
        "events_per_cpu_second": {k: round(v) for k, v in best.items()},
        "cpu_seconds": {k: [round(r[0], 2) for r in rs] for k, rs in runs.items()},
        "wall_seconds": {k: [round(r[1], 2) for r in rs] for k, rs in runs.items()},
        "ratio": ratio,
        "round_ratios": rounds,
        "median_round_ratio": {k: round(statistics.median(v), 3) for k, v in rounds.items()},
        "mean_ratio": {k: round(v, 3) for k, v in means.items()},
        "us_per_event": {k: round(1e6 / v, 1) for k, v in best.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if args.stages:  # each variant's best run, in µs per event
        result["stages_us_per_event"] = {
            name: {k: round(v / events * 1e6, 2) for k, v in (min(rs, key=lambda r: r[0])[3] or {}).items()}
            for name, rs in runs.items()}
    (args.work / "result.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"{events} events ({args.staff} staff, {args.days} days, seed {args.seed}), best of {args.repeat}, "
          f"CPU seconds of this process:")
    for name in runners:
        print(f"  {name:<10} {best[name]:>9,.0f} events/CPU-s  {1e6 / best[name]:6.1f} us/event  "
              f"runs {', '.join(f'{r[0]:.2f}' for r in runs[name])} CPU-s")
    print("  ratios: " + ", ".join(f"{k} {v}" for k, v in result["ratio"].items())
          + f"; peak RSS {result['peak_rss_mb']} MB" + (" (of this process; the runs were children)"
                                                        if args.against is not None or args.stages else ""))
    if args.repeat > 1:
        print("  the same ratios per round (CPU seconds of that round's runs), median: "
              + ", ".join(f"{k} {v}" for k, v in result["median_round_ratio"].items())
              + "; per round: " + "; ".join(f"{k} {' '.join(map(str, v))}" for k, v in rounds.items()
                                            if k in ("target", "full/then base")))
        print("  the same ratios on each variant's mean CPU seconds over all rounds: "
              + ", ".join(f"{k} {v}" for k, v in result["mean_ratio"].items()))
    if args.stages:
        print(stage_table(result["stages_us_per_event"]))
    return 0


def paired_ratios(cpu: dict[str, list[float]]) -> dict[str, list[float]]:
    """The ratios of ``main`` taken within each round: round i's runs (CPU seconds) against each other.

    Why beside the best-of ratios: on a shared machine one child in a round may run on a quiet core and the
    next on a busy one; the best of each variant can then come from different rounds, and one lucky run of
    the denominator moves the ratio by 10 % (docs/benchmarks.md shows runs of one variant 4.8-7.1 CPU-s).
    The runs of one round sit minutes apart, so their ratio keeps less of the drift, and the median of the
    rounds drops the odd round."""
    n = min(len(v) for v in cpu.values())
    out: dict[str, list[float]] = {}
    for i in range(n):
        # events/s up to the same event count: ratios of rates do not need it
        for k, v in ratios({name: 1 / runs[i] for name, runs in cpu.items()}).items():
            out.setdefault(k, []).append(round(v, 3))
    return out


def mean_ratios(cpu: dict[str, list[float]]) -> dict[str, float]:
    """The ratios of ``main`` on each variant's mean CPU seconds over all its runs.

    Why a third reading: on a machine whose runs of one variant spread by half (docs/benchmarks.md,
    2026-12-07: 3.81-5.81 CPU-s), the best-of ratio rests on one run per variant and a round's ratio on one
    run each; the means use every run, so no single lucky or unlucky run decides."""
    return ratios({name: 1 / statistics.mean(runs) for name, runs in cpu.items()})


def ratios(rate: dict[str, float]) -> dict[str, float]:
    """Every ratio the bench reports, of one set of rates (events/s by variant): the best runs' in ``main``,
    one round's in ``paired_ratios``. With ``then`` variants (``--against``), also the issue's ``target``."""
    out = {"full/plain": rate["full"] / rate["plain"], "base/plain": rate["base"] / rate["plain"],
           "full/base": rate["full"] / rate["base"]}
    if "then base" in rate:
        then = rate["then base"] / rate["then plain"]
        out |= {"then base/plain": then, "target": out["full/plain"] / then,
                "full/then base": rate["full"] / rate["then base"]}
    return out


def stage_table(stages: dict[str, dict[str, float]]) -> str:
    """The stages (rows, in the order they run) of each variant (columns), µs per event of its best run;
    indented rows are parts of the row above them, "-" where that tree has no such stage."""
    seen = {k for per_variant in stages.values() for k in per_variant}
    steps = sorted(k for k in seen if k.startswith("  ") and k not in ("  encode", "  insert"))
    rows = [k for k in ("read", "enrichment", *steps, "baselines", "store write", "  encode", "  insert") if k in seen]
    names = list(stages)
    lines = ["stages, us per event (best run): " + "".join(f"{n:>12}" for n in names)]
    for row in rows:
        cells = "".join(f"{stages[n][row]:>12.1f}" if row in stages[n] else f"{'-':>12}" for n in names)
        lines.append(f"  {row:<31}{cells}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
