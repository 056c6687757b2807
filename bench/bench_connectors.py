"""Events/s of each connector, one run each (parse to Batch, no store).

    .venv/bin/python bench/bench_connectors.py [--rows 200000] [--fhir-events 20000]

ndjson and fhir-auditevent-file read generated files of --rows lines (flat VPN-like events; FHIR
AuditEvents as bench_pipeline.py makes them). atna-syslog over the network: bench/bench_syslog.py.

ehr-csv reads a generated Epic-style access log (200k rows, timestamps with a strptime format and a time
zone, value maps). fhir-auditevent pulls R4 AuditEvents from the local FHIR-like test server
(tests/test_connector_fhir_rest.py) over loopback HTTP; the server serialises pages in the same process, so
the number is a lower bound for the connector itself.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.ehr_csv import EhrCsvConnector  # noqa: E402
from connectors.fhir_rest import FhirAuditEventRestConnector  # noqa: E402


def _drain(connector: object) -> int:
    cursor, total = None, 0
    while True:
        batch = connector.read(cursor, 5000)  # type: ignore[attr-defined]
        total += len(batch.events)
        cursor = batch.cursor
        if batch.exhausted:
            return total


def bench_files(rows: int) -> None:
    from bench.bench_pipeline import generate
    from connectors.fhir_file import FhirAuditEventFileConnector
    from connectors.ndjson import NdjsonFileConnector

    import orjson

    with tempfile.TemporaryDirectory() as tmp:
        flat = Path(tmp) / "vpn.ndjson"
        with open(flat, "wb") as out:
            for i in range(rows):
                out.write(orjson.dumps({
                    "@timestamp": f"2026-11-02T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
                    "event.dataset": "vpn.auth", "event.category": ["authentication"], "event.action": "vpn-login",
                    "event.outcome": "failure" if i % 9 == 0 else "success", "user.name": f"user{i % 3000}",
                    "source.ip": f"203.0.{i % 250}.{i % 199 + 1}", "observer.vendor": "Fortinet",
                    "event.original": f"date=2026-11-02 type=event subtype=vpn user=user{i % 3000} action=login "
                                      f"status=success remip=203.0.{i % 250}.{i % 199 + 1} reason=none"}) + b"\n")
        fhir = Path(tmp) / "auditevents.ndjson"
        generate(fhir, rows)
        for label, connector, path in (("ndjson", NdjsonFileConnector, flat),
                                       ("fhir-auditevent-file", FhirAuditEventFileConnector, fhir)):
            started = time.perf_counter()
            n = _drain(connector("bench", {"path": str(path)}))
            elapsed = time.perf_counter() - started
            print(f"{label + ':':21} {n} lines ({path.stat().st_size / 1e6:.1f} MB) in {elapsed:.2f} s = "
                  f"{n / elapsed:,.0f} events/s")


def bench_csv(rows: int) -> float:
    rnd = random.Random(1)
    metrics = ["Chart Review", "Patient Lookup", "Print, Report", "Export", "Notes Viewed", "Results Review"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "access_log_20260301.csv"
        t = datetime(2026, 3, 1, 0, 0, 0)
        with path.open("w", encoding="utf-8", newline="") as fh:
            fh.write("ACCESS_TIME,USER_ID,PAT_ID,METRIC_NAME,WORKSTATION_ID,ACCESS_INSTANT,BTG_FLAG\r\n")
            for i in range(rows):
                t += timedelta(milliseconds=rnd.randint(0, 900))
                metric = rnd.choice(metrics)
                metric = f'"{metric}"' if "," in metric else metric
                fh.write(f"{t:%Y-%m-%d %H:%M:%S},U{rnd.randint(1000, 5000)},Z{rnd.randint(100000, 999999)},"
                         f"{metric},WS-{rnd.randint(1, 400):04d},{i},{'Y' if i % 997 == 0 else 'N'}\r\n")
        conn = EhrCsvConnector("bench", {
            "path": tmp, "timestamp_format": "%Y-%m-%d %H:%M:%S", "timezone": "America/Chicago",
            "columns": {"ACCESS_TIME": "@timestamp", "USER_ID": "user.name", "PAT_ID": "ehr.patient.id",
                        "METRIC_NAME": ["event.action", "ehr.metric"], "WORKSTATION_ID": "host.name",
                        "BTG_FLAG": "ehr.break_the_glass"},
            "value_maps": {"event.action": {"Chart Review": "read", "Patient Lookup": "search",
                                            "Print, Report": "print", "Export": "export"},
                           "BTG_FLAG": {"Y": True, "N": False}},
        })
        size = path.stat().st_size
        start = time.perf_counter()
        cursor, n, dead = None, 0, 0
        while True:
            batch = conn.read(cursor, 10_000)
            n += len(batch.events)
            dead += len(batch.dead_letters)
            cursor = batch.cursor
            if batch.exhausted:
                break
        elapsed = time.perf_counter() - start
    assert n == rows and dead == 0, (n, dead)
    rate = n / elapsed
    print(f"ehr-csv:         {n} rows ({size / 1e6:.1f} MB) in {elapsed:.2f} s = {rate:,.0f} events/s")
    return rate


def bench_fhir(count: int) -> float:
    from tests.test_connector_fhir_rest import FhirTestServer, audit_event

    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    with FhirTestServer(max_count=1000) as server:
        server.add(*[audit_event(i, t0 + timedelta(milliseconds=50 * i), user=f"u{i % 300}", patient=f"P{i % 5000}")
                     for i in range(count)])
        conn = FhirAuditEventRestConnector("bench", {"base_url": server.base_url, "page_size": 1000})
        start = time.perf_counter()
        cursor, n = None, 0
        while True:
            batch = conn.read(cursor, 5000)
            n += len(batch.events)
            cursor = batch.cursor
            if batch.exhausted:
                break
        elapsed = time.perf_counter() - start
        conn.close()
    assert n == count, n
    rate = n / elapsed
    print(f"fhir-auditevent: {n} AuditEvents ({count // 1000} pages of 1000) in {elapsed:.2f} s = {rate:,.0f} events/s"
          " (server in the same process)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--fhir-events", type=int, default=20_000)
    args = parser.parse_args()
    bench_files(args.rows)
    bench_csv(args.rows)
    bench_fhir(args.fhir_events)


if __name__ == "__main__":
    main()
