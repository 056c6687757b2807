"""What the service tells a SOC about itself: counters, and an HTTP endpoint for health and Prometheus.

Counters are kept in-process (reset at restart, as Prometheus expects) and exposed on
``service.http`` (off by default): ``GET /health`` (JSON: ok/degraded, store health, per-job last result)
and ``GET /metrics`` (Prometheus text format 0.0.4). Only counts and names appear here — never event
content — so the endpoint carries no patient data.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import orjson


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Thread-safe counters and gauges with labels, rendered in the Prometheus text format."""

    HELP = {
        "wardwatch_events_ingested_total": "Events read from a connector and committed to the store",
        "wardwatch_events_duplicate_total": "Events already in the store (replays), not stored again",
        "wardwatch_dead_letters_total": "Input records that could not become events",
        "wardwatch_alerts_total": "Alert revisions committed, by rule",
        "wardwatch_job_runs_total": "Scheduler job runs, by job and outcome",
        "wardwatch_job_seconds": "Duration of the last run of a job",
        "wardwatch_job_last_success_timestamp_seconds": "Unix time of the last successful run of a job",
    }
    TYPES = {"wardwatch_job_seconds": "gauge", "wardwatch_job_last_success_timestamp_seconds": "gauge"}

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values[name]
            series[key] = series.get(key, 0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[name][tuple(sorted(labels.items()))] = value

    def value(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values.get(name, {}).get(tuple(sorted(labels.items())), 0)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name in sorted(self._values):
                lines.append(f"# HELP {name} {self.HELP.get(name, name)}")
                lines.append(f"# TYPE {name} {self.TYPES.get(name, 'counter')}")
                for labels, value in sorted(self._values[name].items()):
                    text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                    lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")
        return "\n".join(lines) + "\n"


class StatusServer:
    """A tiny HTTP server on a background thread; bind to loopback unless you mean otherwise."""

    def __init__(self, host: str, port: int, metrics: Metrics, health: Callable[[], dict[str, Any]]):
        metrics_ref, health_ref = metrics, health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                if self.path == "/metrics":
                    body, ctype, code = metrics_ref.render().encode(), "text/plain; version=0.0.4", 200
                elif self.path == "/health":
                    report = health_ref()
                    body = orjson.dumps(report, default=str)
                    ctype, code = "application/json", 200 if report.get("status") == "ok" else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # keep request lines out of the JSON logs
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
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
