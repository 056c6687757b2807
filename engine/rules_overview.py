"""``wardwatch rules list``: every configured rule with how it is doing, from the store's point of view.

One row per job the scheduler runs (alerting rules and correlations, ``engine.evaluation.build_jobs``):

* ``last_run``: when its checkpoint was last committed (wall clock); None: never run;
* ``lag_seconds``: how far its checkpoint trails the data, in ingest time (the newest event's
  ``event.ingested`` minus the one the checkpoint covers): 0 when it has seen everything ingested, None when
  it never ran. A growing lag means the rule falls behind the data (or the scheduler is not running);
* ``alerts_24h``: its alerts whose last trigger (event time) is within 24 hours before ``now``;
* ``data_seen``: whether the store holds any event of the datasets its logsource maps to (the taxonomy in
  ``engine.sigma.taxonomy`` resolves a logsource to datasets when the rule loads; ``RuleJob.datasets`` has
  them). False is the coverage gap a SOC must know about: the rule cannot fire because no such data arrives.

The store reads are one query each (``checkpoint_updated``, ``watermark_time``, ``newest_ingested``,
``alert_counts`` from the overview mixins), so the listing costs the same for 30 rules or 2,400.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from engine.events import format_timestamp, timestamp_ms
from engine.store.base import StoreError

COLUMNS = ("id", "title", "level", "status", "last_run", "lag_seconds", "alerts_24h", "data_seen")


def _lag(store: Any, newest: str | None, checkpoint: str | None) -> float | None:
    """Ingest time of the newest event minus the ingest time the checkpoint covers (0: caught up)."""
    if checkpoint is None:
        return None
    covered = store.watermark_time(checkpoint)
    if newest is None or covered is None:
        return 0.0
    return max(0.0, (timestamp_ms(newest) - timestamp_ms(covered)) / 1000.0)


def _status(ruleset: Any, rule_id: str) -> str | None:
    """Sigma's ``status``: compiled rules carry it; a correlation only in its YAML text (few, parsed here)."""
    rule = ruleset.rules.get(rule_id)
    if rule is not None:
        return rule.status
    correlation = ruleset.correlations.get(rule_id)
    if correlation is None or not correlation.source:
        return None
    import yaml

    try:
        data = yaml.safe_load(correlation.source)
    except yaml.YAMLError:
        return None
    status = data.get("status") if isinstance(data, dict) else None
    return None if status is None else str(status)


def rules_overview(app: Any, now: datetime) -> list[dict[str, Any]]:
    """One dict per scheduled rule (keys :data:`COLUMNS`), in title order."""
    store = app.store
    ids = [job.id for job in app.jobs]
    many = getattr(store, "get_checkpoints", None)  # one read where the store has it
    found = many(ids) if many is not None else {i: store.get_checkpoint(i) for i in ids}
    checkpoints = {rule_id: found[rule_id].watermark for rule_id in ids}
    updated = store.checkpoint_updated(ids)
    counts = store.alert_counts(format_timestamp(now - timedelta(hours=24)))
    newest = store.newest_ingested()
    try:
        seen = set(store.event_datasets())
    except StoreError:  # a store without retention support cannot say: unknown, not "no data"
        seen = None
    rows = []
    for job in app.jobs:
        rows.append({
            "id": job.id,
            "title": job.info.title,
            "level": job.info.level,
            "status": _status(app.ruleset, job.id),
            "last_run": updated.get(job.id),
            "lag_seconds": _lag(store, newest, checkpoints[job.id]),
            "alerts_24h": counts.get(job.id, 0),
            "data_seen": None if seen is None else bool(seen & set(job.datasets)),
            "datasets": list(job.datasets),
        })
    rows.sort(key=lambda r: (r["title"].lower(), r["id"]))
    return rows
