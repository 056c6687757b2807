"""Background hunts for the API: a bounded number at once, progress while they run, results kept a while.

Why jobs: a hunt reads the history of its range (minutes on a large store), longer than an HTTP request
should live. ``POST /api/v1/hunts`` starts one and answers 202 with its id; ``GET /api/v1/hunts/{id}`` shows
how many events it has read and, when done, the result in the ``rules test`` contract.

Why bounded: each hunt is a full scan competing with the scheduler for the store. At most ``max_running``
run at once; one more is refused (429) rather than queued, so a client learns at once and nothing piles up
unseen. The last ``keep`` finished jobs are kept in memory (a restart forgets them: re-run the hunt, its
alert ids are deterministic).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from engine.logs import get_logger

log = get_logger("wardwatch.api.hunts")

#: ``run(job, progress)`` does the hunt and returns its result dict; ``progress(events_read)``.
HuntRunner = Callable[["HuntJob", Callable[[int], None]], dict[str, Any]]


class HuntsBusy(Exception):
    """``max_running`` hunts are running already."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class HuntJob:
    """One hunt: what was asked (by whom), where it is, and its result or error."""

    id: str
    actor: str
    request: dict[str, Any]
    status: str = "running"  # running | done | failed
    events_scanned: int = 0
    created: str = field(default_factory=_now)
    finished: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "actor": self.actor, "request": self.request, "status": self.status,
                "events_scanned": self.events_scanned, "created": self.created, "finished": self.finished,
                "result": self.result, "error": self.error}


class HuntJobs:
    """The API's hunts, each on its own daemon thread (a stopping service does not wait for a long hunt)."""

    def __init__(self, run: HuntRunner, max_running: int, keep: int = 50):
        self._run, self.max_running, self._keep = run, max_running, keep
        self._jobs: dict[str, HuntJob] = {}
        self._lock = threading.Lock()

    def running(self) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.status == "running")

    def submit(self, actor: str, request: dict[str, Any]) -> HuntJob:
        job = HuntJob(id=uuid.uuid4().hex, actor=actor, request=request)
        with self._lock:
            if sum(1 for j in self._jobs.values() if j.status == "running") >= self.max_running:
                raise HuntsBusy(f"{self.max_running} hunt(s) are running already (service.http.max_hunt_jobs); "
                                "try again when one has finished")
            self._jobs[job.id] = job
            self._forget_old()
        threading.Thread(target=self._work, args=(job,), name=f"wardwatch-hunt-{job.id[:8]}", daemon=True).start()
        return job

    def get(self, job_id: str) -> HuntJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[HuntJob]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)

    def _work(self, job: HuntJob) -> None:
        def progress(scanned: int) -> None:
            job.events_scanned = scanned

        try:
            result = self._run(job, progress)
        except Exception as exc:  # noqa: BLE001 - a failed hunt is a job state, not a dead thread
            from engine.errors import WardwatchError

            job.error = str(exc) if isinstance(exc, WardwatchError) else f"{type(exc).__name__} (see the service log)"
            job.status = "failed"
            log.warning("hunt failed", job=job.id, error=type(exc).__name__)
        else:
            job.result, job.status = result, "done"
            job.events_scanned = int(result.get("events_scanned", job.events_scanned))
        job.finished = _now()

    def _forget_old(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.status != "running"), key=lambda j: j.created)
        for job in finished[: max(0, len(finished) - self._keep)]:
            del self._jobs[job.id]
