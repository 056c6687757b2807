"""The HTTP API as a SOC client sees it: a real httpx client against uvicorn serving engine.api on a free
loopback port (tests/api_peer.py), over a real store (SQLite, and Elasticsearch for the resources that
read or write its indices)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from engine.alerts import exceptions
from engine.api.hunt_jobs import HuntJobs, HuntsBusy
from engine.store import open_store
from engine.store.base import RuleCheckpoint
from tests.api_peer import NAMES, client, serving
from tests.store_fixtures import make_alert, store, ts  # noqa: F401 - fixture


def commit(store: Any, *alerts: Any) -> None:
    store.commit_rule_run(RuleCheckpoint(rule_id=alerts[0].rule_id, watermark=None), list(alerts))


@pytest.fixture
def sqlite_store(tmp_path):
    s = open_store("sqlite", path=tmp_path / "w.db")
    yield s
    s.close()


# --- auth: 401 vs 403, JSON bodies ------------------------------------------------------------------------

def test_a_request_without_a_token_or_with_a_wrong_one_is_401_with_a_json_body(sqlite_store):
    with serving(store=sqlite_store) as (url, _, _ctx):
        with client(url) as anonymous:
            response = anonymous.get("/api/v1/alerts")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json() == {"error": "unauthorized", "message": "missing Authorization: Bearer <token>"}
        with client(url, token="not-a-token") as wrong:
            response = wrong.get("/api/v1/alerts")
        assert response.status_code == 401 and response.json()["message"] == "the bearer token is not valid"
        with client(url, token="viewer-token-1") as right:
            assert right.get("/api/v1/alerts").status_code == 200


def test_a_viewer_may_read_but_not_act_and_an_analyst_may_not_remove_exceptions(sqlite_store):
    alert = make_alert()
    commit(sqlite_store, alert)
    with serving(store=sqlite_store) as (url, _, _ctx):
        with client(url, "viewer") as viewer:
            assert viewer.get(f"/api/v1/alerts/{alert.id}").status_code == 200
            response = viewer.post(f"/api/v1/alerts/{alert.id}/ack")
            assert response.status_code == 403
            assert response.json() == {"error": "forbidden",
                                       "message": "token 'vera' has role viewer; this needs analyst or higher"}
            assert viewer.post("/api/v1/hunts", json={}).status_code == 403
            assert viewer.post("/api/v1/reports/patient", json={"id": "P1"}).status_code == 403
        with client(url, "analyst") as analyst:
            assert analyst.delete("/api/v1/exceptions/abcdef123456").status_code == 403
            assert analyst.get("/api/v1/audit/verify").status_code == 403
    assert sqlite_store.get_triage_record(alert.id) is None  # the refused ack changed nothing


def test_without_configured_tokens_status_is_open_and_the_api_is_closed(sqlite_store):
    from engine.api.auth import TokenBook

    with serving(store=sqlite_store, tokens=TokenBook()) as (url, _, _ctx):
        with client(url) as anonymous:
            assert anonymous.get("/health").status_code == 200
            assert anonymous.get("/api/v1/metrics").status_code == 200
            response = anonymous.get("/api/v1/alerts")
    assert response.status_code == 401
    assert "service.http.tokens_file" in response.json()["message"]


def test_with_tokens_the_status_endpoints_need_one_of_any_role(sqlite_store):
    with serving(store=sqlite_store, health=lambda: {"status": "degraded"}) as (url, _, _ctx):
        with client(url) as anonymous:
            assert anonymous.get("/metrics").status_code == 401
        with client(url, "viewer") as viewer:
            health = viewer.get("/health")
            assert health.status_code == 503 and health.json() == {"status": "degraded"}
            assert viewer.get("/metrics").headers["content-type"].startswith("text/plain")


# --- alerts and cases: list, show, lifecycle ---------------------------------------------------------------

def test_alerts_list_filters_like_the_cli(store):
    kim = make_alert("rule-a", "user.name=kim", first=ts(0))
    lee = make_alert("rule-b", "user.name=lee", first=ts(30))
    commit(store, kim)
    commit(store, lee)
    with serving(store=store) as (url, _, _ctx), client(url, "viewer") as viewer:
        everything = viewer.get("/api/v1/alerts").json()
        assert everything["count"] == 2 and [a["id"] for a in everything["alerts"]] == [kim.id, lee.id]
        assert {a["status"] for a in everything["alerts"]} == {"new"}
        assert [a["id"] for a in viewer.get("/api/v1/alerts", params={"user": "LEE"}).json()["alerts"]] == [lee.id]
        assert [a["id"] for a in viewer.get("/api/v1/alerts", params={"rule": "rule-a"}).json()["alerts"]] == [kim.id]
        assert viewer.get("/api/v1/alerts", params={"since": ts(10)}).json()["count"] == 1
        assert viewer.get("/api/v1/alerts", params={"limit": 1}).json()["count"] == 1
        bad = viewer.get("/api/v1/alerts", params={"status": "open"})
        assert bad.status_code == 400 and "--status 'open'" in bad.json()["message"]
        assert viewer.get("/api/v1/alerts", params={"limit": 0}).status_code == 422


def test_the_lifecycle_over_http_records_the_token_name_as_actor(sqlite_store):
    store = sqlite_store
    alert = make_alert()
    commit(store, alert)
    with serving(store=store) as (url, _, _ctx), client(url, "analyst") as analyst:
        acked = analyst.post(f"/api/v1/alerts/{alert.id[:8]}/ack")  # a unique prefix is enough
        assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
        again = analyst.post(f"/api/v1/alerts/{alert.id}/ack")
        assert again.status_code == 409 and again.json()["error"] == "invalid_transition"
        assert analyst.post(f"/api/v1/alerts/{alert.id}/assign", json={"assignee": "lee"}).json()["assignee"] == "lee"
        analyst.post(f"/api/v1/alerts/{alert.id}/comment", json={"text": "VPN from home, checked"})
        assert analyst.post(f"/api/v1/alerts/{alert.id}/comment", json={}).status_code == 422
        closed = analyst.post(f"/api/v1/alerts/{alert.id}/close", json={"reason": "benign"}).json()
        assert closed["status"] == "closed" and closed["close_reason"] == "benign" and closed["exception"] is None
        shown = analyst.get(f"/api/v1/alerts/{alert.id}").json()
    assert shown["triage"]["comments"][0]["author"] == NAMES["analyst"]
    history = [(e["kind"], e["actor"]) for e in shown["history"]]
    assert history == [("triage.acknowledge", "ann"), ("triage.assign", "ann"), ("triage.comment", "ann"),
                       ("triage.close", "ann")]


def test_close_with_suppress_makes_an_exception_only_an_admin_removes(sqlite_store):
    store = sqlite_store
    alert = make_alert("rule-a", "user.name=kim")
    commit(store, alert)
    with serving(store=store) as (url, _, _ctx):
        with client(url, "analyst") as analyst:
            refused = analyst.post(f"/api/v1/alerts/{alert.id}/close",
                                   json={"reason": "benign", "suppress_for": "30d"})
            assert refused.status_code == 400 and "justification" in refused.json()["message"]
            closed = analyst.post(f"/api/v1/alerts/{alert.id}/close", json={
                "reason": "benign", "suppress_for": "30d", "justification": "on-call admin"}).json()
            made = closed["exception"]
            assert (made["rule_id"], made["field"], made["value"], made["author"]) == \
                ("rule-a", "user.name", "kim", "ann")
            listed = analyst.get("/api/v1/exceptions").json()
            assert [e["id"] for e in listed["exceptions"]] == [made["id"]]
        with client(url, "admin") as admin:
            removed = admin.delete(f"/api/v1/exceptions/{made['id']}")
            assert removed.status_code == 200 and removed.json()["id"] == made["id"]
            assert admin.delete(f"/api/v1/exceptions/{made['id']}").status_code == 404
            assert admin.get("/api/v1/exceptions").json()["count"] == 0
    assert exceptions.list_exceptions(store) == []


def test_declaring_an_incident_starts_the_clocks_that_deadlines_and_show_report(sqlite_store):
    alert = make_alert()
    commit(sqlite_store, alert)
    with serving(store=sqlite_store) as (url, _, _ctx):
        with client(url, "viewer") as viewer:
            assert viewer.post(f"/api/v1/alerts/{alert.id}/incident").status_code == 403
        with client(url, "analyst") as analyst:
            declared = analyst.post(f"/api/v1/alerts/{alert.id}/incident", json={"regimes": ["gdpr"]}).json()
            assert declared["new"] is True and declared["actor"] == "ann" and declared["regimes"] == ["gdpr"]
            assert [(d["regime"], d["milestone"]) for d in declared["deadlines"]] == [("gdpr", "authority_notification")]
            again = analyst.post(f"/api/v1/alerts/{alert.id}/incident").json()
            assert again["new"] is False and again["declared_at"] == declared["declared_at"]
            assert analyst.post(f"/api/v1/alerts/{alert.id}/incident", json={"regimes": ["hipaa"]}).status_code == 422
            due = analyst.get("/api/v1/incidents/deadlines").json()
            shown = analyst.get(f"/api/v1/alerts/{alert.id}").json()
    assert due["count"] == 1 and 71 * 3600 < due["deadlines"][0]["remaining_seconds"] <= 72 * 3600
    assert [d["milestone"] for d in shown["deadlines"]] == ["authority_notification"]


@pytest.mark.slow
@pytest.mark.elasticsearch
def test_on_elasticsearch_triage_and_exceptions_over_http_land_in_the_cluster(tmp_path):
    """The same resources on the ES store (each triage write there waits for a refresh: seconds, not ms)."""
    import uuid

    from tests.conftest import require_elasticsearch

    store = open_store("elasticsearch", hosts=[require_elasticsearch()], index_prefix=f"wwtest-{uuid.uuid4().hex[:12]}")
    try:
        alert = make_alert("rule-a", "user.name=kim")
        commit(store, alert)
        with serving(store=store) as (url, _, _ctx):
            with client(url, "analyst") as analyst:
                assert analyst.post(f"/api/v1/alerts/{alert.id}/ack").json()["status"] == "acknowledged"
                made = analyst.post(f"/api/v1/alerts/{alert.id}/close", json={
                    "reason": "benign", "suppress_for": "30d", "justification": "on-call admin"}).json()["exception"]
                listed = analyst.get("/api/v1/alerts", params={"status": "closed"}).json()
                assert [a["id"] for a in listed["alerts"]] == [alert.id]
            with client(url, "admin") as admin:
                assert admin.delete(f"/api/v1/exceptions/{made['id']}").status_code == 200
                assert admin.get("/api/v1/audit/verify").json()["ok"] is True
        assert exceptions.list_exceptions(store) == []
    finally:
        store.delete_all()
        store.close()


def test_an_id_of_the_other_kind_or_of_nothing_is_404(sqlite_store):
    alert = make_alert()
    commit(sqlite_store, alert)
    with serving(store=sqlite_store) as (url, _, _ctx), client(url, "analyst") as analyst:
        assert analyst.get("/api/v1/alerts/ffffffffffff").json()["error"] == "not_found"
        response = analyst.post(f"/api/v1/cases/{alert.id}/ack")
        assert response.status_code == 404 and "it is a alert" in response.json()["message"]
        assert analyst.get("/api/v1/cases").json() == {"count": 0, "cases": []}


# --- hunts: background jobs, bounded ---------------------------------------------------------------------

def test_a_hunt_beyond_the_limit_is_refused_with_429_and_finished_jobs_show_their_result(sqlite_store):
    release = threading.Event()

    def runner(job: Any, progress: Any) -> dict[str, Any]:
        progress(7)
        release.wait(10)
        return {"results": [], "events_scanned": 42}

    app = type("App", (), {"store": sqlite_store, "ruleset": None, "config": None})()
    with serving(app, max_hunts=1, runner=runner) as (url, _, _ctx), client(url, "analyst") as analyst:
        started = analyst.post("/api/v1/hunts", json={"from": "2026-11-01T00:00:00Z"})
        assert started.status_code == 202, started.text
        job = started.json()
        assert job["status"] == "running" and job["actor"] == "ann"
        assert job["request"]["from"] == "2026-11-01T00:00:00.000Z"
        busy = analyst.post("/api/v1/hunts", json={})
        assert busy.status_code == 429 and "max_hunt_jobs" in busy.json()["message"]
        assert analyst.get(f"/api/v1/hunts/{job['id']}").json()["events_scanned"] == 7
        release.set()
        deadline = time.monotonic() + 10
        while (shown := analyst.get(f"/api/v1/hunts/{job['id']}").json())["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert shown["status"] == "done" and shown["events_scanned"] == 42 and shown["result"]["results"] == []
        assert analyst.get("/api/v1/hunts/nope").status_code == 404
        bad = analyst.post("/api/v1/hunts", json={"from": "yesterday-ish"})
        assert bad.status_code == 400


def test_hunt_jobs_forget_the_oldest_finished_ones():
    jobs = HuntJobs(lambda job, progress: {"events_scanned": 0}, max_running=1, keep=2)
    made = []
    for _ in range(4):
        deadline = time.monotonic() + 5
        while True:
            try:
                made.append(jobs.submit("ann", {}))
                break
            except HuntsBusy:
                assert time.monotonic() < deadline
                time.sleep(0.01)
    while jobs.running():
        time.sleep(0.01)
    # pruned when a job is submitted: the 4th submission keeps the 2 newest finished ones and itself
    assert {j.id for j in jobs.all()} == {j.id for j in made[1:]}


# --- what is not there yet, and what is never logged -----------------------------------------------------

def test_the_access_log_names_route_templates_never_paths_or_queries(sqlite_store):
    alert = make_alert("rule-a", "user.name=kim")
    commit(sqlite_store, alert)
    with serving(store=sqlite_store) as (url, _, _ctx), client(url, "viewer") as viewer:
        with capture_logs() as logs:
            viewer.get("/api/v1/alerts", params={"patient": "P950123"})
            viewer.get(f"/api/v1/alerts/{alert.id}")
    lines = [e for e in logs if e.get("event") == "api request"]
    assert {e["route"] for e in lines} == {"/api/v1/alerts", "/api/v1/alerts/{alert_id}"}
    assert all(e["status"] == 200 for e in lines)
    assert "P950123" not in str(logs) and alert.id not in str(logs)


def test_an_unexpected_failure_is_a_json_500_whose_log_names_only_the_class(tmp_path):
    class BrokenStore:
        def list_alerts(self):
            raise RuntimeError("row for patient P950123 is corrupt")

    with serving(store=BrokenStore()) as (url, _, _ctx), client(url, "viewer") as viewer:
        with capture_logs() as logs:
            response = viewer.get("/api/v1/alerts")
    assert response.status_code == 500 and response.json()["error"] == "internal"
    assert "P950123" not in response.text and "P950123" not in str(logs)
    assert [e["error"] for e in logs if e.get("event") == "API request failed"] == ["RuntimeError"]


_segment = st.text(st.characters(codec="ascii", categories=("L", "N"), include_characters="-_.~%"), min_size=1,
                   max_size=40)


@given(alert_id=_segment, action=st.sampled_from(["ack", "assign", "comment", "close", "incident"]))
def test_route_templates_never_carry_the_ids_of_a_path(alert_id, action):
    from engine.api.access_log import _route, route_templates

    templates = route_templates(["/api/v1/alerts", "/api/v1/alerts/{alert_id}", "/api/v1/alerts/{alert_id}/ack",
                                 "/api/v1/alerts/{alert_id}/assign", "/api/v1/alerts/{alert_id}/comment",
                                 "/api/v1/alerts/{alert_id}/close", "/api/v1/alerts/{alert_id}/incident"])
    assert _route({"path": f"/api/v1/alerts/{alert_id}"}, templates) == "/api/v1/alerts/{alert_id}"
    assert _route({"path": f"/api/v1/alerts/{alert_id}/{action}"}, templates) == f"/api/v1/alerts/{{alert_id}}/{action}"
    assert _route({"path": f"/elsewhere/{alert_id}"}, templates) == "unmatched"
