"""The service: APScheduler drives one ingest job per connector, one evaluation job per rule, delivery.

Each job has ``max_instances=1`` (a rule never overlaps with itself) and ``coalesce=True`` (a slow run is
followed by one catch-up run, not a pile of them). Jobs never raise into the scheduler: a failure is logged
with the job's name and retried at its next interval; since cursors and checkpoints only advance on
success, a retry covers exactly what the failed run missed.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from connectors.base import Connector
from engine.app import App
from engine.config import parse_duration
from engine.evaluation import RuleJob
from engine.ingest import ingest_connector
from engine.logs import get_logger
from engine.metrics import Metrics, StatusServer
from engine.sinks import deliver_pending
from engine.store.base import StoreUnavailable

log = get_logger("wardwatch.service")


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
        self.http: StatusServer | None = None
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
            entry.update(failures=entry["failures"] + 1, error=f"{type(exc).__name__}: {exc}")
            log.error("job failed; will retry", job=name, error=f"{type(exc).__name__}: {exc}", exc_info=True)
        entry["seconds"] = round(time.monotonic() - started, 3)
        self.metrics.inc("wardwatch_job_runs_total", job=name, outcome=outcome)
        self.metrics.set("wardwatch_job_seconds", entry["seconds"], job=name)

    def health(self) -> dict[str, Any]:
        """ok, or degraded (with the failing jobs) — what a load balancer or a SOC dashboard polls."""
        try:
            store = self.app.store.health()
        except Exception as exc:  # the store being down is exactly what health must report
            store = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        failing = {name: entry["error"] for name, entry in self.status.items() if entry.get("error")}
        ok = bool(store.get("ok")) and not failing
        return {"status": "ok" if ok else "degraded", "store": store, "failing_jobs": failing, "jobs": self.status}

    def _ingest(self, connector: Connector) -> None:
        def run() -> None:
            cfg = self.app.config["scheduler"]
            # A bounded number of batches per run keeps one busy source from starving rules and others.
            stats = ingest_connector(self.app.store, connector, self.app.enrichment, cfg["batch_size"],
                                     max_batches=cfg["ingest_batches_per_run"])
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

    def start(self) -> None:
        now = datetime.now(timezone.utc)
        scheduler_cfg = self.app.config["scheduler"]
        self.connectors = self.app.connectors()
        for entry, connector in self.connectors:
            start = getattr(connector, "start", None)
            if callable(start):
                start()
            interval = parse_duration(entry.get("interval", scheduler_cfg["ingest_interval"]))
            self.scheduler.add_job(self._ingest, IntervalTrigger(seconds=interval), args=[connector],
                                   id=f"ingest:{connector.name}", next_run_time=now)
        for job in self.app.jobs:
            self.scheduler.add_job(self._evaluate, IntervalTrigger(seconds=self.app.rule_interval(job)),
                                   args=[job], id=f"rule:{job.id}", next_run_time=now)
        self.scheduler.add_job(lambda: self._guard("deliver", self._deliver),
                               IntervalTrigger(seconds=parse_duration(scheduler_cfg["delivery_interval"])),
                               id="deliver", next_run_time=now)
        self.scheduler.add_job(lambda: self._guard("enrichment", self.app.enrichment.refresh),
                               IntervalTrigger(seconds=parse_duration(scheduler_cfg["enrichment_refresh_interval"])),
                               id="enrichment-refresh")
        self.scheduler.start()
        http = self.app.config["service"]["http"]
        if http["port"] is not None:
            self.http = StatusServer(http["host"], http["port"], self.metrics, self.health)
            self.http.start()
            log.info("status endpoint", address=f"http://{self.http.address[0]}:{self.http.address[1]}")
        log.info("service started", store=self.app.store.kind, connectors=len(self.connectors),
                 rules=len(self.app.jobs))

    def wait(self) -> None:
        self._stopped.wait()

    def request_stop(self) -> None:
        self._stopped.set()

    def stop(self) -> None:
        """Let running jobs finish (their commits are atomic), then close sources and the store."""
        log.info("service stopping")
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
