"""From triggers to alerts: grouping a rule's triggers into episodes, deterministically.

A correlation fires at every event where its condition holds, so one burst gives hundreds of triggers. An
analyst wants one alert per burst. An *episode* is one period of the clock: with a suppression period S
(by default the correlation's timespan) the episode of a trigger at ``t`` covers
``[floor(t / S) * S, floor(t / S) * S + S)`` (S-aligned from the Unix epoch, so a 1h period is a UTC clock
hour; whole weeks are counted from a Monday instead, so a ``7d`` period is a calendar week). Every trigger
of a group in that span belongs to it; the alert id is rule id + group key + anchor.

Why fixed, clock-aligned periods and not "anchored at the first trigger": the first trigger is only first
among the triggers seen *so far*. A late event (recorded before triggers already alerted on) would anchor a
new episode overlapping the stored one, and its alert would repeat evidence of the earlier alert: one
burst told twice, and a result that depends on arrival order. No rule based on the triggers seen can avoid
that without withdrawing alerts that sinks have already delivered. An anchor that is a function of the
trigger's own time alone is the same in a batch run, in many small runs, after a crash, and whatever order
the events arrived in; a late event only adds a revision to its period's alert. The price: a burst that
crosses a period boundary gives two adjacent (never overlapping) alerts. The alert's content is recomputed
from *all* triggers of its episode each time it changes, so it does not depend on how the runs were cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

from engine.alerts.model import Alert, alert_id, canonical_json
from engine.events import format_timestamp, from_timestamp_ms


@dataclass(frozen=True)
class Hit:
    """One trigger of a rule, whatever kind: a single event match or a correlation trigger."""

    group: Mapping[str, Any]
    group_key: str
    ts_ms: int
    window_start_ms: int
    event_ids: tuple[str, ...]
    metric: float | int | None = None


@dataclass(frozen=True)
class RuleInfo:
    """The rule metadata an alert carries."""

    id: str
    title: str
    level: str
    tags: tuple[str, ...]
    description: str
    kind: str  # "match" | "correlation"
    correlation_type: str | None = None
    metric_name: str | None = None
    metric_field: str | None = None
    condition: Mapping[str, float] = field(default_factory=dict)


@lru_cache(maxsize=16384)
def iso(ms: int) -> str:
    """The canonical text of an epoch-millisecond time. Cached: an alert formats its anchor, window and
    triggers, mostly the same instant (issue 10: 41k calls for 6,720 SigmaHQ alerts); a str is immutable."""
    return format_timestamp(from_timestamp_ms(ms))


_WEEK_MS = 7 * 86_400_000
#: 1970-01-05T00:00:00Z, the first Monday after the epoch (a Thursday)
_FIRST_MONDAY_MS = 4 * 86_400_000


def episode_anchor(ts_ms: int, period_ms: int) -> int:
    """The start of the episode containing ``ts_ms``: period-aligned from the epoch, or from a Monday when the
    period is whole weeks (``ts_ms`` itself when ``period_ms`` is 0, i.e. every trigger is its own episode).

    Why Mondays: "one alert per user, patient and week" (a ``7d`` suppression) counted from the epoch split
    every week on Thursday 00:00 UTC, so a clerk's reads of one namesake on Tuesday and Thursday were two
    alerts and two cases; the week a privacy officer means is the calendar week (ISO 8601)."""
    if period_ms <= 0:
        return ts_ms
    offset = _FIRST_MONDAY_MS if period_ms % _WEEK_MS == 0 else 0
    return ts_ms - (ts_ms - offset) % period_ms  # Python's % is never negative here, so times before 1970 work too


def assign_anchors(hits: Iterable[Hit], period_ms: int) -> dict[tuple[str, int], list[Hit]]:
    """Group hits into episodes keyed by (group_key, anchor_ms), each list in time order.

    A pure function of each hit's own group and time (see the module docstring), so the episodes of a set
    of hits do not depend on which other hits were seen first.
    """
    episodes: dict[tuple[str, int], list[Hit]] = {}
    for hit in sorted(hits, key=lambda h: (h.ts_ms, h.group_key)):
        episodes.setdefault((hit.group_key, episode_anchor(hit.ts_ms, period_ms)), []).append(hit)
    return episodes


def build_alert(
    rule: RuleInfo,
    group: Mapping[str, Any],
    group_key: str,
    anchor_ms: int,
    hits: Sequence[Hit],
    event_time: Mapping[str, int],
    evidence_cap: int,
    anchor_token: str | None = None,
) -> Alert:
    """An alert whose content is a pure function of its episode's hits (all of them, not just new ones)."""
    evidence = sorted({eid for hit in hits for eid in hit.event_ids}, key=lambda e: (event_time.get(e, 0), e))
    metrics = [hit.metric for hit in hits if hit.metric is not None]
    metric: dict[str, Any] = {}
    if rule.kind == "correlation":
        metric = {
            "name": rule.metric_name or rule.correlation_type,
            "field": rule.metric_field,
            "value": max(metrics) if metrics else None,
            "condition": dict(rule.condition),
        }
    return Alert(
        id=alert_id(rule.id, group_key, anchor_token or iso(anchor_ms)),
        rule_id=rule.id,
        rule_title=rule.title,
        rule_level=rule.level,
        rule_tags=list(rule.tags),
        rule_description=rule.description,
        kind=rule.kind,
        correlation_type=rule.correlation_type,
        group=dict(group),
        group_key=group_key,
        window_start=iso(min(hit.window_start_ms for hit in hits)),
        window_end=iso(max(hit.ts_ms for hit in hits)),
        first_trigger=iso(min(hit.ts_ms for hit in hits)),
        last_trigger=iso(max(hit.ts_ms for hit in hits)),
        metric=metric,
        evidence=evidence[:evidence_cap],
        evidence_total=len(evidence),
        triggers=len({hit.ts_ms for hit in hits}),
    )


def merge_revision(new: Alert, stored: Alert | None) -> Alert | None:
    """Keep the stored status and bump the revision when content changed; None when nothing changed."""
    if stored is None:
        return new
    new.status = stored.status
    new.revision = stored.revision
    if new.to_dict() == stored.to_dict():
        return None
    new.revision = stored.revision + 1
    return new


def group_key_of(group: Mapping[str, Any]) -> str:
    return canonical_json(dict(group))
