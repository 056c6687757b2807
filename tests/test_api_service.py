"""The API inside the running service (wardwatch run): tokens from a tokens file, the real App over the VPN
fixtures, a real httpx client. What a SOC does in one sitting: find the alert, triage it, see the rules,
hunt, verify the audit chain."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from engine.api.auth import token_sha256
from engine.app import build_app
from engine.config import ConfigError, load_config
from engine.scheduler import Service
from tests.api_peer import NAMES, TOKENS, client
from tests.test_http_endpoints import ROOT, free_port
from tests.test_service import vpn_service_config


def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "api-tokens.yaml"
    path.write_text(yaml.safe_dump([{"name": NAMES[role], "role": role, "token_sha256": token_sha256(token)}
                                    for role, token in TOKENS.items()]))
    return path


#: Two accesses to one patient's record, for the access report (ECS + our ehr.* fields, docs/schema.md).
PATIENT = "PX-4711"
EHR_EVENTS = [
    {"@timestamp": "2026-11-02T10:00:00.000Z", "user.name": "mkeller", "user.id": "U1042",
     "ehr.patient.id": PATIENT, "event.action": "read", "ehr.purpose_of_use": ["TREAT"], "ehr.break_the_glass": False},
    {"@timestamp": "2026-11-02T23:30:00.000Z", "user.name": "tbauer", "user.id": "U1007",
     "ehr.patient.id": PATIENT, "event.action": "read", "ehr.purpose_of_use": ["ETREAT"], "ehr.break_the_glass": True},
]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One service for the module (ingest + rules take a moment); yields its base URL and the service."""
    tmp_path = tmp_path_factory.mktemp("api-service")
    (tmp_path / "ehr").mkdir()
    (tmp_path / "ehr" / "access.ndjson").write_text("".join(orjson.dumps(e).decode() + "\n" for e in EHR_EVENTS))
    http = {"host": "127.0.0.1", "port": free_port(), "tokens_file": str(tokens_file(tmp_path))}
    connectors = [{"name": "vpn", "type": "ndjson", "path": str(ROOT / "fixtures/vpn"), "dataset": "vpn.auth"},
                  {"name": "ehr", "type": "ndjson", "path": str(tmp_path / "ehr"), "dataset": "ehr.audit"}]
    config = vpn_service_config(tmp_path, service={"http": http}, connectors=connectors)
    service = Service(build_app(load_config(config, environ={}), console=False))
    service.start()
    try:
        url = service.http.url
        with client(url, "viewer") as viewer:
            deadline = time.monotonic() + 30
            while viewer.get("/api/v1/alerts").json()["count"] == 0:
                assert time.monotonic() < deadline, "no alert from the VPN fixtures"
                time.sleep(0.1)
        yield url, service
    finally:
        service.stop()


def test_an_alert_found_over_http_is_triaged_and_its_history_names_the_token(running):
    url, _ = running
    with client(url, "analyst") as analyst:
        alert = analyst.get("/api/v1/alerts").json()["alerts"][0]
        assert analyst.post(f"/api/v1/alerts/{alert['id']}/assign", json={"assignee": "lee"}).status_code == 200
        shown = analyst.get(f"/api/v1/alerts/{alert['id']}").json()
    assert shown["triage"]["assignee"] == "lee"
    assert [(e["kind"], e["actor"]) for e in shown["history"] if e["kind"].startswith("triage.")] == \
        [("triage.assign", "ann")]


def test_rules_list_and_one_rules_status(running):
    url, service = running
    with client(url, "viewer") as viewer:
        rules = viewer.get("/api/v1/rules").json()
        assert rules["count"] == len(service.app.jobs) > 0
        first = rules["rules"][0]
        assert {"id", "title", "level", "last_run", "alerts_24h", "data_seen"} <= set(first)
        assert viewer.get(f"/api/v1/rules/{first['id']}").json() == first
        assert viewer.get("/api/v1/rules/no-such-rule").status_code == 404


def test_a_hunt_over_stored_history_finishes_with_the_rules_test_contract(running):
    url, _ = running
    with client(url, "analyst") as analyst:
        alerts = analyst.get("/api/v1/alerts").json()["alerts"]
        rule_id = alerts[0]["rule_id"]
        started = analyst.post("/api/v1/hunts", json={"rule": rule_id})
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 30
        while (job := analyst.get(f"/api/v1/hunts/{started.json()['id']}").json())["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert analyst.post("/api/v1/hunts", json={"rule": "no-such-rule"}).status_code == 404
        listed = analyst.get("/api/v1/hunts").json()
    assert job["status"] == "done", job
    results = job["result"]["results"]
    assert results and {r["rule_id"] for r in results} == {rule_id}
    assert {"rule_id", "title", "kind", "event_ids", "group", "window"} <= set(results[0])
    assert job["result"]["alerts_written"] is False
    assert listed["hunts"][0]["id"] == job["id"] and listed["hunts"][0]["result"] is None


def test_the_audit_chain_verifies_over_http_for_an_admin_only(running):
    url, _ = running
    with client(url, "admin") as admin:
        verdict = admin.get("/api/v1/audit/verify").json()
        entries = admin.get("/api/v1/audit/entries", params={"limit": 5}).json()
    assert verdict["ok"] is True and verdict["checked"] >= 1 and verdict["first_broken"] is None
    assert 1 <= entries["count"] <= 5


def test_the_patient_access_report_in_each_format_and_never_by_get(running):
    url, _ = running
    with client(url, "analyst") as analyst:
        deadline = time.monotonic() + 30
        while not (report := analyst.post("/api/v1/reports/patient", json={"id": PATIENT}).json())["rows"]:
            assert time.monotonic() < deadline, "the EHR accesses were not ingested"
            time.sleep(0.1)
        as_csv = analyst.post("/api/v1/reports/patient", json={"id": PATIENT, "format": "csv"})
        as_html = analyst.post("/api/v1/reports/patient", json={"id": PATIENT, "format": "html", "from": "2026-11-02T12:00:00Z"})
        by_user = analyst.post("/api/v1/reports/user", json={"id": "tbauer"}).json()
        assert analyst.get(f"/api/v1/reports/patient?id={PATIENT}").status_code == 405
        assert analyst.post("/api/v1/reports/patient", json={"id": PATIENT, "format": "pdf"}).status_code == 422
    assert report["kind"] == "patient" and report["subject"] == PATIENT
    assert [(r["user"], r["break_the_glass"]) for r in report["rows"]] == [("mkeller", False), ("tbauer", True)]
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert len(rows) == 2
    assert as_html.headers["content-type"].startswith("text/html") and "tbauer" in as_html.text
    assert "mkeller" not in as_html.text  # before "from"
    assert [r["patient"] for r in by_user["rows"]] == [PATIENT]
    with client(url, "admin") as admin:  # every report served is in the audit chain under the token's name
        trail = [e for e in admin.get("/api/v1/audit/entries", params={"subject": PATIENT}).json()["entries"]
                 if e["kind"] == "report.run"]
    assert [(e["actor"], e["detail"]["format"], e["detail"]["rows"]) for e in trail[-3:]] == [
        (NAMES["analyst"], "json", 2), (NAMES["analyst"], "csv", 2), (NAMES["analyst"], "html", 1)]
    assert all(e["detail"]["rows"] == 0 for e in trail[:-3])  # the polling loop's early, empty asks


def test_a_tokens_file_that_cannot_be_used_stops_the_start_naming_the_key(tmp_path):
    bad = tmp_path / "tokens.yaml"
    for content, message in (
            ("- {name: ann, role: root, token_sha256: " + "a" * 64 + "}\n", "role 'root' is not one of"),
            ("- {name: ann, role: analyst, token_sha256: analyst-token-1}\n", "64 hex digits"),
            ("- {name: ann, role: analyst}\n", "needs exactly the keys"),
            ("[]\n", "non-empty list")):
        bad.write_text(content)
        config = load_config(vpn_service_config(tmp_path, service={"http": {"port": free_port(),
                                                                            "tokens_file": str(bad)}}), environ={})
        service = Service(build_app(config, console=False))
        with pytest.raises(ConfigError, match="service.http.tokens_file") as caught:
            service.start()
        assert message in str(caught.value)
        service.app.close()


def test_cases_are_listed_shown_and_triaged_like_alerts(running):
    url, _ = running
    with client(url, "analyst") as analyst:
        deadline = time.monotonic() + 30
        while (cases := analyst.get("/api/v1/cases").json())["count"] == 0:  # built after delivery
            assert time.monotonic() < deadline, "no case from the VPN alert"
            time.sleep(0.1)
        case = cases["cases"][0]
        shown = analyst.get(f"/api/v1/cases/{case['id'][:8]}").json()
        assert shown["kind"] == "case" and shown["case"]["id"] == case["id"] and shown["alert_records"]
        assert analyst.post(f"/api/v1/cases/{case['id']}/ack").json()["status"] == "acknowledged"
        closed = analyst.post(f"/api/v1/cases/{case['id']}/close", json={"reason": "true_positive"}).json()
        again = analyst.post(f"/api/v1/cases/{case['id']}/close", json={"reason": "benign"})
        suppress = analyst.post(f"/api/v1/cases/{case['id']}/close",
                                json={"reason": "benign", "suppress_for": "30d", "justification": "x"})
        listed = analyst.get("/api/v1/cases", params={"status": "closed"}).json()
    assert closed["status"] == "closed" and closed["kind"] == "case"
    assert again.status_code == 409 and again.json()["error"] == "invalid_transition"  # closed is final
    assert suppress.status_code == 400 and "alert ids" in suppress.json()["message"]  # a case spans rules
    assert case["id"] in [c["id"] for c in listed["cases"]]


def test_health_and_metrics_of_the_running_service_need_a_token(running):
    url, _ = running
    with client(url) as anonymous:
        assert anonymous.get("/health").status_code == 401
    with client(url, "viewer") as viewer:
        health = viewer.get("/api/v1/health")
        metrics = viewer.get("/api/v1/metrics").text
    assert health.status_code == 200 and health.json()["store"]["ok"] is True
    assert 'wardwatch_events_ingested_total{connector="vpn"}' in metrics
