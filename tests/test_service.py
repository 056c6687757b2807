"""The service as a SOC runs it: scheduled ingest and rules, health and metrics over HTTP, clean stop."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import yaml

from engine.app import build_app
from engine.config import load_config
from engine.metrics import Metrics
from engine.scheduler import Service

ROOT = Path(__file__).resolve().parent.parent


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def vpn_service_config(tmp_path: Path, **extra) -> Path:
    """A fast-ticking service over the VPN fixtures (one brute-force alert), JSONL sink in tmp_path."""
    config = {
        "store": {"sqlite": {"path": str(tmp_path / "w.db")}},
        "rules": {"paths": [str(ROOT / "rules/healthcare")]},
        "connectors": [{"name": "vpn", "type": "ndjson", "path": str(ROOT / "fixtures/vpn"),
                        "dataset": "vpn.auth"}],
        "scheduler": {"ingest_interval": "100ms", "rule_interval": "100ms", "delivery_interval": "100ms"},
        "alerts": {"sinks": [{"type": "jsonl", "path": str(tmp_path / "alerts.jsonl")}]},
        **extra,
    }
    path = tmp_path / "wardwatch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_metrics_render_prometheus_text():
    metrics = Metrics()
    metrics.inc("wardwatch_events_ingested_total", 5, connector='a"b')
    metrics.inc("wardwatch_events_ingested_total", 2, connector='a"b')
    metrics.set("wardwatch_job_seconds", 0.5, job="rule:x")
    text = metrics.render()
    assert 'wardwatch_events_ingested_total{connector="a\\"b"} 7' in text
    assert "# TYPE wardwatch_job_seconds gauge" in text
    assert "# TYPE wardwatch_events_ingested_total counter" in text


def test_service_ingests_alerts_and_reports_health_and_metrics(tmp_path):
    config_path = vpn_service_config(tmp_path, service={"http": {"host": "127.0.0.1", "port": 0}})
    service = Service(build_app(load_config(config_path, environ={}), console=False))
    service.start()
    try:
        base = "http://%s:%d" % service.http.address
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (tmp_path / "alerts.jsonl").exists():
            time.sleep(0.1)
        status, body = get(base + "/health")
        assert status == 200 and orjson.loads(body)["status"] == "ok"
        status, body = get(base + "/metrics")
        text = body.decode()
        assert status == 200
        assert 'wardwatch_events_ingested_total{connector="vpn"} 66' in text
        assert "wardwatch_alerts_total" in text
        assert get(base + "/nope")[0] == 404
    finally:
        service.stop()
    alerts = [orjson.loads(line) for line in (tmp_path / "alerts.jsonl").read_bytes().splitlines()]
    assert [a["group"] for a in alerts] == [{"user.name": "admin.huber"}]


def test_health_is_degraded_when_a_job_fails(tmp_path):
    config_path = tmp_path / "wardwatch.yaml"
    config_path.write_text(yaml.safe_dump({
        "store": {"sqlite": {"path": str(tmp_path / "w.db")}},
        "rules": {"paths": [str(ROOT / "rules/healthcare")]},
        "connectors": [{"name": "broken", "type": "ndjson", "path": str(tmp_path / "missing" / "*.ndjson")}],
        "alerts": {"sinks": []},
    }))
    service = Service(build_app(load_config(config_path, environ={}), console=False))
    service._guard("ingest:broken", lambda: (_ for _ in ()).throw(RuntimeError("disk on fire")))
    report = service.health()
    assert report["status"] == "degraded"
    assert report["failing_jobs"] == {"ingest:broken": "RuntimeError: disk on fire"}
    assert service.metrics.value("wardwatch_job_runs_total", job="ingest:broken", outcome="error") == 1
    service.app.close()


def test_sigterm_stops_the_real_service_cleanly(tmp_path):
    import signal
    import subprocess
    import sys

    config_path = vpn_service_config(tmp_path, logging={"format": "json"}, alerts={"sinks": [
        {"type": "jsonl", "path": str(tmp_path / "alerts.jsonl")}, {"type": "console"}]})
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--config", str(config_path), "run", "--console"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (tmp_path / "alerts.jsonl").exists():
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    events = [orjson.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert events[0] == "service started" and events[-1] == "service stopped"
    assert "ALERT [high] VPN brute force followed by successful login" in out  # the console sink


def test_a_failing_job_logs_its_traceback_once_then_one_line_per_repeat(tmp_path):
    from structlog.testing import capture_logs

    app = build_app(load_config(vpn_service_config(tmp_path)), console=False)
    service = Service(app)
    outcomes = iter([ValueError("bad row"), ValueError("bad row"), ValueError("bad row"), None, ValueError("again")])

    def job() -> None:
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome

    try:
        with capture_logs() as logs:
            for _ in range(5):
                service._guard("flaky", job)
    finally:
        app.close()
    failures = [entry for entry in logs if entry.get("job") == "flaky"]
    assert [entry["event"] for entry in failures] == [
        "job failed; will retry", "job failed again; will retry", "job failed again; will retry",
        "job failed; will retry"]  # a success ends the streak: the next failure shows its traceback again
    assert [entry.get("exc_info") for entry in failures] == [True, False, False, True]
    assert all(entry["error"] == "ValueError: bad row" for entry in failures[:3])
