"""What the service tells a SOC about itself: counters, and an HTTP endpoint for health and Prometheus.

Counters are kept in-process (reset at restart, as Prometheus expects) and exposed on
``service.http`` (off by default): ``GET /health`` (JSON: ok/degraded, store health, per-connector and
per-job state) and ``GET /metrics`` (Prometheus text format, rendered by ``prometheus_client`` so floats
keep full precision). Only counts and names appear here - never event content - so the endpoint carries
no patient data.

Every metric is declared once in ``METRICS`` (name, type, help, labels): a misspelt name or label raises
instead of silently starting a new series nobody alerts on. Each ``Metrics`` has its own
``CollectorRegistry``, so two services (or tests) in one process never share counters.

The server is hardened for a hospital network: optional bearer token (constant-time compare), idle
connections closed after ``idle_timeout``, no Python version in the ``Server`` header, and a warning when
it is bound beyond loopback.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Literal
from urllib.parse import urlsplit

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client import disable_created_metrics

from engine.logs import get_logger

log = get_logger("wardwatch.http")

# ``*_created`` series double the output and nobody alerts on them; the service owns this process.
disable_created_metrics()


@dataclass(frozen=True)
class MetricSpec:
    """One metric family: the only place its name, type, help text and label names are written."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    labels: tuple[str, ...]


METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in (
    MetricSpec("wardwatch_events_ingested_total", "counter",
               "Events read from a connector and committed to the store", ("connector",)),
    MetricSpec("wardwatch_events_duplicate_total", "counter",
               "Events already in the store (replays), not stored again", ("connector",)),
    MetricSpec("wardwatch_dead_letters_total", "counter", "Input records that could not become events",
               ("connector",)),
    MetricSpec("wardwatch_alerts_total", "counter", "Alert revisions committed, by rule", ("rule",)),
    MetricSpec("wardwatch_job_runs_total", "counter", "Scheduler job runs, by job and outcome", ("job", "outcome")),
    MetricSpec("wardwatch_job_seconds", "gauge", "Duration of the last run of a job", ("job",)),
    MetricSpec("wardwatch_job_last_success_timestamp_seconds", "gauge",
               "Unix time of the last successful run of a job", ("job",)),
    MetricSpec("wardwatch_connector_up", "gauge",
               "1 when the connector's source could be read on its last poll, 0 when it is unavailable",
               ("connector",)),
    MetricSpec("wardwatch_incident_deadline_seconds", "gauge",
               "Seconds left until an incident reporting deadline (negative: overdue); subject is the alert "
               "or case id", ("subject", "regime", "milestone")),
)}


class Metrics:
    """The declared metric families on a private registry; thread-safe (prometheus_client locks)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._families: dict[str, Counter | Gauge] = {}
        for spec in METRICS.values():
            cls = Counter if spec.kind == "counter" else Gauge
            self._families[spec.name] = cls(spec.name, spec.help, spec.labels, registry=self.registry)

    def _family(self, name: str, kind: str) -> Any:
        spec = METRICS.get(name)
        if spec is None:
            raise KeyError(f"undeclared metric {name!r} (declared: {', '.join(sorted(METRICS))})")
        if spec.kind != kind:
            raise TypeError(f"metric {name!r} is a {spec.kind}")
        return self._families[name]

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        self._family(name, "counter").labels(**labels).inc(amount)

    def set(self, name: str, value: float, **labels: str) -> None:
        self._family(name, "gauge").labels(**labels).set(value)

    def value(self, name: str, **labels: str) -> float:
        """The current value of one series (0 when it was never touched)."""
        if name not in METRICS:
            raise KeyError(f"undeclared metric {name!r}")
        found = self.registry.get_sample_value(name, labels)
        return 0 if found is None else found

    def render(self) -> str:
        return generate_latest(self.registry).decode()


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; an empty host or 0.0.0.0 means every interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


class StatusServer:
    """A tiny HTTP server on a background thread; bind to loopback unless you mean otherwise.

    ``token``: when set, every request needs ``Authorization: Bearer <token>`` (401 otherwise).
    ``idle_timeout``: seconds a connection may stay silent before it is closed, so idle or slow clients
    cannot pin the server's threads.
    """

    def __init__(self, host: str, port: int, metrics: Metrics, health: Callable[[], dict[str, Any]],
                 *, token: str | None = None, idle_timeout: float = 10.0):
        metrics_ref, health_ref = metrics, health
        expected = f"Bearer {token}".encode() if token else None

        class Handler(BaseHTTPRequestHandler):
            timeout = idle_timeout  # StreamRequestHandler puts this on the socket
            server_version = "wardwatch"

            def version_string(self) -> str:  # default: "BaseHTTP/0.6 Python/3.x"
                return self.server_version

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                if expected is not None and not hmac.compare_digest(
                        self.headers.get("Authorization", "").encode(), expected):
                    self._send(401, b"unauthorized\n", "text/plain", {"WWW-Authenticate": 'Bearer realm="wardwatch"'})
                    return
                path = urlsplit(self.path).path
                if path == "/metrics":
                    self._send(200, metrics_ref.render().encode(), CONTENT_TYPE_LATEST)
                elif path == "/health":
                    report = health_ref()
                    code = 200 if report.get("status") == "ok" else 503
                    self._send(code, orjson.dumps(report, default=str), "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # keep request lines out of the JSON logs
                pass

        if not is_loopback(host):
            log.warning("status endpoint bound beyond loopback: anyone who can reach it can read health and "
                        "metrics" + ("" if token else "; set service.http.token_file or token_env"),
                        host=host or "0.0.0.0", port=port)
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="wardwatch-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
