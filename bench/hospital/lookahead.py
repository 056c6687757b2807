"""What-if for the co-worker/VIP *hold* (engine/alerts/hold.py, issue 11) at other settings: how many false
cases of a finished ``detection_quality`` run would look-ahead spare, and which true incidents would it lose?
(It spares from the cases the run made, so replay a run made without the hold, or with a shorter one.)

A helper's first chart on another ward fires the co-worker or VIP rule because at ingest only the past is
known (``ehr.relationship.worked_department`` looks back). A hold would decide such an alert once the events
of the next ``--hours`` are in, and spare it when the same user opened at least ``--min-patients`` *other*
patients of the patient's department in them. This reads a run's store (``--out`` of detection_quality.py),
applies that rule offline to the co-worker and VIP alerts, and recounts cases and recall, so the window can be
chosen on evidence before anything is built. It reads ground truth only to score, like evaluate.py.

    python -m bench.hospital.lookahead --hours 2 --min-patients 2 /tmp/dq-s1 /tmp/dq-s2
"""

from __future__ import annotations

import argparse
import bisect
import json
import sqlite3
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.hospital.evaluate import rule_names

HELD_RULES = frozenset({"ehr_privacy_coworker_record", "ehr_privacy_vip_record"})


def _ms(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def what_if(out: Path, hours: float, min_patients: int) -> dict[str, Any]:
    """False cases before and after sparing held alerts, true cases and expected-rule detections lost."""
    names = rule_names()
    truth = json.loads((out / "ground_truth.json").read_text(encoding="utf-8"))
    incident = {aid: i for i, t in enumerate(truth) for aid in t["audit_ids"]}
    db = sqlite3.connect(out / "wardwatch.db")
    events: dict[str, dict[str, Any]] = {}
    ward_reads: dict[str, list[tuple[int, str, str]]] = defaultdict(list)   # user -> (ms, department, patient)
    for eid, doc in db.execute("SELECT id, doc FROM events"):
        d = json.loads(doc)
        events[eid] = d
        if d.get("user.name") and d.get("ehr.patient.department"):
            ward_reads[d["user.name"]].append((_ms(d["@timestamp"]), d["ehr.patient.department"],
                                               str(d.get("ehr.patient.id"))))
    for reads in ward_reads.values():
        reads.sort()
    span = int(hours * 3_600_000)

    def spared_event(eid: str) -> bool:
        d = events.get(eid) or {}
        user, dept = d.get("user.name"), d.get("ehr.patient.department")
        if not user or not dept:
            return False
        t, reads, others = _ms(d["@timestamp"]), ward_reads[user], set()
        i = bisect.bisect_right(reads, (t, "\uffff"))
        while i < len(reads) and reads[i][0] <= t + span:
            if reads[i][1] == dept and reads[i][2] != str(d.get("ehr.patient.id")):
                others.add(reads[i][2])
            i += 1
        return len(others) >= min_patients

    alerts: dict[str, dict[str, Any]] = {}
    for aid, rid, doc in db.execute("SELECT id, rule_id, doc FROM alerts"):
        alert = json.loads(doc)
        alert["_rule"] = names.get(rid, rid)
        alert["_true"] = any(events.get(e, {}).get("ehr.audit.id") in incident for e in alert["evidence"])
        alert["_spared"] = alert["_rule"] in HELD_RULES and all(spared_event(e) for e in alert["evidence"])
        alerts[aid] = alert
    false_before = false_after = 0
    lost_cases: list[str] = []
    for (doc,) in db.execute("SELECT doc FROM cases"):
        case = json.loads(doc)
        members = [alerts[a] for a in case["alerts"] if a in alerts]
        kept = [a for a in members if not a["_spared"]]
        if any(a["_true"] for a in members):
            if not any(a["_true"] for a in kept):
                lost_cases.append(case["subject"])
        else:
            false_before += 1
            false_after += bool(kept)
    detected: dict[int, set[str]] = defaultdict(set)
    for alert in alerts.values():
        if not alert["_spared"]:
            for e in alert["evidence"]:
                aid = events.get(e, {}).get("ehr.audit.id")
                if aid in incident:
                    detected[incident[aid]].add(alert["_rule"])
    accesses = sum(1 for d in events.values() if d.get("ehr.audit.id"))
    db.close()
    per = 100_000 / max(1, accesses)
    return {"accesses": accesses, "false_cases": [false_before, false_after],
            "false_per_100k": [round(false_before * per, 1), round(false_after * per, 1)],
            "true_cases_lost": lost_cases,
            "recall_lost": [t["kind"] for i, t in enumerate(truth) if t["expected_rule"] not in detected[i]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--min-patients", type=int, default=2)
    parser.add_argument("runs", nargs="+", type=Path, help="--out directories of detection_quality.py")
    args = parser.parse_args()
    for out in args.runs:
        r = what_if(out, args.hours, args.min_patients)
        print(f"{out}: {args.hours:g} h, {args.min_patients} other patients: false cases {r['false_cases'][0]} -> "
              f"{r['false_cases'][1]} ({r['false_per_100k'][0]} -> {r['false_per_100k'][1]} /100k), "
              f"true cases lost {r['true_cases_lost'] or 'none'}, recall lost {r['recall_lost'] or 'none'}")


if __name__ == "__main__":
    main()
