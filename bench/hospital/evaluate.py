"""Run the product on the generated hospital and score its alerts against the ground truth.

Why a subprocess running ``wardwatch run --once``: the figures must be what a site gets from the shipped
CLI, config loader, connector, enrichment, rules and store, not from a hand-wired pipeline. The config is
built from the knobs ``docs/enrichment.md`` documents; knobs other parts of issue 11 add later (encounters,
roles, baselines, cases) are taken when the doc shows them (see ``optional_knobs``), and a knob the
installed engine refuses is dropped and reported, so the benchmark runs on every revision.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import yaml

from bench.hospital.incidents import EXPECTED_RULE

ROOT = Path(__file__).resolve().parents[2]
RULE_DIRS = [ROOT / "rules" / "privacy", ROOT / "rules" / "healthcare"]


def optional_knobs(doc: Path = ROOT / "docs" / "enrichment.md") -> dict[str, Any]:
    """Dotted config paths (under ``enrichment``) the doc's YAML examples show for the newer context
    sources, mapped to our files: any key naming an encounter file (``*encounter*`` with a CSV/NDJSON value)
    points to ``encounters.csv``; a documented ``enrichment.baselines`` block is switched on with the
    hospital's time zone (its other knobs keep their documented defaults). Cases need no knob: the engine's
    defaults apply and the score reads them from the store when it has them."""
    found: dict[str, Any] = {}
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
        try:
            data = yaml.safe_load(block)
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and isinstance(data.get("enrichment"), dict):
            _walk(data["enrichment"], "enrichment", found)
            if "baselines" in data["enrichment"]:
                found["enrichment.baselines.timezone"] = "Europe/Berlin"
    return found


def _walk(node: dict, prefix: str, found: dict[str, Any]) -> None:
    for key, value in node.items():
        path = f"{prefix}.{key}"
        if isinstance(value, dict) and not key.endswith("_columns"):
            _walk(value, path, found)
        elif isinstance(value, str) and "encounter" in key.lower() and re.search(r"\.(csv|ndjson)$", value):
            found[path] = "encounters.csv" if value.endswith(".csv") else None
    for path in [p for p, v in found.items() if v is None]:
        del found[path]


def build_config(out: Path, knobs: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "store": {"kind": "sqlite", "sqlite": {"path": str(out / "wardwatch.db")}},
        "rules": {"paths": [str(p) for p in RULE_DIRS]},
        "connectors": [{"name": "ehr-audit", "type": "fhir-auditevent-file", "path": str(out / "audit")}],
        "enrichment": {
            "working_hours": {"timezone": "Europe/Berlin", "start": "07:00", "end": "19:00",
                              "days": ["mon", "tue", "wed", "thu", "fri"]},
            "privacy": {"roster_csv": "roster.csv", "patients_csv": "patients.csv", "vip_list_file": "vip.txt",
                        "timezone": "Europe/Berlin", "emergency_departments": ["Emergency"]},
        },
        "alerts": {"sinks": [{"type": "jsonl", "path": str(out / "alerts.jsonl")}], "evidence_cap": 100000},
        "logging": {"level": "warning", "format": "json"},
    }
    for dotted, value in knobs.items():
        node = config
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return config


def _wardwatch(*args: str) -> list[str]:
    exe = Path(sys.executable).with_name("wardwatch")
    if exe.exists():
        return [str(exe), *args]
    return [sys.executable, "-c", "import sys; from engine.cli import main; sys.exit(main())", *args]


def configure(out: Path, extra: dict[str, Any] | None = None, doc_knobs: bool = True
              ) -> tuple[Path, list[str], list[str]]:
    """Write ``wardwatch.yaml``; drop documented knobs the engine refuses. ``extra``: knobs set by hand
    (``--set``), never dropped; ``doc_knobs=False``: only the base privacy config (roster, patients, VIPs,
    working hours), for a before/after comparison. Returns (path, knobs used, knobs dropped)."""
    knobs, dropped = (optional_knobs() if doc_knobs else {}), []
    cfg = out / "wardwatch.yaml"
    while True:
        cfg.write_text(yaml.safe_dump(build_config(out, {**knobs, **(extra or {})}), sort_keys=False),
                       encoding="utf-8")
        check = subprocess.run(_wardwatch("--config", str(cfg), "config", "check"), capture_output=True,
                               text=True, cwd=out)
        if check.returncode == 0:
            return cfg, sorted({**knobs, **(extra or {})}), dropped
        text = check.stderr + check.stdout
        bad = [k for k in knobs if k in text or (k.count(".") > 2 and k.rsplit(".", 1)[0] in text)
               or (k.startswith("enrichment.baselines") and "enrichment.baselines" in text)]
        if not bad or extra and any(k in text for k in extra):
            raise RuntimeError(f"generated config refused: {check.stderr.strip() or check.stdout.strip()}")
        for k in bad:
            dropped.append(k)
            del knobs[k]


def site_config(out: Path, path: Path) -> Path:
    """A config a site wrote (``--config``), as ``out/wardwatch.yaml``: relative paths in it then resolve
    against ``out``, where the hospital's files are. Only what the score needs is replaced: the store (the
    score reads it), the rule directories (the shipped rules are what is measured; the site's
    ``rules.placeholders`` stay), the alert sinks, the evidence cap and logging."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise RuntimeError(f"{path}: expected a YAML mapping at the top")
    ours = build_config(out, {})
    data["store"] = ours["store"]
    data["rules"] = {**(data.get("rules") or {}), "paths": ours["rules"]["paths"]}
    data["alerts"] = {**(data.get("alerts") or {}), **ours["alerts"]}
    data["logging"] = ours["logging"]
    cfg = out / "wardwatch.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    check = subprocess.run(_wardwatch("--config", str(cfg), "config", "check"), capture_output=True, text=True,
                           cwd=out)
    if check.returncode != 0:
        raise RuntimeError(f"{path}: refused: {check.stderr.strip() or check.stdout.strip()}")
    return cfg


def run_product(out: Path, extra: dict[str, Any] | None = None, doc_knobs: bool = True,
                config: Path | None = None) -> tuple[float, list[str], list[str]]:
    """``wardwatch run --once`` on the generated config, or on ``config`` (a site's, see ``site_config``);
    returns (seconds, knobs used, knobs dropped)."""
    if config is not None:
        cfg, used, dropped = site_config(out, config), [f"--config {config}"], []
    else:
        cfg, used, dropped = configure(out, extra, doc_knobs)
    t = time.perf_counter()
    with (out / "run.stdout").open("w") as stdout, (out / "run.stderr").open("w") as stderr:
        rc = subprocess.run(_wardwatch("--config", str(cfg), "run", "--once"), stdout=stdout, stderr=stderr,
                            cwd=out).returncode
    seconds = time.perf_counter() - t
    if rc != 0:
        raise RuntimeError(f"wardwatch run --once exited {rc}: {(out / 'run.stderr').read_text()[-2000:]}")
    return seconds, used, dropped


def rule_names() -> dict[str, str]:
    """Rule id -> name, straight from the YAML: loading through engine.sigma would need the run's
    placeholders (``|expand``), and only the names are wanted here."""
    names = {}
    for directory in RULE_DIRS:
        for path in sorted(directory.rglob("*.yml")):
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if isinstance(doc, dict) and doc.get("id") and doc.get("name"):
                    names[str(doc["id"])] = str(doc["name"])
    return names


def score(out: Path, accesses: int) -> dict[str, Any]:
    """Recall per incident kind, false alerts (and cases) per 100k accesses per rule."""
    truth = json.loads((out / "ground_truth.json").read_text(encoding="utf-8"))
    names = rule_names()
    db = sqlite3.connect(out / "wardwatch.db")
    incident_of: dict[str, int] = {}   # event.id -> index in truth
    by_audit = {aid: i for i, t in enumerate(truth) for aid in t["audit_ids"]}
    for event_id, doc in db.execute("SELECT id, doc FROM events WHERE instr(doc, ?) > 0",
                                    (b'"ehr.audit.id":"inc-',)):
        aid = json.loads(doc).get("ehr.audit.id")
        if aid in by_audit:
            incident_of[event_id] = by_audit[aid]
    alerts = [json.loads(doc) for (doc,) in db.execute("SELECT doc FROM alerts")]
    per_100k = 100_000 / max(1, accesses)
    detected: dict[int, set[str]] = defaultdict(set)
    false_by_rule: Counter[str] = Counter()
    total_by_rule: Counter[str] = Counter()
    true_alert_ids: dict[str, set[int]] = {}   # alert id -> the incidents in its evidence
    for alert in alerts:
        rule = names.get(alert["rule_id"], alert["rule_id"])
        total_by_rule[rule] += 1
        hits = {incident_of[e] for e in alert.get("evidence", []) if e in incident_of}
        for i in hits:
            detected[i].add(rule)
        if hits:
            true_alert_ids[alert["id"]] = hits
        else:
            false_by_rule[rule] += 1
    kinds: dict[str, dict[str, Any]] = {}
    for i, t in enumerate(truth):
        k = kinds.setdefault(t["kind"], {"injected": 0, "detected": 0, "expected_rule": t["expected_rule"],
                                         "rules": Counter()})
        k["injected"] += 1
        if t["expected_rule"] in detected.get(i, set()):
            k["detected"] += 1
        k["rules"].update(detected.get(i, set()))
    cases = _cases(db, true_alert_ids, per_100k, names)
    seen = cases.pop("_seen") if cases is not None else set()
    for i, t in enumerate(truth):
        if cases is not None:   # the incident is in a case a privacy officer reads
            kinds[t["kind"]]["in_case"] = kinds[t["kind"]].get("in_case", 0) + (i in seen)
    for k in kinds.values():
        k["recall"] = k["detected"] / k["injected"]
        k["rules"] = dict(sorted(k["rules"].items()))
    rules = {r: {"alerts": total_by_rule[r], "false": false_by_rule[r],
                 "false_per_100k": round(false_by_rule[r] * per_100k, 1)} for r in sorted(total_by_rule)}
    report = {"accesses": accesses, "alerts": len(alerts), "false_alerts": sum(false_by_rule.values()),
              "false_alerts_per_100k": round(sum(false_by_rule.values()) * per_100k, 1),
              "recall": {k: v for k, v in sorted(kinds.items())}, "rules": rules,
              "cases": cases}
    db.close()
    return report


def _cases(db: sqlite3.Connection, true_alert_ids: dict[str, set[int]], per_100k: float,
           names: dict[str, str]) -> dict[str, Any] | None:
    """Cases, if the store keeps them (issue 11 part 4): the ``cases`` table, one JSON ``doc`` per case
    naming its ``alerts`` and ``rules``. A case is true when one of its alerts is a true alert; a false
    case counts against every rule in it. None when the engine has no cases (yet)."""
    tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "cases" not in tables:
        return None
    total = false = 0
    seen: set[int] = set()   # incidents (index in the ground truth) that are in some case
    false_by_rule: Counter[str] = Counter()
    by_rule: Counter[str] = Counter()   # cases holding an alert of the rule
    for (doc,) in db.execute("SELECT doc FROM cases"):
        total += 1
        case = json.loads(doc)
        if isinstance(case, dict) and isinstance(case.get("alerts"), list):
            named = [a for a in case["alerts"] if a in true_alert_ids]
        else:   # an unknown layout: any true alert id named anywhere in the case
            named = [a for a in true_alert_ids if a in str(doc)]
        for a in named:
            seen |= true_alert_ids[a]
        true = bool(named)
        false += not true
        for rule in case.get("rules", []) if isinstance(case, dict) else []:
            rid = rule.get("id") if isinstance(rule, dict) else str(rule)
            by_rule[names.get(rid, rid)] += 1
            if not true:
                false_by_rule[names.get(rid, rid)] += 1
    return {"cases": total, "false": false, "per_100k": round(total * per_100k, 1),
            "false_per_100k": round(false * per_100k, 1),
            "per_100k_by_rule": {r: round(n * per_100k, 1) for r, n in sorted(by_rule.items())},
            "false_per_100k_by_rule": {r: round(false_by_rule[r] * per_100k, 1) for r in sorted(by_rule)},
            "_seen": seen}
