"""The status endpoint as a monitoring system and a security reviewer see it: a real HTTP client talking to
the real server on 127.0.0.1 (issue 7, item 11). Since issue 12 the server is the API's (engine/api:
uvicorn); /health and /metrics behave as they did under the stdlib server."""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from engine.app import build_app
from engine.config import ConfigError, load_config
from engine.api.auth import TokenBook
from engine.api.server import ApiServer
from engine.metrics import Metrics
from engine.scheduler import Service

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port nothing listens on right now (the config accepts 1..65535, not 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(address: tuple[str, int], path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """One GET with a fresh connection; returns status, headers (lower-case names) and body."""
    connection = http.client.HTTPConnection(*address, timeout=5)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse the exposition the way Prometheus does: (sample name, labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def service_config(tmp_path: Path, http: dict) -> Path:
    path = tmp_path / "wardwatch.yaml"
    path.write_text(yaml.safe_dump({
        "store": {"sqlite": {"path": str(tmp_path / "w.db")}},
        "rules": {"paths": [str(ROOT / "rules/healthcare")]},
        "connectors": [{"name": "vpn", "type": "ndjson", "path": str(ROOT / "fixtures/vpn"), "dataset": "vpn.auth"}],
        "alerts": {"sinks": []},
        "service": {"http": {"host": "127.0.0.1", "port": free_port(), **http}},
    }))
    return path


def status_server(host: str, metrics: Metrics | None = None, **kwargs) -> ApiServer:
    """The API server (no tokens configured: status endpoints open) over ``metrics`` and a fixed health."""
    from engine.api.app import create_app
    from engine.api.deps import ApiContext

    context = ApiContext(app=None, metrics=metrics or Metrics(), health=lambda: {"status": "ok"},
                         tokens=TokenBook(), hunts=None)
    return ApiServer(create_app(context), host, 0, **kwargs)


@pytest.fixture
def server():
    """An API server on an ephemeral loopback port, over a fresh Metrics and a fixed health report."""
    started: list[ApiServer] = []

    def make(metrics: Metrics | None = None, **kwargs) -> ApiServer:
        srv = status_server("127.0.0.1", metrics, **kwargs)
        srv.start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


# --- /metrics through prometheus_client --------------------------------------------------------------

def test_a_last_success_timestamp_round_trips_to_the_second(server):
    metrics = Metrics()
    now = time.time()
    metrics.set("wardwatch_job_last_success_timestamp_seconds", now, job="rule:x")
    status, headers, body = request(server(metrics).address, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    value = samples(body.decode())[("wardwatch_job_last_success_timestamp_seconds", (("job", "rule:x"),))]
    assert abs(value - now) < 1


def test_counters_keep_their_precision_above_a_million(server):
    metrics = Metrics()
    metrics.inc("wardwatch_events_ingested_total", 1_234_567, connector="vpn")
    metrics.inc("wardwatch_events_ingested_total", 1, connector="vpn")
    _, _, body = request(server(metrics).address, "/metrics")
    assert samples(body.decode())[("wardwatch_events_ingested_total", (("connector", "vpn"),))] == 1_234_568
    assert metrics.value("wardwatch_events_ingested_total", connector="vpn") == 1_234_568


def test_a_misspelt_metric_name_fails_loudly():
    metrics = Metrics()
    with pytest.raises(KeyError, match="wardwatch_events_ingestd_total"):
        metrics.inc("wardwatch_events_ingestd_total", connector="vpn")
    with pytest.raises(ValueError):  # a label the metric does not declare
        metrics.inc("wardwatch_events_ingested_total", conector="vpn")


def test_two_services_in_one_process_do_not_share_counters():
    first, second = Metrics(), Metrics()
    first.inc("wardwatch_alerts_total", 3, rule="r")
    assert second.value("wardwatch_alerts_total", rule="r") == 0
    assert "wardwatch_alerts_total" not in second.render() or 'rule="r"' not in second.render()


# --- hardening -----------------------------------------------------------------------------------------

def test_the_server_banner_carries_no_python_version(server):
    _, headers, _ = request(server().address, "/metrics")
    assert "python" not in headers.get("server", "").lower()
    assert headers.get("server", "").startswith("wardwatch")


def test_idle_connections_are_closed(server):
    srv = server(idle_timeout=0.5)
    with socket.create_connection(srv.address, timeout=5) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""  # the server hung up on a client that never sent a request
        assert time.monotonic() - started < 4


def test_binding_beyond_loopback_logs_a_warning():
    from engine.logs import configure_logging

    configure_logging("info", "json")  # whatever level an earlier test left behind
    with capture_logs() as logs:
        status_server("0.0.0.0").socket.close()
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert warnings and "0.0.0.0" in str(warnings[0])
    with capture_logs() as logs:
        status_server("127.0.0.1").socket.close()
    assert not [e for e in logs if e["log_level"] == "warning"]


def test_bearer_token_from_a_file_guards_both_endpoints(tmp_path):
    token_file = tmp_path / "http.token"
    token_file.write_text("s3cret-token-value\n")
    service = Service(build_app(load_config(service_config(tmp_path, {"token_file": str(token_file)}),
                                            environ={}), console=False))
    service.start()
    try:
        address = service.http.address
        for path in ("/health", "/metrics"):
            status, headers, _ = request(address, path)
            assert status == 401 and headers["www-authenticate"].startswith("Bearer")
            assert request(address, path, token="wrong")[0] == 401
            assert request(address, path, token="s3cret-token-value")[0] in (200, 503)
    finally:
        service.stop()


def test_bearer_token_from_the_environment(tmp_path):
    config = load_config(service_config(tmp_path, {"token_env": "WW_HTTP_TOKEN"}), environ={})
    import os

    os.environ["WW_HTTP_TOKEN"] = "from-env"
    try:
        service = Service(build_app(config, console=False))
        service.start()
    finally:
        del os.environ["WW_HTTP_TOKEN"]
    try:
        assert request(service.http.address, "/metrics")[0] == 401
        assert request(service.http.address, "/metrics", token="from-env")[0] == 200
    finally:
        service.stop()


def test_a_configured_token_that_cannot_be_read_stops_the_start(tmp_path):
    config = load_config(service_config(tmp_path, {"token_file": str(tmp_path / "missing.token")}), environ={})
    service = Service(build_app(config, console=False))
    with pytest.raises(ConfigError, match="service.http.token_file"):
        service.start()
    service.app.close()


def test_health_shows_no_absolute_paths(tmp_path):
    service = Service(build_app(load_config(service_config(tmp_path, {}), environ={}), console=False))
    service.start()
    try:
        deadline = time.monotonic() + 20
        def ran() -> bool:  # the status entry appears when the job starts: wait until a run has ended
            entry = service.status.get("ingest:vpn", {})
            return entry.get("runs", 0) + entry.get("failures", 0) >= 1

        while time.monotonic() < deadline and not ran():
            time.sleep(0.05)
        status, _, body = request(service.http.address, "/health")
    finally:
        service.stop()
    assert status == 200, body
    report = orjson.loads(body)
    assert report["store"]["ok"] is True
    assert str(tmp_path) not in body.decode() and str(ROOT) not in body.decode()
