"""From triggers to alerts: grouping a rule's triggers into episodes, deterministically.

A correlation fires at every event where its condition holds, so one burst gives hundreds of triggers. An
analyst wants one alert per burst. An *episode* is anchored at a trigger and covers ``[anchor, anchor + S)``
(S = the suppression period, by default the correlation's timespan); the first trigger at or after
``anchor + S`` anchors the next episode.

Why this shape: the anchor of an episode depends only on the triggers before it, so evaluating the same data
in one run or in many small runs (the scheduler, or a restart after a crash) yields the same anchors; and
the alert's content is recomputed from *all* triggers of its episode each time it changes, so it does not
depend on how the runs were cut either. The alert id is rule id + group key + anchor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from engine.alert_model import Alert, alert_id, canonical_json
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


def iso(ms: int) -> str:
    return format_timestamp(from_timestamp_ms(ms))


def assign_anchors(
    hits: Iterable[Hit],
    period_ms: int,
    known_anchor: Callable[[str, int], int | None],
) -> dict[tuple[str, int], list[Hit]]:
    """Group hits (processed in time order) into episodes keyed by (group_key, anchor_ms).

    ``known_anchor(group_key, ts)`` returns the anchor of an already stored episode covering ``ts`` (or None).
    With ``period_ms == 0`` every hit is its own episode.
    """
    episodes: dict[tuple[str, int], list[Hit]] = {}
    open_anchor: dict[str, int] = {}
    for hit in sorted(hits, key=lambda h: (h.ts_ms, h.group_key)):
        if period_ms <= 0:
            episodes.setdefault((hit.group_key, hit.ts_ms), []).append(hit)
            continue
        anchor = open_anchor.get(hit.group_key)
        if anchor is None or not (anchor <= hit.ts_ms < anchor + period_ms):
            stored = known_anchor(hit.group_key, hit.ts_ms)
            anchor = stored if stored is not None else hit.ts_ms
            open_anchor[hit.group_key] = anchor
        episodes.setdefault((hit.group_key, anchor), []).append(hit)
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
