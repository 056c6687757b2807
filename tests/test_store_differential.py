"""The same rule pack over the same data gives identical alerts on SQLite and on Elasticsearch.

One evaluator decides on every store, so this must hold exactly (ids and contents). The extra events below
probe where stores usually disagree: case variants (Sigma matches case-insensitively; Elasticsearch keyword
fields and SQLite ``=`` do not, unless made to), absent fields, and wildcard/endswith filters.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import yaml

from engine.app import build_app
from engine.config import load_config
from engine.evaluation import run_all
from engine.ingest import ingest_connector
from tests.conftest import demo_connectors, require_elasticsearch

ROOT = Path(__file__).resolve().parent.parent


def probe_events() -> list[dict]:
    events = []
    # VPN brute force by a case-variant user name with case-variant outcomes, then success: must alert.
    for i in range(11):
        events.append({"@timestamp": f"2026-11-04T08:00:{i:02d}Z", "event.dataset": "vpn.auth",
                       "event.category": ["authentication"], "event.action": "VPN-LOGIN",
                       "event.outcome": "FAILURE" if i % 2 else "Failure", "user.name": "ADMIN.Huber",
                       "source.ip": "198.51.100.7"})
    events.append({"@timestamp": "2026-11-04T08:01:00Z", "event.dataset": "vpn.auth", "event.action": "vpn-login",
                   "event.category": ["authentication"], "event.outcome": "SUCCESS", "user.name": "ADMIN.Huber"})
    # Failures without a user name (absent group-by field): never correlated, on either store.
    for i in range(12):
        events.append({"@timestamp": f"2026-11-04T09:00:{i:02d}Z", "event.dataset": "vpn.auth",
                       "event.category": ["authentication"], "event.action": "vpn-login",
                       "event.outcome": "failure"})
    # Kerberoasting with case-variant hex values; machine accounts (ServiceName ending in $) filtered out.
    for i, name in enumerate(["svc_a", "SVC_B", "svc_c", "Svc_D", "svc_e", "host1$", "HOST2$"]):
        events.append({"@timestamp": f"2026-11-04T10:00:{i:02d}Z", "event.dataset": "windows.security",
                       "EventID": 4769, "Channel": "Security", "TicketEncryptionType": "0X17", "Status": "0x0",
                       "TicketOptions": "0x40810000", "ServiceName": name, "TargetUserName": "Mallory@CORP"})
    # Same, but two of five are machine accounts: only 3 distinct SPNs remain -> no alert.
    for i, name in enumerate(["svc_a", "svc_b", "svc_c", "m1$", "m2$"]):
        events.append({"@timestamp": f"2026-11-04T11:00:{i:02d}Z", "event.dataset": "windows.security",
                       "EventID": "4769", "Channel": "Security", "TicketEncryptionType": "0x17", "Status": "0x0",
                       "ServiceName": name, "TargetUserName": "eve@CORP"})
    # Break-the-glass with the flag absent, false and true.
    for i, flag in enumerate([None, False, True]):
        event = {"@timestamp": f"2026-11-04T12:00:0{i}Z", "event.dataset": "ehr.audit", "event.action": "READ",
                 "user.name": f"probe{i}", "ehr.patient.id": "P1"}
        if flag is not None:
            event["ehr.break_the_glass"] = flag
        events.append(event)
    return events


def run_pack(tmp_path: Path, store: dict) -> list[dict]:
    probe = tmp_path / "probe" / "probe.ndjson"
    probe.parent.mkdir(parents=True)
    probe.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in probe_events()))
    config_path = tmp_path / "wardwatch.yaml"
    config_path.write_text(yaml.safe_dump({
        "store": store,
        "rules": {"paths": [str(ROOT / "rules")]},
        "connectors": [*demo_connectors(), {"name": "probe", "type": "ndjson", "path": str(probe.parent)}],
        "alerts": {"sinks": []},
    }))
    app = build_app(load_config(config_path, environ={}), console=False)
    try:
        for _, connector in app.connectors():
            ingest_connector(app.store, connector, app.enrichment, 500)
        run_all(app.evaluator, app.jobs)
        return sorted((a.to_dict() for a in app.store.list_alerts()), key=lambda a: a["id"])
    finally:
        if hasattr(app.store, "delete_all") and app.store.kind == "elasticsearch":
            app.store.delete_all()
        app.close()


def test_sqlite_and_elasticsearch_give_identical_alerts(tmp_path):
    url = require_elasticsearch()
    sqlite_alerts = run_pack(tmp_path / "sqlite", {"kind": "sqlite", "sqlite": {"path": str(tmp_path / "w.db")}})
    es_alerts = run_pack(tmp_path / "es", {"kind": "elasticsearch", "elasticsearch": {
        "hosts": [url], "index_prefix": f"wwdiff-{uuid.uuid4().hex[:8]}"}})
    groups = {(a["rule_title"], orjson.dumps(a["group"], option=orjson.OPT_SORT_KEYS).decode())
              for a in sqlite_alerts}
    assert ("VPN brute force followed by successful login", '{"user.name":"ADMIN.Huber"}') in groups
    assert ("Kerberoasting: RC4 service tickets for many SPNs", '{"TargetUserName":"Mallory@CORP"}') in groups
    assert not any("eve@CORP" in g for _, g in groups)
    assert es_alerts == sqlite_alerts
