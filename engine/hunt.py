"""Hunting: run rules (correlations included) over stored history, between two event times.

Why the real evaluator, over a view of the store: a hunt must find exactly what the service would have
found had the rule been loaded when the events came in, on either store. So the hunt hands the service's
:class:`~engine.evaluation.Evaluator` a :class:`HuntView` of the store instead of the store itself:

* searches are clipped to the hunt's event-time range ``[start, end)`` and otherwise pass through, so the
  evaluator's pushed-down query (Elasticsearch) still narrows them: an ES hunt does not read everything;
* checkpoints live in the view (they start empty: the whole history is "new"), so a hunt never moves the
  scheduler's checkpoints;
* alerts are kept in the view; only with ``write_alerts`` do they go to the store too, under a
  ``hunt:<rule id>`` checkpoint (the last hunt's watermark, never the rule's own).

Alert ids are deterministic (rule id + group key + episode anchor). The view hides stored alerts from the
evaluator (else an alert already stored unchanged would be dropped from the hunt's results) and merges each
alert with the stored one of the same id only when writing (``merge_revision``: nothing is written for an
unchanged alert), so hunting twice, or hunting and then letting the scheduler run, lands on the same alerts
and outbox entries instead of duplicating them.

Memory: the evaluator reads the backlog in slices of ``slice_events`` ingested events (the store's
``watermark_step``), each slice one ordinary incremental run, so memory is bounded by the slice plus the
alerts raised, never by the history's size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from engine.alerts.episodes import merge_revision
from engine.alerts.model import Alert
from engine.evaluation import Evaluator, build_jobs, iter_alerts
from engine.store.base import RuleCheckpoint, SearchQuery, Store, Watermark

#: ``progress(events_scanned)`` is called about this often (in events) while a hunt runs.
PROGRESS_EVERY = 1000

#: Prefix of the checkpoint a hunt with ``write_alerts`` commits its alerts with (never the rule's own).
HUNT_CHECKPOINT_PREFIX = "hunt:"


def contract_line(alert: Alert) -> dict[str, Any]:
    """One result in the ``wardwatch rules test --format json`` contract (hunt prints the same lines)."""
    return {
        "rule_id": alert.rule_id,
        "title": alert.rule_title,
        "kind": alert.kind,
        "event_ids": alert.evidence,
        "group": alert.group,
        "window": {"start": alert.window_start, "end": alert.window_end},
    }


def _clip(query: SearchQuery, start: str | None, end: str | None) -> SearchQuery:
    """``query`` with its event-time range narrowed to ``[start, end)`` (canonical timestamps sort lexically)."""
    lo = max(filter(None, (query.start, start)), default=None)
    hi = min(filter(None, (query.end, end)), default=None)
    return dataclasses.replace(query, start=lo, end=hi)


def _covers(stored: Alert, found: Alert) -> bool:
    """Whether the stored alert already holds everything the hunt found: its window spans the hunt's, with at
    least as many events. A hunt whose ``--from`` falls inside an episode sees only its end; storing that as
    the next revision would replace the complete alert with a smaller one (and deliver it again)."""
    return (stored.window_start <= found.window_start and found.window_end <= stored.window_end
            and found.evidence_total <= stored.evidence_total)


@dataclass
class HuntView:
    """The store as a hunt's evaluator sees it: clipped searches, private checkpoints, alerts kept aside.

    Only the methods the evaluator calls are here (no ``__getattr__`` pass-through), so a new store call
    in the evaluator fails loudly instead of writing to the real store behind the hunt's back.
    """

    store: Store
    start: str | None
    end: str | None
    write_alerts: bool = False
    progress: Callable[[int], None] | None = None
    scanned: int = 0
    alerts: dict[str, Alert] = field(default_factory=dict)
    checkpoints: dict[str, Watermark | None] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.store.kind

    def watermark(self) -> Watermark | None:
        return self.store.watermark()

    def watermark_step(self, after: Watermark | None, upto: Watermark, max_events: int) -> Watermark:
        return self.store.watermark_step(after, upto, max_events)

    def search(self, query: SearchQuery) -> Iterator[dict[str, Any]]:
        clipped = _clip(query, self.start, self.end)
        if clipped.start is not None and clipped.end is not None and clipped.start >= clipped.end:
            return
        for event in self.store.search(clipped):
            self.scanned += 1
            if self.progress is not None and self.scanned % PROGRESS_EVERY == 0:
                self.progress(self.scanned)
            yield event

    def get_checkpoint(self, rule_id: str) -> RuleCheckpoint:
        return RuleCheckpoint(rule_id, self.checkpoints.get(rule_id))

    def get_checkpoints(self, rule_ids: Sequence[str]) -> dict[str, RuleCheckpoint]:
        return {rule_id: self.get_checkpoint(rule_id) for rule_id in rule_ids}

    def get_alerts(self, alert_ids: Sequence[str]) -> dict[str, Alert]:
        return {i: self.alerts[i] for i in alert_ids if i in self.alerts}

    def get_alert(self, alert_id: str) -> Alert | None:
        """This hunt's own revision only: what is already stored must not hide a result from the hunt
        (the evaluator drops an alert identical to the stored one). Writing merges with the store."""
        return self.alerts.get(alert_id)

    def commit_rule_run(self, checkpoint: RuleCheckpoint, alerts: Sequence[Alert]) -> None:
        self.commit_rule_runs([(checkpoint, alerts)])

    def commit_rule_runs(self, runs: Sequence[tuple[RuleCheckpoint, Sequence[Alert]]]) -> None:
        for checkpoint, alerts in runs:
            self.checkpoints[checkpoint.rule_id] = checkpoint.watermark
            for alert in alerts:
                self.alerts[alert.id] = alert
        if self.write_alerts:
            written = [(RuleCheckpoint(HUNT_CHECKPOINT_PREFIX + cp.rule_id, cp.watermark), self._merged(alerts))
                       for cp, alerts in runs if alerts]
            commit_many = getattr(self.store, "commit_rule_runs", None)  # every store, once P10's lands
            if commit_many is not None:
                commit_many(written)
            else:
                for checkpoint, alerts in written:
                    self.store.commit_rule_run(checkpoint, alerts)

    def _merged(self, alerts: Sequence[Alert]) -> list[Alert]:
        """The revisions to store: as the evaluator merges (status kept, revision bumped on change), and
        nothing for an alert the store already holds unchanged (so no second delivery either)."""
        out = []
        for alert in alerts:
            stored = self.store.get_alert(alert.id)
            if stored is not None and _covers(stored, alert):
                continue  # a hunt over part of an episode must not shrink the alert the store holds
            merged = merge_revision(Alert.from_dict(alert.to_dict()), stored)
            if merged is not None:
                out.append(merged)
        return out


@dataclass
class HuntResult:
    """What a hunt found: alerts (latest revision each, in result order), events read, rules run."""

    alerts: list[Alert]
    scanned: int
    jobs: int
    start: str | None
    end: str | None
    written: bool

    def to_dict(self) -> dict[str, Any]:
        return {"results": [contract_line(a) for a in self.alerts], "events_scanned": self.scanned,
                "rules": self.jobs, "from": self.start, "to": self.end, "alerts_written": self.written}


def hunt(app: Any, ruleset: Any, start: str | None, end: str | None, *, write_alerts: bool = False,
         progress: Callable[[int], None] | None = None, slice_events: int | None = None) -> HuntResult:
    """Run ``ruleset`` over ``app.store``'s events with ``start <= @timestamp < end``.

    The evaluator gets the app's evidence cap, pseudonymiser, pushdown and the site's suppression, so the
    alerts (and their ids) are the ones the service raises for the same rules.
    """
    from engine.alerts.cases import merged_suppression

    view = HuntView(app.store, start, end, write_alerts=write_alerts, progress=progress)
    base: Evaluator = app.evaluator
    evaluator = Evaluator(view, base.evidence_cap, base.pseudonymiser,  # type: ignore[arg-type]
                          candidates=ruleset.candidates, pushdown=base.pushdown,
                          slice_events=slice_events or base.slice_events)
    jobs = build_jobs(ruleset, merged_suppression(ruleset, app.config["alerts"]["suppression"]))
    results = evaluator.run_many(jobs)
    if progress is not None:
        progress(view.scanned)
    alerts = sorted(iter_alerts(results), key=lambda a: (a.first_trigger, a.rule_id, a.group_key))
    return HuntResult(alerts, view.scanned, len(jobs), start, end, write_alerts)


def run_hunt(app: Any, ruleset: Any, start: str | None, end: str | None, *, write_alerts: bool = False,
             progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """:func:`hunt` as a plain dict (``results`` in the ``rules test`` JSON contract): what the API serves."""
    return hunt(app, ruleset, start, end, write_alerts=write_alerts, progress=progress).to_dict()
