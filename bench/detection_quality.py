"""Detection quality on a generated hospital (issue 11): recall per injected incident kind, false alerts
(and cases, once the engine has them) per 100k accesses per rule, and run time.

    .venv/bin/python bench/detection_quality.py                       # 1,000 staff, 7 days (~1-2 min)
    .venv/bin/python bench/detection_quality.py --staff 1200 --days 30   # the full month
    .venv/bin/python bench/detection_quality.py --json                # the report as JSON on stdout
    .venv/bin/python bench/detection_quality.py --base-config         # without the newer context knobs
    .venv/bin/python bench/detection_quality.py --dialect de --config site.yaml   # a German site's extracts

``--dialect de`` writes the lookup files as a German site exports them (bench/hospital/dialect.py: German
columns, titles and wards, Windows-1252, with a SITE.md describing them) instead of the documented defaults;
the same hospital otherwise. It needs ``--config``: a config written for those files, e.g. from
docs/enrichment.md alone (how the held-out scenario of issue 11 is configured).

It builds the hospital (bench/hospital/), writes FHIR AuditEvent NDJSON and the lookup files to --out, runs
``wardwatch run --once`` there with a config made from docs/enrichment.md's knobs, and scores the alerts in
the store against ground_truth.json. Same --seed, same hospital, same figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.hospital import activity, dialect, evaluate, incidents, output, population  # noqa: E402


def generate(out: Path, staff: int, days: int, seed: int, per_kind: int, site_dialect: str = "en") -> dict:
    """Build the hospital and write its files under ``out`` (emptied first), in ``site_dialect`` ("en":
    the documented default columns; "de": bench/hospital/dialect.py). Returns the counts."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    h = population.build(staff, days, seed)
    injected = incidents.inject(h, per_kind)           # first: an incident may end a contract or rename
    accesses = activity.ordinary(h) + [a for i in injected for a in i.accesses]
    counts = output.write_all(h, accesses, injected, out)
    if site_dialect == "de":
        dialect.write_german(out, {s.user_id: s.given_name for s in h.staff})
    return counts


def run(out: Path, staff: int, days: int, seed: int, per_kind: int, extra: dict | None = None,
        doc_knobs: bool = True, config: Path | None = None, site_dialect: str = "en") -> dict:
    t = time.perf_counter()
    counts = generate(out, staff, days, seed, per_kind, site_dialect)
    gen_s = time.perf_counter() - t
    run_s, used, dropped = evaluate.run_product(out, extra, doc_knobs, config)
    report = evaluate.score(out, counts["accesses"])
    report.update({"params": {"staff": staff, "days": days, "seed": seed, "incidents_per_kind": per_kind,
                              "dialect": site_dialect},
                   "counts": counts, "generate_seconds": round(gen_s, 1), "run_seconds": round(run_s, 1),
                   "events_per_second": round(counts["accesses"] / run_s),
                   "peak_rss_mb_wardwatch": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
                   "optional_knobs": used, "dropped_knobs": dropped})
    return report


def table(r: dict) -> str:
    p, c = r["params"], r["counts"]
    lines = [f"hospital: {c['staff']} staff, {c['patients']} patients, {c['encounters']} encounters, {p['days']} days,"
             f" seed {p['seed']}: {c['accesses']} accesses, {c['incidents']} injected incidents",
             f"run: wardwatch run --once {r['run_seconds']} s ({r['events_per_second']} events/s, peak RSS "
             f"{r['peak_rss_mb_wardwatch']} MB); generation {r['generate_seconds']} s",
             f"optional knobs from docs/enrichment.md: {', '.join(r['optional_knobs']) or 'none'}"
             + (f" (refused by the engine: {', '.join(r['dropped_knobs'])})" if r["dropped_knobs"] else ""),
             "", f"{'incident kind':<26}{'recall':>9}  expected rule / rules that fired"]
    for kind, k in r["recall"].items():
        in_case = f" ({k['in_case']} in cases)" if "in_case" in k else ""
        lines.append(f"{kind:<26}{k['detected']:>4}/{k['injected']:<4}  {k['expected_rule']}{in_case}"
                     + (f"  [{', '.join(k['rules'])}]" if set(k["rules"]) - {k["expected_rule"]} else ""))
    lines += ["", f"{'rule':<40}{'alerts':>8}{'false':>8}{'false/100k':>12}"]
    for rule, v in r["rules"].items():
        lines.append(f"{rule:<40}{v['alerts']:>8}{v['false']:>8}{v['false_per_100k']:>12}")
    lines.append(f"{'total':<40}{r['alerts']:>8}{r['false_alerts']:>8}{r['false_alerts_per_100k']:>12}")
    cases = r["cases"]
    if cases is None:
        lines.append("\ncases: the engine keeps no cases (issue 11 part 4 not there)")
    else:
        lines.append(f"\ncases: {cases['cases']} ({cases['per_100k']}/100k), false {cases['false']} "
                     f"({cases['false_per_100k']}/100k); per rule in them:")
        lines.append(f"  {'rule':<38}{'cases/100k':>12}{'false/100k':>12}")
        lines += [f"  {rule:<38}{n:>12}{cases['false_per_100k_by_rule'][rule]:>12}"
                  for rule, n in cases["per_100k_by_rule"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--staff", type=int, default=1000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--incidents-per-kind", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "detection_quality")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--set", action="append", default=[], metavar="DOTTED.KEY=YAML",
                    help="a config knob by hand, e.g. enrichment.privacy.encounters_csv=encounters.csv "
                         "(relative paths: against --out)")
    ap.add_argument("--base-config", action="store_true",
                    help="only the base privacy config (roster, patients, VIPs, working hours): ignore the "
                         "newer context knobs docs/enrichment.md shows, for a before/after comparison")
    ap.add_argument("--dialect", choices=["en", "de"], default="en",
                    help="the lookup files as the documented defaults (en) or as a German site exports them "
                         "(de: needs --config)")
    ap.add_argument("--config", type=Path, metavar="SITE.yaml",
                    help="run with this config instead of the generated one (relative paths: against --out; "
                         "store, rule paths, sinks and logging are the benchmark's)")
    args = ap.parse_args(argv)
    if args.dialect != "en" and args.config is None:
        ap.error(f"--dialect {args.dialect} needs --config: the generated config names the default files")
    if args.config is not None and (args.set or args.base_config):
        ap.error("--config is the whole config: --set and --base-config do not apply to it")
    extra = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set {item!r}: expected DOTTED.KEY=VALUE")
        extra[key.strip()] = yaml.safe_load(value)
    if args.staff < 60 or args.days < 2:
        ap.error("--staff must be >= 60 and --days >= 2 (every incident kind needs its actors)")
    report = run(args.out.resolve(), args.staff, args.days, args.seed, args.incidents_per_kind, extra,
                 not args.base_config, args.config.resolve() if args.config else None, args.dialect)
    (args.out / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(json.dumps(report, indent=1) if args.json else table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
