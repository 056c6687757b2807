"""Brute-force reference for the correlation engine: build every window from scratch, O(n^2).

Written to be obviously correct rather than fast, and deliberately sharing no window or grouping code with
``engine.correlation``: only the value *definitions* (canonical form, numeric parsing, percentile formula,
condition operators, extended-condition parser), which have their own unit tests.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Iterable

from engine.correlation import Match, Trigger
from engine.correlation.expr import compile_extended_condition
from engine.correlation.spec import CorrelationSpec
from engine.correlation.values import (
    canonical_json,
    canonical_value,
    condition_holds,
    exact_result,
    percentile_linear,
    to_number,
)


def _field(spec: CorrelationSpec, name: str, rule: str) -> str:
    return spec.aliases.get(name, {}).get(rule, name)


def _events_by_group(spec: CorrelationSpec, matches: list[Match]) -> dict[str, tuple[dict, list[dict]]]:
    """group_key -> (group, events); an event = its matches in that group merged by event id."""
    result: dict[str, tuple[dict, list[dict]]] = {}
    for match in matches:
        if match.rule_id not in spec.rules:
            continue
        group = {}
        for name in spec.group_by:
            group[name] = canonical_value(match.fields.get(_field(spec, name, match.rule_id)))
        if any(value is None for value in group.values()):
            continue
        key = canonical_json(group)
        result.setdefault(key, (group, []))[1].append(match)
    out = {}
    for key, (group, group_matches) in result.items():
        ids = sorted({m.event_id for m in group_matches})
        events = []
        for event_id in ids:
            mine = [m for m in group_matches if m.event_id == event_id]
            events.append(
                {
                    "id": event_id,
                    "ts": min(m.ts_ms for m in mine),
                    "rules": {m.rule_id for m in mine},
                    "value": _event_value(spec, mine),
                }
            )
        out[key] = (group, events)
    return out


def _event_value(spec: CorrelationSpec, mine: list[Match]) -> Any:
    if spec.type == "value_count":
        values = set()
        for m in mine:
            value = canonical_value(m.fields.get(_field(spec, spec.condition_field, m.rule_id)))
            if value is not None:
                values.add(value)
        return values or None
    if spec.type in ("value_sum", "value_avg", "value_median", "value_percentile"):
        candidates = []
        for m in mine:
            number = to_number(m.fields.get(_field(spec, spec.condition_field, m.rule_id)))
            if number is not None:
                candidates.append((spec.rules.index(m.rule_id), number))
        return min(candidates)[1] if candidates else None
    return None


def _ordered_chain_exists(steps: tuple[str, ...], window: list[dict]) -> bool:
    """Greedy subsequence search: earliest possible event for each step, each event used once."""
    position = 0
    for step in steps:
        while position < len(window) and step not in window[position]["rules"]:
            position += 1
        if position == len(window):
            return False
        position += 1
    return True


def _evaluate_window(spec: CorrelationSpec, window: list[dict]) -> tuple[bool, Any]:
    kind = spec.type
    if kind == "event_count":
        metric = len(window)
        return condition_holds(spec.condition, metric), metric
    if kind == "value_count":
        metric = len(set().union(*(event["value"] for event in window)))
        return condition_holds(spec.condition, metric), metric
    numbers = [event["value"] for event in window]
    if kind == "value_sum":
        metric = exact_result(sum(Fraction(n) for n in numbers))
        return condition_holds(spec.condition, metric), metric
    if kind == "value_avg":
        metric = exact_result(sum(Fraction(n) for n in numbers) / len(numbers))
        return condition_holds(spec.condition, metric), metric
    if kind in ("value_median", "value_percentile"):
        percentile = 50 if kind == "value_median" else spec.percentile
        metric = percentile_linear(sorted(numbers), percentile)
        return condition_holds(spec.condition, metric), metric
    present = set().union(*(event["rules"] for event in window))
    if kind == "temporal":
        if spec.extended_condition is None:
            holds = bool(spec.condition) or present == set(spec.rules)
        else:
            holds = compile_extended_condition(spec.extended_condition, spec.rules)(present)
        return holds and condition_holds(spec.condition, len(present)), len(present)
    holds = _ordered_chain_exists(spec.rules, window)
    return holds and condition_holds(spec.condition, len(spec.rules)), len(spec.rules)


def reference_triggers(spec: CorrelationSpec, matches: Iterable[Match]) -> list[Trigger]:
    """Every trigger, computed window by window."""
    triggers = []
    for key, (group, events) in _events_by_group(spec, list(matches)).items():
        contributing = [e for e in events if spec.type in ("event_count", "temporal", "temporal_ordered")
                        or e["value"] is not None]
        for end in sorted({e["ts"] for e in contributing}):
            window = [e for e in contributing if end - spec.timespan_ms <= e["ts"] <= end]
            window.sort(key=lambda e: (e["ts"], e["id"]))
            holds, metric = _evaluate_window(spec, window)
            if holds:
                triggers.append(
                    Trigger(
                        correlation_id=spec.id,
                        group=dict(group),
                        group_key=key,
                        ts_ms=end,
                        window_start_ms=window[0]["ts"],
                        metric_name=spec.type,
                        metric=metric,
                        event_ids=tuple(e["id"] for e in window),
                        event_total=len(window),
                    )
                )
    triggers.sort(key=lambda t: (t.ts_ms, t.group_key))
    return triggers
