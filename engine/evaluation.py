"""One rule run: new events since the checkpoint -> matches -> (correlation) -> episodes -> alerts.

"Window on ingest time, correlate on event time": a run looks at events *ingested* since the rule's
checkpoint (so late events are never skipped), then loads the *event-time* context around them that the
rule's windows and suppression period need, so correlations see older events too. Alerts and the new
checkpoint are committed in one store call; a crash before it means the run is simply repeated, and
deterministic alert ids make the repeat land on the same alerts.
"""

from __future__ import annotations

import time
from functools import partial
from itertools import chain
from operator import itemgetter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from engine.alerts.model import Alert
from engine.correlation import Match, Trigger, evaluate_correlation, trigger_as_match
from engine.alerts.episodes import Hit, RuleInfo, assign_anchors, build_alert, group_key_of, merge_revision
from engine.gc_pause import cyclic_gc_paused
from engine.events import DATASET, EVENT_ID, TIMESTAMP, format_timestamp, from_timestamp_ms, timestamp_clock
from engine.logs import get_logger
from engine.alerts.pseudonymise import Pseudonymiser
from engine.store.base import RuleCheckpoint, SearchQuery, Store

log = get_logger("wardwatch.evaluation")


#: Fields shown with a single-event alert (when present) so an analyst sees who and where at a glance.
ENTITY_FIELDS = ("user.name", "source.ip", "host.name", "Computer", "TargetUserName")

#: (event_id, ts_ms) of a ``Match``, for the event times of a job built in C
_ID_AND_TIME = itemgetter(2, 1)


@dataclass(frozen=True)
class Suppression:
    by: tuple[str, ...] = ()
    period_ms: int = 0


@dataclass
class RuleJob:
    """What the scheduler runs: one alerting rule or one alerting correlation (with everything below it)."""

    id: str
    info: RuleInfo
    leaves: tuple[Any, ...]  # CompiledRule objects whose matches feed this job
    correlations: tuple[Any, ...] = ()  # CompiledCorrelation objects, inner before outer; last = this job
    suppression: Suppression = Suppression()
    span_ms: int = 0  # total timespan through the correlation chain

    @property
    def is_correlation(self) -> bool:
        return bool(self.correlations)

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(sorted({ds for leaf in self.leaves for ds in leaf.datasets}))

    @property
    def reads_every_field(self) -> bool:
        """A keyword rule feeds this job: its scans must return whole events, not only named fields."""
        return any(leaf.reads_every_field for leaf in self.leaves)


@dataclass
class RunResult:
    job_id: str
    scanned: int = 0
    matched: int = 0
    alerts: list[Alert] = field(default_factory=list)
    seconds: float = 0.0
    skipped: bool = False


def _rule_info(obj: Any, kind: str) -> RuleInfo:
    spec = getattr(obj, "spec", None)
    metric_name = None
    if spec is not None:
        metric_name = spec.type if spec.type not in ("temporal", "temporal_ordered") else "temporal"
    return RuleInfo(
        id=obj.id,
        title=obj.title,
        level=obj.level or "medium",
        tags=tuple(obj.tags),
        description=obj.description or "",
        kind=kind,
        correlation_type=spec.type if spec is not None else None,
        metric_name=metric_name,
        metric_field=spec.condition_field if spec is not None else None,
        condition=dict(spec.condition) if spec is not None else {},
    )


def build_jobs(ruleset: Any, suppression: Mapping[str, Mapping[str, Any]] | None = None) -> list[RuleJob]:
    """One job per alerting rule and per alerting correlation (see ``RuleSet.alerting_rules``)."""
    from engine.config import parse_duration

    suppression = suppression or {}

    def suppression_for(obj: Any, default_ms: int) -> Suppression:
        spec = suppression.get(obj.id) or (suppression.get(obj.name) if obj.name else None)
        if not spec:
            return Suppression((), default_ms)
        return Suppression(tuple(spec.get("by", ())), int(parse_duration(spec.get("for", "1h")) * 1000))

    jobs: list[RuleJob] = []
    for rule in ruleset.alerting_rules():
        jobs.append(RuleJob(rule.id, _rule_info(rule, "match"), (rule,), (), suppression_for(rule, 0)))

    referenced = {ref for corr in ruleset.correlations.values() for ref in corr.spec.rules}
    generating_parents = {
        ref for corr in ruleset.correlations.values() if corr.spec.generate for ref in corr.spec.rules
    }
    for corr in ruleset.correlation_order():
        if corr.id in referenced and corr.id not in generating_parents:
            continue
        chain: list[Any] = []
        leaves: dict[str, Any] = {}

        def walk(c: Any) -> int:
            span = 0
            for ref in c.spec.rules:
                if ref in ruleset.correlations:
                    span = max(span, walk(ruleset.correlations[ref]))
                else:
                    leaves[ref] = ruleset.rules[ref]
            if c not in chain:
                chain.append(c)
            return span + c.spec.timespan_ms

        span = walk(corr)
        jobs.append(
            RuleJob(
                corr.id,
                _rule_info(corr, "correlation"),
                tuple(leaves.values()),
                tuple(chain),
                suppression_for(corr, corr.spec.timespan_ms),
                span,
            )
        )
    return jobs


class Evaluator:
    """Runs jobs against a store. Stateless between runs: all state lives in the store."""

    def __init__(
        self,
        store: Store,
        evidence_cap: int = 100,
        pseudonymiser: Pseudonymiser | None = None,
        candidates: Callable[[Mapping[str, Any]], Sequence[Any]] | None = None,
        pushdown: Callable[[Any], str | None] | None = None,
        slice_events: int = 200_000,
    ):
        self.store = store
        self.slice_events = slice_events
        self.candidates = candidates
        self.pushdown = pushdown
        self._pushdown_cache: dict[str, str | None] = {}
        self.evidence_cap = evidence_cap
        self.pseudonymiser = pseudonymiser or Pseudonymiser.disabled()

    # -- scanning ---------------------------------------------------------------------------------
    def _scan(self, jobs: Sequence[RuleJob], **bounds: Any) -> tuple[dict[str, list[Match]], dict[str, int], int]:
        """One pass over the store for several jobs: matches by leaf rule id, event times, events scanned.

        Each event meets only the leaf rules of its dataset (and, with a rule index, its discriminating
        field), and a leaf shared by several jobs is evaluated once. The store returns only the fields the
        rules read, unless a keyword rule is among them ("any string field contains"): then whole events.
        """
        leaves = {leaf.id: leaf for job in jobs for leaf in job.leaves}
        by_rule: dict[str, list[Match]] = {rule_id: [] for rule_id in leaves}
        by_dataset: dict[str, list[Any]] = {}
        for leaf in leaves.values():
            for dataset in leaf.datasets:
                by_dataset.setdefault(dataset, []).append(leaf)
        times: dict[str, int] = {}
        scanned = 0
        fields: list[str] | None = None
        if not any(job.reads_every_field for job in jobs):
            fields = sorted({f for leaf in leaves.values() for f in leaf.fields}
                            | {f for job in jobs for f in self._extra_fields(job)})
        query = SearchQuery(datasets=tuple(sorted(by_dataset)), fields=fields, fields_at_least=True,
                            prefilter=self._prefilter(leaves.values()), **bounds)
        match = self._matcher_for(leaves)
        if match is None:
            match = partial(_every_leaf_of_dataset, by_dataset)
        # ~130k matches in the rules window: the tuple is built without the named tuple's Python-level
        # __new__ (as ``Match._make`` does), and each leaf's list append is bound once
        new, add = tuple.__new__, {rule_id: ms.append for rule_id, ms in by_rule.items()}
        clock = timestamp_clock()
        for event in self.store.search(query):
            scanned += 1
            matched = match(event)
            if matched:
                eid = event[EVENT_ID]
                ts = times.get(eid)
                if ts is None:
                    ts = times[eid] = clock(event[TIMESTAMP])
                for leaf in matched:
                    add[leaf.id](new(Match, (leaf.id, ts, eid, event)))
        return by_rule, times, scanned

    def _matcher_for(self, leaves: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], Sequence[Any]] | None:
        """The function event -> the leaves it matches, for one scan; None: every leaf of the event's
        dataset is checked (no rule index). With a rule set's ``candidates``, its ``matcher`` over these
        leaves (engine/sigma/scan.py: memoised index lookups, the literal scan only where it pays, one
        check for rules with the same detection)."""
        candidates = self.candidates
        if candidates is None:
            return None
        matcher = getattr(getattr(candidates, "__self__", None), "matcher", None)
        if matcher is not None:
            return matcher(frozenset(leaves))
        return lambda event: [r for r in candidates(event) if r.id in leaves and r.matches(event)]

    def _prefilter(self, leaves: Iterable[Any]) -> str | None:
        """The store-side narrowing query for these rules (their OR), or None when any cannot be pushed
        down — then the store scans dataset + time range and the evaluator alone decides."""
        if self.pushdown is None:
            return None
        parts = []
        for leaf in leaves:
            if leaf.reads_every_field:
                # Keywords search every string field, also those a store keeps unindexed (event.original on
                # Elasticsearch, values beyond its ignore_above): no store query is a superset of that.
                return None
            if leaf.id not in self._pushdown_cache:
                self._pushdown_cache[leaf.id] = self.pushdown(leaf)
            query = self._pushdown_cache[leaf.id]
            if query is None:
                return None
            parts.append(f"({query})")
        return " OR ".join(parts) if parts else None

    def _extra_fields(self, job: RuleJob) -> set[str]:
        extra = set(job.suppression.by) | {DATASET} | set(ENTITY_FIELDS)
        for corr in job.correlations:
            extra |= set(corr.fields)
        return extra

    # -- hits ---------------------------------------------------------------------------------------
    def _hits(self, job: RuleJob, matches: dict[str, list[Match]]) -> list[Hit]:
        if not job.is_correlation:
            hits = []
            for match in matches[job.leaves[0].id]:
                if job.suppression.period_ms > 0:
                    group = {f: match.fields.get(f) for f in job.suppression.by}
                    group = self.pseudonymiser.apply(group)
                    key = group_key_of(group)
                else:
                    # Not a grouping: who/where, so the alert is readable. The key is the event itself.
                    group = {f: match.fields[f] for f in ENTITY_FIELDS if match.fields.get(f) is not None}
                    group, key = self.pseudonymiser.apply(group), match.event_id
                hits.append(Hit(group, key, match.ts_ms, match.ts_ms, (match.event_id,)))
            return hits
        produced: dict[str, list[Match]] = dict(matches)
        expansion: dict[str, tuple[str, ...]] = {}
        triggers: list[Trigger] = []
        for corr in job.correlations:
            inputs = [m for ref in corr.spec.rules for m in produced.get(ref, [])]
            triggers = evaluate_correlation(corr.spec, inputs)
            as_matches = []
            for trig in triggers:
                match = trigger_as_match(trig)
                expansion[match.event_id] = tuple(
                    eid for inner in trig.event_ids for eid in expansion.get(inner, (inner,))
                )
                as_matches.append(match)
            produced[corr.id] = as_matches
        hits = []
        for trig in triggers:
            ids = tuple(eid for inner in trig.event_ids for eid in expansion.get(inner, (inner,)))
            group = self.pseudonymiser.apply(trig.group)
            hits.append(Hit(group, group_key_of(group), trig.ts_ms, trig.window_start_ms, ids, trig.metric))
        return hits

    # -- runs ---------------------------------------------------------------------------------------
    def run(self, job: RuleJob, upto: str | None = None) -> RunResult:
        return self.run_many([job], upto=upto)[0]

    def run_many(self, jobs: Sequence[RuleJob], upto: str | None = None) -> list[RunResult]:
        """Run several jobs up to one watermark; jobs at the same checkpoint share one scan of new events.

        A large backlog is evaluated in slices of about ``slice_events`` ingested events (where the store
        can slice), each slice an ordinary incremental run: memory stays bounded by the slice, and the
        alerts are the same as in one pass (they do not depend on how runs are cut).
        """
        watermark = upto if upto is not None else self.store.watermark()
        stored = self.store.get_checkpoints([job.id for job in jobs])  # one read for the round, not one per job
        checkpoints = {job.id: stored[job.id].watermark for job in jobs}
        results = {job.id: RunResult(job.id) for job in jobs}
        by_checkpoint: dict[str | None, list[RuleJob]] = {}
        for job in jobs:
            if watermark is None or checkpoints[job.id] == watermark:
                results[job.id].skipped = True
            else:
                by_checkpoint.setdefault(checkpoints[job.id], []).append(job)
        for checkpoint, group in by_checkpoint.items():
            assert watermark is not None
            while checkpoint != watermark:
                step = self.store.watermark_step(checkpoint, watermark, self.slice_events)
                self._run_slice(group, checkpoint, step, results)
                checkpoint = step
        return [results[job.id] for job in jobs]

    def _run_slice(self, group: Sequence[RuleJob], checkpoint: str | None, watermark: str,
                   results: dict[str, RunResult]) -> None:
        # A slice decodes up to ``slice_events`` events and builds matches and alerts from them: many young
        # objects and no reference cycles, all freed by reference counting when the slice ends. A full
        # collection meanwhile walks them and every compiled rule for nothing (one of 0.37 CPU-s in the
        # SigmaHQ end to end run, 20% of its evaluate phase; issue 10).
        with cyclic_gc_paused():
            self._run_slice_scans(group, checkpoint, watermark, results)

    def _run_slice_scans(self, group: Sequence[RuleJob], checkpoint: str | None, watermark: str,
                         results: dict[str, RunResult]) -> None:
        # Jobs fed by keyword rules scan whole events. Where the store narrows a scan (pushdown), they scan
        # on their own so the others keep their narrow query. Where it does not (SQLite), every job shares
        # the one whole-event scan: the events are the same (dataset + ingest range), a narrow rule reads
        # only its own fields of them, and the events are read and decoded once instead of twice (issue 10).
        narrow = [job for job in group if not job.reads_every_field]
        whole = [job for job in group if job.reads_every_field]
        if self.pushdown is None and whole:
            self._run_scan(narrow + whole, checkpoint, watermark, results)  # the outbox order of two scans
            return
        for part in (narrow, whole):
            if part:
                self._run_scan(part, checkpoint, watermark, results)

    def _run_scan(self, group: Sequence[RuleJob], checkpoint: str | None, watermark: str,
                  results: dict[str, RunResult]) -> None:
        started = time.monotonic()
        new_by_rule, new_times, scanned = self._scan(group, ingested_after=checkpoint, ingested_upto=watermark)
        built: list[tuple[RuleCheckpoint, list[Alert]]] = []
        for job in group:
            job_new = {leaf.id: new_by_rule[leaf.id] for leaf in job.leaves}
            job_times = dict(map(_ID_AND_TIME, chain.from_iterable(job_new.values())))  # event id -> ms
            results[job.id].matched += len(job_times)
            alerts: list[Alert] = []
            if job_times:
                alerts = self._alerts_for(job, job_new, job_times, set(job_times), checkpoint, watermark)
            built.append((RuleCheckpoint(job.id, watermark), alerts))
        # The stored revisions of every alert of the round in one read (get_alerts), not one per alert. Alert
        # ids are per rule, so no job here reads what another is about to commit.
        stored = self.store.get_alerts([alert.id for _, alerts in built for alert in alerts])
        runs = [(cp, [m for m in (merge_revision(a, stored.get(a.id)) for a in alerts) if m is not None])
                for cp, alerts in built]
        self.store.commit_rule_runs(runs)
        for checkpoint_row, alerts in runs:
            result = results[checkpoint_row.rule_id]
            result.scanned += scanned
            result.alerts.extend(alerts)
            result.seconds += time.monotonic() - started
            log.debug("rule run", rule=result.job_id, scanned=scanned, alerts=len(alerts),
                      seconds=round(result.seconds, 3))

    def _alerts_for(
        self,
        job: RuleJob,
        new_by_rule: dict[str, list[Match]],
        new_times: dict[str, int],
        new_ids: set[str],
        checkpoint: str | None,
        watermark: str,
    ) -> list[Alert]:
        """The job's alerts as this run builds them, not yet merged with their stored revisions: the caller
        reads those for the whole round at once."""
        period = job.suppression.period_ms
        if not job.is_correlation and period <= 0:
            # Each match is its own alert: no context needed.
            matches, times = new_by_rule, new_times
        else:
            # Context = the new matches + older events (ingested up to the checkpoint) in the time range the
            # windows and the suppression period reach: a new event at t changes triggers in [t, t + span],
            # whose episodes (clock periods of length `period`) need every trigger between their start and
            # end, and each trigger needs the events of the span before it. Nothing is read twice; a first
            # run reads nothing.
            lo, hi = min(new_times.values()), max(new_times.values())
            start = lo - period - job.span_ms
            end = hi + job.span_ms + period + 1
            matches = {rule_id: list(ms) for rule_id, ms in new_by_rule.items()}
            times = dict(new_times)
            if checkpoint is not None:
                old, old_times, _ = self._scan(
                    [job],
                    start=format_timestamp(from_timestamp_ms(start)),
                    end=format_timestamp(from_timestamp_ms(end)),
                    ingested_upto=checkpoint,
                )
                for rule_id, ms in old.items():
                    matches[rule_id] = ms + matches.get(rule_id, [])
                times.update(old_times)
        hits = self._hits(job, matches)
        reliable_from = min(new_times.values()) - period
        affected = [h for h in hits if h.ts_ms >= reliable_from and not new_ids.isdisjoint(h.event_ids)]
        if not affected:
            return []

        # Episodes are clock periods (engine/episodes.py), so a late hit joins its period's alert as a new
        # revision; it can never anchor a second alert overlapping a stored one.
        episodes = assign_anchors(affected, period)
        by_group: dict[str, list[Hit]] = {}
        if period > 0:
            for h in hits:
                by_group.setdefault(h.group_key, []).append(h)
        alerts: list[Alert] = []
        for (group_key, anchor), ep_hits in episodes.items():
            if period > 0:
                # Recompute the whole episode from context, not only the affected hits.
                ep_hits = [h for h in by_group[group_key] if anchor <= h.ts_ms < anchor + period]
            alert = build_alert(
                job.info,
                ep_hits[0].group,
                group_key,
                anchor,
                ep_hits,
                times,
                self.evidence_cap,
            )
            alerts.append(alert)
        return alerts


def _every_leaf_of_dataset(by_dataset: Mapping[str, Sequence[Any]], event: Mapping[str, Any]) -> list[Any]:
    """The leaves of the event's dataset that match it (the scan without a rule index)."""
    return [r for r in by_dataset.get(event.get(DATASET), ()) if r.matches(event)]


def run_all(evaluator: Evaluator, jobs: Sequence[RuleJob]) -> list[RunResult]:
    return evaluator.run_many(jobs)


def iter_alerts(results: Iterable[RunResult]) -> Iterable[Alert]:
    """Each alert once, at its latest revision (a sliced run may have updated an alert it created)."""
    latest: dict[str, Alert] = {}
    for result in results:
        for alert in result.alerts:
            latest[alert.id] = alert
    return latest.values()
