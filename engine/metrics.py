"""What the service tells a SOC about itself: counters, and an HTTP endpoint for health and Prometheus.

Counters are kept in-process (reset at restart, as Prometheus expects) and exposed by the HTTP API
(``engine/api``, ``service.http``, off by default): ``GET /health`` (JSON: ok/degraded, store health,
per-connector and per-job state) and ``GET /metrics`` (Prometheus text format, rendered by
``prometheus_client`` so floats keep full precision). Only counts and names appear here - never event
content - so the endpoint carries no patient data.

Every metric is declared once in ``METRICS`` (name, type, help, labels): a misspelt name or label raises
instead of silently starting a new series nobody alerts on. Each ``Metrics`` has its own
``CollectorRegistry``, so two services (or tests) in one process never share counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client import disable_created_metrics

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
    MetricSpec("wardwatch_lookup_up", "gauge",
               "1 when an enrichment lookup (roster, patients, encounters, ...) is loaded and its last reload "
               "worked, 0 when nothing is loaded or it serves a stale table", ("lookup",)),
    MetricSpec("wardwatch_lookup_entries", "gauge", "Entries in an enrichment lookup's loaded table", ("lookup",)),
    MetricSpec("wardwatch_lookup_loaded_timestamp_seconds", "gauge",
               "Unix time of an enrichment lookup's last successful load", ("lookup",)),
    MetricSpec("wardwatch_lookup_built_timestamp_seconds", "gauge",
               "Unix time the loaded data was built, for a lookup that records it (GeoIP databases)", ("lookup",)),
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
