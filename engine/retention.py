"""One retention pass: delete what the ``retention:`` policy says has expired, never what a rule still needs.

The checkpoint guard. A rule run reads the events ingested since its checkpoint and, around their event
times, the context its correlation windows and suppression period reach (``engine.evaluation``). So for each
rule job the oldest event time it may still read is::

    min(oldest @timestamp ingested after its checkpoint, now) - (correlation timespan + suppression period)

(``now`` stands for events still to come). A rule that never ran has evaluated nothing, so all events stay.
The pass never deletes events, or alerts (episode merging reads the latest alert of a group), at or after the
oldest such time over every configured rule; the report names the rule that held a cut-off back.

The audit chain (``retention.audit``) is pruned from its oldest end only, with the prune recorded in the
chain so that ``audit verify`` still checks every entry kept (``engine.audit.retention``).

Stores do the deleting in bounded units (``Store.purge_*``); this module only decides the cut-offs, so both
stores apply one policy. Reports carry counts and dataset names only, never event content (PHI).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from engine.audit.retention import prune_audit
from engine.events import format_timestamp, from_timestamp_ms, timestamp_ms
from engine.logs import get_logger
from engine.retention_policy import RetentionPolicy
from engine.store.base import PurgeResult, Store

log = get_logger("wardwatch.retention")

SPOOL_SUFFIX = ".spool"


@dataclass(frozen=True)
class RuleNeed:
    """How far back in event time a rule job reads beyond its new events."""

    rule_id: str
    context_ms: int


def rule_needs(jobs: Iterable[Any]) -> list[RuleNeed]:
    """From ``engine.evaluation.RuleJob`` objects: correlation span plus suppression period."""
    return [RuleNeed(job.id, int(job.span_ms) + int(job.suppression.period_ms)) for job in jobs]


@dataclass
class Guard:
    """The oldest event time any rule may still read (ms), and the rule that needs it."""

    oldest_ms: int | None
    rule_id: str | None


def checkpoint_guard(store: Store, needs: Sequence[RuleNeed], now_ms: int) -> Guard:
    guard = Guard(None, None)
    oldest_by_watermark: dict[str | None, int] = {}
    for need in needs:
        watermark = store.get_checkpoint(need.rule_id).watermark
        if watermark not in oldest_by_watermark:
            oldest = store.oldest_unevaluated(watermark)
            oldest_by_watermark[watermark] = now_ms if oldest is None else min(now_ms, timestamp_ms(oldest))
        needed = oldest_by_watermark[watermark] - need.context_ms
        if guard.oldest_ms is None or needed < guard.oldest_ms:
            guard = Guard(needed, need.rule_id)
    return guard


@dataclass
class Line:
    """One row of the report: what was (dry run: would be) deleted for one kind of data."""

    what: str  # "events <dataset>", "alerts", "dead letters", "spool <dir name>"
    keep: str  # the configured period, e.g. "400d"
    before: str  # the cut-off actually applied (canonical timestamp)
    deleted: int = 0
    transactions: int = 0
    indices_dropped: list[str] = field(default_factory=list)
    held_by: str | None = None  # rule whose checkpoint moved the cut-off back


@dataclass
class RetentionReport:
    dry_run: bool
    enabled: bool = True  # False: every retention period is null
    lines: list[Line] = field(default_factory=list)
    space: str = ""

    def to_text(self) -> list[str]:
        verb = "would delete" if self.dry_run else "deleted"
        out = []
        for line in self.lines:
            text = f"{line.what}: {verb} {line.deleted} (older than {line.keep}, before {line.before})"
            if not self.dry_run:
                text += f" in {line.transactions} transaction{'s' if line.transactions != 1 else ''}"
            if line.indices_dropped:
                text += f"; whole indices: {', '.join(line.indices_dropped)}"
            if line.held_by:
                text += f"; held back by rule {line.held_by} (its checkpoint still needs newer events)"
            out.append(text)
        if not out and not self.enabled:
            out.append("retention: nothing configured (every retention period is null: keep forever)")
        elif not out:
            out.append("retention: nothing stored that a retention period applies to")
        if self.space:
            out.append(f"space: {self.space}")
        return out


def _period(seconds: int) -> str:
    return f"{seconds // 86400}d" if seconds % 86400 == 0 else f"{seconds // 3600}h"


def _ts(ms: int) -> str:
    return format_timestamp(from_timestamp_ms(ms))


def run_retention(store: Store, policy: RetentionPolicy, needs: Sequence[RuleNeed], *,
                  spool_dirs: Sequence[Path] = (), now_ms: int | None = None,
                  dry_run: bool = False) -> RetentionReport:
    """Apply ``policy`` once. Safe to repeat and to interrupt: each unit commits on its own, and a repeat
    deletes only what is still there."""
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    report = RetentionReport(dry_run=dry_run, enabled=policy.enabled)
    if not policy.enabled:
        return report
    guard = checkpoint_guard(store, needs, now)

    def cutoff(seconds: int, guarded: bool) -> tuple[int, str | None]:
        ms = now - seconds * 1000
        if guarded and guard.oldest_ms is not None and guard.oldest_ms < ms:
            return guard.oldest_ms, guard.rule_id
        return ms, None

    def add(what: str, seconds: int, before_ms: int, held: str | None, result: PurgeResult) -> None:
        report.lines.append(Line(what, _period(seconds), _ts(before_ms), result.deleted, result.transactions,
                                 list(result.indices_dropped), held))

    for dataset in store.event_datasets():
        seconds = policy.for_dataset(dataset)
        if seconds is None:
            continue
        before_ms, held = cutoff(seconds, guarded=True)
        add(f"events {dataset}", seconds, before_ms, held,
            store.purge_events(dataset, _ts(before_ms), dry_run=dry_run, batch_size=policy.batch_size))
    if policy.alerts is not None:
        before_ms, held = cutoff(policy.alerts, guarded=True)
        add("alerts", policy.alerts, before_ms, held,
            store.purge_alerts(_ts(before_ms), dry_run=dry_run, batch_size=policy.batch_size))
    if policy.dead_letters is not None:
        before_ms, _ = cutoff(policy.dead_letters, guarded=False)
        add("dead letters", policy.dead_letters, before_ms, None,
            store.purge_dead_letters(_ts(before_ms), dry_run=dry_run, batch_size=policy.batch_size))
    if policy.spool is not None:
        before_ms, _ = cutoff(policy.spool, guarded=False)
        for directory in spool_dirs:
            add(f"spool {directory.name}", policy.spool, before_ms, None,
                prune_spool(directory, before_ms, dry_run=dry_run))
    if policy.audit is not None:
        before_ms, _ = cutoff(policy.audit, guarded=False)
        add("audit entries", policy.audit, before_ms, None,
            prune_audit(store, _ts(before_ms), dry_run=dry_run, batch_size=policy.batch_size))
    if not dry_run and any(line.deleted for line in report.lines):
        report.space = store.reclaim_space()
    for line in report.lines:
        if line.deleted:
            log.info("retention", what=line.what, deleted=line.deleted, dry_run=dry_run,
                     transactions=line.transactions, held_by=line.held_by)
    return report


def prune_spool(directory: Path, before_ms: int, *, dry_run: bool = False) -> PurgeResult:
    """Delete syslog spool segments last written before ``before_ms``.

    Ingested segments are removed by the connector as soon as their events are committed, so what is left
    here is received data the engine has not ingested (the store was down, the connector disabled). The
    newest segment is never touched: a running listener may still be appending to it. Dropping unread
    segments loses those messages by policy, which is why the report and the log say how many files went.
    """
    result = PurgeResult()
    try:
        segments = sorted(p for p in directory.iterdir() if p.name.endswith(SPOOL_SUFFIX))
    except FileNotFoundError:
        return result
    for path in segments[:-1]:
        try:
            if os.stat(path).st_mtime * 1000 >= before_ms:
                continue
            if not dry_run:
                path.unlink()
                result.transactions += 1
        except FileNotFoundError:
            continue  # acknowledged by the connector meanwhile
        result.deleted += 1
    if result.deleted and not dry_run:
        log.warning("spool segments expired before they were ingested", directory=directory.name,
                    segments=result.deleted)
    return result


def spool_dirs(config: Any) -> list[Path]:
    """The spool directories of the configured (enabled) syslog connectors."""
    return [Path(config.resolve_path(entry["spool_dir"])) for entry in config["connectors"]
            if entry.get("enabled", True) and entry.get("type") == "atna-syslog" and entry.get("spool_dir")]


def run_for_app(app: Any, *, dry_run: bool = False) -> RetentionReport:
    """The configured pass for a built ``engine.app.App`` (the CLI command and the service job).

    Refuses while a rule fails to load: its checkpoint would not be consulted, and the pass could delete
    context that rule needs once it is fixed."""
    from engine.retention_policy import parse_retention

    errors = getattr(app.ruleset, "errors", None)
    if errors:
        raise RuntimeError(f"retention not run: {len(errors)} rule(s) failed to load, and their checkpoints "
                           "must be honoured; fix them first (wardwatch rules validate)")
    return run_retention(app.store, parse_retention(app.config["retention"]), rule_needs(app.jobs),
                         spool_dirs=spool_dirs(app.config), dry_run=dry_run)
