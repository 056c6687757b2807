"""Cost of per-user baselines at ingest, by hand:

    .venv/bin/python bench/bench_baselines.py [--users 600] [--days 35] [--batch 1000] [--repeat 2] [--ref REV]

A generated hospital (fixed seed: day staff Mon-Fri, rotating night nurses, billing with many patients;
flat audit records) is written to an NDJSON file and ingested the way ``wardwatch ingest`` does it (the
``ndjson`` connector, ``ingest_connector``, a fresh SQLite store) twice per repeat, in the same run: without
baselines (the baseline) and with ``enrichment.baselines`` (engine/baselines). ``--source list`` hands the
parsed events over directly instead (the store write alone as the denominator: the harshest ratio).
Reports events/s per CPU second of the process (best of ``--repeat``; wall clock on a shared machine
is noise), the ratio, the fact events written, and peak RSS. ``--ref REV`` also runs the baseline step of
git revision REV (its engine/baselines/ files, loaded as a separate package), interleaved with the other two:
a before/after of the step in one run.
"""

from __future__ import annotations

import argparse
import importlib
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from connectors.base import Batch, Connector  # noqa: E402
from connectors.ndjson import NdjsonFileConnector  # noqa: E402
from engine.baselines.facts import DATASET  # noqa: E402
from engine.enrich import EnrichmentChain  # noqa: E402
from engine.events import format_timestamp  # noqa: E402
from engine.ingest import ingest_connector  # noqa: E402
from engine.store import open_store  # noqa: E402
from engine.store.base import SearchQuery  # noqa: E402

START = datetime(2026, 10, 5, tzinfo=timezone.utc)


class ListConnector(Connector):
    """Hands out a fixed list of events in order; the cursor is the position (tests use it too)."""

    type_name = "bench-list"

    def __init__(self, name: str, events: list[dict[str, Any]]):
        super().__init__(name, {})
        self.events = events

    def read(self, cursor: dict[str, Any] | None, max_events: int) -> Batch:
        pos = (cursor or {}).get("pos", 0)
        chunk = self.events[pos:pos + max_events]
        return Batch(events=[dict(e) for e in chunk], cursor={"pos": pos + len(chunk)},
                     exhausted=pos + len(chunk) >= len(self.events))


def hospital(users: int, days: int, seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    kinds = ["day"] * 6 + ["night"] * 3 + ["billing"]
    staff = [(f"u{i:05d}", kinds[i % len(kinds)]) for i in range(users)]
    roles = {"day": "physician", "night": "night-nurse", "billing": "billing"}
    events = []
    for d in range(days):
        day = START + timedelta(days=d)
        for user, kind in staff:
            if kind == "night":
                if (d + int(user[1:])) % 3 == 0:
                    continue
                span, per = (22, 30), rng.randint(10, 20)
            elif day.weekday() >= 5:
                continue
            else:
                span, per = ((9, 17), rng.randint(40, 70)) if kind == "billing" else ((8, 16), rng.randint(15, 30))
            for n in range(per):
                when = day + timedelta(hours=rng.uniform(*span))
                patient = f"MRN{rng.randint(1, 50_000):06d}"
                ts = format_timestamp(when)
                events.append({
                    "@timestamp": ts, "event.id": f"{user}-{ts}-{n}", "event.dataset": "ehr.audit",
                    "event.action": "read", "event.outcome": "success", "user.name": user,
                    "user.id": user.upper(), "ehr.user.role": roles[kind], "ehr.patient.id": patient,
                    "source.ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                    "host.name": f"ws-{rng.randint(1, 900):04d}", "url.path": f"/fhir/Patient/{patient}",
                })
    events.sort(key=lambda e: (e["@timestamp"], e["event.id"]))
    return events


def reference_step(rev: str, work: Path) -> Any:
    """The ``engine.baselines`` step module of git revision ``rev``, importable next to the current one."""
    package = work / "_ref_baselines"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("facts", "model", "step"):
        text = subprocess.run(["git", "show", f"{rev}:engine/baselines/{name}.py"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
        (package / f"{name}.py").write_text(text.replace("from engine.baselines.", "from _ref_baselines."))
    sys.path.insert(0, str(work))
    return importlib.import_module("_ref_baselines.step")


def ingest(events: list[dict[str, Any]], step: Any, batch: int, source: Path | None) -> tuple[float, int]:
    """CPU seconds and fact events of one ingest; ``step``: None (plain) or a module with the step classes."""
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store("sqlite", path=Path(tmp) / "bench.db")
        chain = EnrichmentChain([])
        if step is not None:
            chain.baselines = step.Baselines(step.BaselineOptions())  # type: ignore[attr-defined]
        connector: Connector = (ListConnector("ehr", events) if source is None else
                                NdjsonFileConnector("ehr", {"path": str(source), "dataset": "ehr.audit"}))
        t = time.process_time()  # CPU time of this process: robust on a shared machine; the store is local
        ingest_connector(store, connector, chain, batch)
        seconds = time.process_time() - t
        facts = sum(1 for _ in store.search(SearchQuery(datasets=[DATASET], fields=["event.id"])))
        store.close()
    return seconds, facts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--days", type=int, default=35)
    parser.add_argument("--batch", type=int, default=5000)  # the engine's default batch_size
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--source", choices=["ndjson", "list"], default="ndjson")
    parser.add_argument("--ref", help="also run the baseline step of this git revision (before/after)")
    args = parser.parse_args()
    events = hospital(args.users, args.days)
    work = tempfile.TemporaryDirectory()
    source = None
    if args.source == "ndjson":
        source = Path(work.name) / "audit.ndjson"
        with source.open("wb") as fh:
            for e in events:
                fh.write(orjson.dumps(e) + b"\n")
    print(f"{len(events):,} events, {args.users} users, {args.days} days, batch {args.batch}, source {args.source}")
    steps: dict[str, Any] = {"without": None, "with": importlib.import_module("engine.baselines.step")}
    if args.ref:
        steps[f"with {args.ref}"] = reference_step(args.ref, Path(work.name))
    best = dict.fromkeys(steps, float("inf"))
    facts = 0
    for _ in range(args.repeat):
        for name, step in steps.items():  # interleaved: all see the same machine state
            seconds, n = ingest(events, step, args.batch, source)
            best[name] = min(best[name], seconds)
            facts = max(facts, n)
    plain = len(events) / best["without"]
    print(f"without baselines: {plain:,.0f} events/s (CPU time)")
    for name in list(steps)[1:]:
        based = len(events) / best[name]
        print(f"{name} baselines: {based:,.0f} events/s  ({based / plain:.1%} of the baseline)")
    print(f"{facts:,} fact events = {facts / len(events):.1%} of the events")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
