"""The service: APScheduler drives one ingest job per connector, one evaluation job per rule, delivery.

Each job has ``max_instances=1`` (a rule never overlaps with itself) and ``coalesce=True`` (a slow run is
followed by one catch-up run, not a pile of them). Jobs never raise into the scheduler: a failure is logged
with the job's name and retried at its next interval; since cursors and checkpoints only advance on
success, a retry covers exactly what the failed run missed.

No silent blindness: each connector's health (could its source be read on the last poll, and if not,
why) is kept in ``engine.health`` and mirrored to the store, so ``/health`` goes degraded naming the
connector and ``wardwatch status`` shows the same. A listener that cannot bind is retried on every poll.
The enrichment's lookups too (``engine.enrich.lookups.LookupStatus``): one that has nothing loaded, or
serves a stale table because its last reload failed, turns ``/health`` degraded and ``wardwatch_lookup_up`` to 0.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from connectors.base import Connector
from engine.app import App
from engine.config import parse_duration
from engine.errors import SourceUnavailable
from engine.evaluation import RuleJob
from engine.health import HealthBook, scrub_report
from engine.ingest import ingest_connector
from engine.logs import get_logger
from engine.metrics import Metrics
from engine.alerts.sinks import deliver_pending
from engine.store.base import StoreError, StoreUnavailable

if TYPE_CHECKING:
    from engine.enrich.lookups import LookupStatus

log = get_logger("wardwatch.service")
#: Seconds between incident rounds (deadline gauges, reminders): a reminder is at most this late.
INCIDENT_INTERVAL = 60.0


class Service:
    def __init__(self, app: App):
        self.app = app
        self.scheduler = BackgroundScheduler(
            timezone=timezone.utc,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.connectors: list[tuple[dict[str, Any], Connector]] = []
        self.status: dict[str, dict[str, Any]] = {}
        self.metrics = Metrics()
        self.connector_health = HealthBook(app.store)
        self._started: set[str] = set()  # connectors whose start() (listener bind) succeeded
        self.http: Any = None  # engine.api.server.ApiServer when service.http.port is set
        self._stopped = threading.Event()
        # Rule jobs deliver right after committing alerts, and so does the delivery job: one at a time, or
        # two threads would hand the same pending revision to a sink twice.
        self._delivery_lock = threading.Lock()

    def _guard(self, name: str, func: Callable[[], Any]) -> None:
        started = time.monotonic()
        entry = self.status.setdefault(name, {"runs": 0, "failures": 0})
        outcome = "ok"
        try:
            func()
            entry.update(runs=entry["runs"] + 1, last_ok=datetime.now(timezone.utc).isoformat(), error=None)
            self.metrics.set("wardwatch_job_last_success_timestamp_seconds", time.time(), job=name)
        except StoreUnavailable as exc:
            outcome = "store_unavailable"
            entry.update(failures=entry["failures"] + 1, error=str(exc))
            log.warning("store unavailable; will retry", job=name, error=str(exc))
        except Exception as exc:  # a job must never take the service down
            outcome = "error"
            # The traceback once per failure streak (a job failing every poll must not flood the log);
            # each repeat is one line. A success ends the streak (error=None).
            repeat = entry.get("error") is not None
            entry.update(failures=entry["failures"] + 1, error=f"{type(exc).__name__}: {exc}")
            log.error("job failed again; will retry" if repeat else "job failed; will retry", job=name,
                      error=f"{type(exc).__name__}: {exc}", failures=entry["failures"], exc_info=not repeat)
        entry["seconds"] = round(time.monotonic() - started, 3)
        self.metrics.inc("wardwatch_job_runs_total", job=name, outcome=outcome)
        self.metrics.set("wardwatch_job_seconds", entry["seconds"], job=name)

    def health(self) -> dict[str, Any]:
        """ok, or degraded (naming the failing connectors and jobs) — what a load balancer or a SOC dashboard
        polls. Scrubbed: no absolute paths, no URL query strings (see ``engine.health``)."""
        try:
            store = self.app.store.health()
        except Exception as exc:  # the store being down is exactly what health must report
            store = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        connectors = {
            connector.name: (self.connector_health.entries[connector.name].to_dict()
                             if connector.name in self.connector_health.entries else {"ok": True, "reason": None})
            for _, connector in self.connectors
        }
        failing = {name: entry["error"] for name, entry in self.status.items() if entry.get("error")}
        lookups = {status.name: status.to_dict() for status in self.app.enrichment.lookups()}
        ok = (bool(store.get("ok")) and not failing and all(c["ok"] for c in connectors.values())
              and all(entry["ok"] for entry in lookups.values()))
        return scrub_report({"status": "ok" if ok else "degraded", "store": store, "connectors": connectors,
                             "lookups": lookups, "failing_jobs": failing, "jobs": self.status})

    def _refresh_lookups(self) -> None:
        """Reload the enrichment's changed lookups, then say how each one stands (``wardwatch_lookup_*``)."""
        self.app.enrichment.refresh()
        self._lookup_metrics()

    def _lookup_metrics(self) -> None:
        lookup_metrics(self.metrics, self.app.enrichment.lookups())

    def _start_connector(self, connector: Connector) -> None:
        """Start a push source's listeners (bind errors raise); a no-op once it has started."""
        start = getattr(connector, "start", None)
        if callable(start) and connector.name not in self._started:
            try:
                start()
            except Exception as exc:  # e.g. the port is taken: say which connector, keep the reason
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                if isinstance(exc, SourceUnavailable) and repr(connector.name) in reason:
                    raise  # the listener layer's line already names the connector, listen entry and port
                raise SourceUnavailable(f"connector {connector.name!r}: cannot start its listener: {reason}") from exc
        self._started.add(connector.name)

    def _connector_failed(self, connector: Connector, exc: BaseException) -> None:
        self.connector_health.failed(connector.name, exc)
        self.metrics.set("wardwatch_connector_up", 0, connector=connector.name)

    def _ingest(self, connector: Connector) -> None:
        def run() -> None:
            cfg = self.app.config["scheduler"]
            try:
                self._start_connector(connector)  # a listener that could not bind is retried every poll
                # A bounded number of batches per run keeps one busy source from starving rules and others.
                stats = ingest_connector(self.app.store, connector, self.app.enrichment, cfg["batch_size"],
                                         max_batches=cfg["ingest_batches_per_run"])
            except StoreError:
                raise  # the store's fault, reported by the store's health; the source is not to blame
            except Exception as exc:
                self._connector_failed(connector, exc)
                raise
            if stats.unavailable:  # the connector kept going (dead-lettered the failure) but saw nothing
                self._connector_failed(connector, SourceUnavailable(stats.unavailable))
            else:
                self.connector_health.ok(connector.name)
                self.metrics.set("wardwatch_connector_up", 1, connector=connector.name)
            self.metrics.inc("wardwatch_events_ingested_total", stats.written, connector=connector.name)
            self.metrics.inc("wardwatch_events_duplicate_total", stats.duplicates, connector=connector.name)
            self.metrics.inc("wardwatch_dead_letters_total", stats.dead_letters, connector=connector.name)
            if stats.events or stats.dead_letters:
                log.info("ingested", connector=connector.name, events=stats.events, duplicates=stats.duplicates,
                         dead_letters=stats.dead_letters, seconds=round(stats.seconds, 3))

        self._guard(f"ingest:{connector.name}", run)

    def _evaluate(self, job: RuleJob) -> None:
        def run() -> None:
            result = self.app.evaluator.run(job)
            if result.alerts:
                self.metrics.inc("wardwatch_alerts_total", len(result.alerts), rule=job.id)
                log.info("alerts", rule=job.id, title=job.info.title, alerts=len(result.alerts))
                self._deliver()

        self._guard(f"rule:{job.id}", run)

    def _deliver(self) -> None:
        with self._delivery_lock:
            deliver_pending(self.app.store, self.app.sinks)

    def _incidents(self) -> None:
        from engine.incidents import service_round

        with self._delivery_lock:  # reminders use the sinks' connections too: never beside a delivery round
            service_round(self.app.store, self.app.sinks, self.metrics)  # deadline gauges + reminders due

    def _retention(self) -> None:
        from engine.retention import run_for_app

        run_for_app(self.app)  # logs a count per dataset (never event content)

    def start(self) -> None:
        http = self.app.config["service"]["http"]
        if http["port"] is not None:  # tokens, TLS files and the port are checked before anything runs
            from engine.api import build_server

            self.http = build_server(self.app, self.metrics, self.health)
        now = datetime.now(timezone.utc)
        scheduler_cfg = self.app.config["scheduler"]
        self.connectors = self.app.connectors()
        for entry, connector in self.connectors:
            try:
                self._start_connector(connector)
            except Exception as exc:  # e.g. a port in use: report it, keep the other sources running
                self._connector_failed(connector, exc)
                log.error("connector cannot start; retrying every poll", connector=connector.name,
                          error=str(exc))
            interval = parse_duration(entry.get("interval", scheduler_cfg["ingest_interval"]))
            self.scheduler.add_job(self._ingest, IntervalTrigger(seconds=interval), args=[connector],
                                   id=f"ingest:{connector.name}", next_run_time=now)
        for job in self.app.jobs:
            self.scheduler.add_job(self._evaluate, IntervalTrigger(seconds=self.app.rule_interval(job)),
                                   args=[job], id=f"rule:{job.id}", next_run_time=now)
        self.scheduler.add_job(lambda: self._guard("deliver", self._deliver),
                               IntervalTrigger(seconds=parse_duration(scheduler_cfg["delivery_interval"])),
                               id="deliver", next_run_time=now)
        self._lookup_metrics()
        self.scheduler.add_job(lambda: self._guard("enrichment", self._refresh_lookups),
                               IntervalTrigger(seconds=parse_duration(scheduler_cfg["enrichment_refresh_interval"])),
                               id="enrichment-refresh")
        # GDPR storage limitation (engine.retention); not at start-up: a restart must not block on a long purge
        self.scheduler.add_job(lambda: self._guard("retention", self._retention),
                               IntervalTrigger(seconds=parse_duration(scheduler_cfg["retention_interval"])),
                               id="retention")
        self.scheduler.add_job(lambda: self._guard("incidents", self._incidents),
                               IntervalTrigger(seconds=INCIDENT_INTERVAL), id="incidents", next_run_time=now)
        self.scheduler.start()
        if self.http is not None:
            self.http.start()
            log.info("status endpoint", listen=self.http.url)  # the API and /health, /metrics
        log.info("service started", store=self.app.store.kind, connectors=len(self.connectors),
                 rules=len(self.app.jobs))

    def wait(self) -> None:
        self._stopped.wait()

    def request_stop(self) -> None:
        self._stopped.set()

    def stop(self) -> None:
        """Let running jobs finish (their commits are atomic), then close sources and the store."""
        log.info("service stopping")
        if self.scheduler.running:  # a start that failed early (the API port in use) never started it
            self.scheduler.shutdown(wait=True)
        if self.http is not None:
            self.http.stop()
        for _, connector in self.connectors:
            try:
                connector.close()
            except Exception as exc:  # closing must not hide the others
                log.warning("connector close failed", connector=connector.name, error=str(exc))
        self._guard("deliver", self._deliver)
        self.app.close()
        log.info("service stopped")


def lookup_metrics(metrics: Metrics, statuses: Iterable[LookupStatus]) -> None:
    """Each lookup's ``wardwatch_lookup_*`` gauges, from its status (engine.enrich.lookups.LookupStatus)."""
    for status in statuses:
        metrics.set("wardwatch_lookup_up", 1 if status.ok else 0, lookup=status.name)
        if status.entries is not None:
            metrics.set("wardwatch_lookup_entries", status.entries, lookup=status.name)
        if status.loaded_at is not None:
            metrics.set("wardwatch_lookup_loaded_timestamp_seconds", status.loaded_at, lookup=status.name)
        if status.built_at is not None:
            metrics.set("wardwatch_lookup_built_timestamp_seconds", status.built_at, lookup=status.name)
