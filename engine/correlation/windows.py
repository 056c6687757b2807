"""Incremental window aggregates, one per Sigma correlation type.

The engine slides a window over one group's events (sorted by time) with two pointers: ``add`` is called
when an event enters the window, ``remove`` when it leaves, ``result`` when the window ends at a new
timestamp. Each call is O(1) or O(log n), which is what makes a correlation O(n log n) overall instead of
re-scanning every window.
"""

from __future__ import annotations

from fractions import Fraction
from typing import AbstractSet, Callable, Mapping, Protocol

from sortedcontainers import SortedList

from engine.correlation.values import Number, condition_holds, exact_result, percentile_linear


class Entry:
    """One event of one group: its matches for all referenced rules merged (an event counts once).

    ``value`` is what the event contributes to a value_* aggregate: a set of canonical strings for
    value_count, one number for the numeric ones, ``None`` for the count/temporal types. A plain slotted
    class, built in place while grouping, because one is allocated per event and allocation (and the
    garbage collector's scans of it) dominates the engine's run time.
    """

    __slots__ = ("ts", "event_id", "rules", "value")

    def __init__(self, ts: int, event_id: str, rules: set[str], value: object = None) -> None:
        self.ts = ts
        self.event_id = event_id
        self.rules = rules
        self.value = value

    def __repr__(self) -> str:
        return f"Entry({self.ts!r}, {self.event_id!r}, {sorted(self.rules)!r}, {self.value!r})"


class Aggregate(Protocol):
    """What the sliding-window driver needs from a correlation type."""

    name: str

    def add(self, entry: Entry) -> None: ...

    def remove(self, entry: Entry) -> None: ...

    def result(self, lower_bound: int) -> tuple[bool, Number | None]:
        """(condition holds, metric) for the window whose oldest allowed timestamp is ``lower_bound``."""
        ...


class EventCount:
    """event_count: the number of distinct events (entries are already one per event)."""

    name = "event_count"

    def __init__(self, condition: Mapping[str, float]) -> None:
        self.condition = condition
        self.count = 0

    def add(self, entry: Entry) -> None:
        self.count += 1

    def remove(self, entry: Entry) -> None:
        self.count -= 1

    def result(self, lower_bound: int) -> tuple[bool, Number | None]:
        return condition_holds(self.condition, self.count), self.count


class ValueCount:
    """value_count: distinct canonical values, tracked with reference counts so removal is O(1)."""

    name = "value_count"

    def __init__(self, condition: Mapping[str, float]) -> None:
        self.condition = condition
        self.refs: dict[str, int] = {}

    def add(self, entry: Entry) -> None:
        for value in entry.value:  # type: ignore[attr-defined]
            self.refs[value] = self.refs.get(value, 0) + 1

    def remove(self, entry: Entry) -> None:
        for value in entry.value:  # type: ignore[attr-defined]
            left = self.refs[value] - 1
            if left:
                self.refs[value] = left
            else:
                del self.refs[value]

    def result(self, lower_bound: int) -> tuple[bool, Number | None]:
        distinct = len(self.refs)
        return condition_holds(self.condition, distinct), distinct


class ValueSum:
    """value_sum / value_avg: an exact running total (ints exactly, floats as Fractions), rounded once."""

    def __init__(self, condition: Mapping[str, float], average: bool) -> None:
        self.condition = condition
        self.average = average
        self.name = "value_avg" if average else "value_sum"
        self.int_total = 0
        self.frac_total: int | Fraction = 0
        self.count = 0

    def add(self, entry: Entry) -> None:
        self._shift(entry.value, 1)  # type: ignore[arg-type]

    def remove(self, entry: Entry) -> None:
        self._shift(entry.value, -1)  # type: ignore[arg-type]

    def _shift(self, value: Number, sign: int) -> None:
        self.count += sign
        if isinstance(value, int):
            self.int_total += sign * value
        else:
            self.frac_total += sign * Fraction(value)

    def result(self, lower_bound: int) -> tuple[bool, Number | None]:
        total = self.int_total + self.frac_total
        metric = exact_result(Fraction(total, self.count) if self.average else total)
        return condition_holds(self.condition, metric), metric


class ValuePercentile:
    """value_percentile / value_median: a SortedList of the window's values, O(log n) per change."""

    def __init__(self, condition: Mapping[str, float], percentile: float, name: str) -> None:
        self.condition = condition
        self.percentile = percentile
        self.name = name
        self.values: SortedList = SortedList()

    def add(self, entry: Entry) -> None:
        self.values.add(entry.value)

    def remove(self, entry: Entry) -> None:
        self.values.remove(entry.value)

    def result(self, lower_bound: int) -> tuple[bool, Number | None]:
        metric = percentile_linear(self.values, self.percentile)
        return condition_holds(self.condition, metric), metric


class Temporal:
    """temporal: which referenced ids have at least one event in the window (reference counts per id).

    The metric is how many distinct referenced ids are present. Without a condition all must be present;
    an explicit ``condition`` on that count (``gte: 2`` = "any two of them") replaces that default; an
    extended condition is a predicate over which ids are present, and must hold together with the condition.
    """

    name = "temporal"

    def __init__(
        self,
        referenced: tuple[str, ...],
        condition: Mapping[str, float],
        predicate: Callable[[AbstractSet[str]], bool] | None,
    ) -> None:
        self.needed = len(set(referenced))
        self.condition = condition
        self.predicate = predicate
        self.refs: dict[str, int] = {}

    def add(self, entry: Entry) -> None:
        for rule in entry.rules:
            self.refs[rule] = self.refs.get(rule, 0) + 1

    def remove(self, entry: Entry) -> None:
        for rule in entry.rules:
            left = self.refs[rule] - 1
            if left:
                self.refs[rule] = left
            else:
                del self.refs[rule]

    def result(self, lower_bound: int) -> tuple[bool, Number | None]:
        present = len(self.refs)
        if self.predicate is None:
            # an explicit condition replaces the "all referenced ids" default (pySigma's gte: n is the same)
            holds = bool(self.condition) or present == self.needed
        else:
            holds = self.predicate(self.refs.keys())
        return holds and condition_holds(self.condition, present), present


_NEVER = float("-inf")


class TemporalOrdered:
    """temporal_ordered: is there a chain e1 < e2 < ... < ek (one event per declared step) in the window?

    ``latest_start[i]`` is the greatest start time of any chain covering steps 0..i among the events seen so
    far. A full chain lies in the window iff ``latest_start[k-1] >= lower_bound`` (every later step is at
    least as late as the start and at most the window end). An event updates every step its rules fill from
    the values *before* it, so one event never serves two steps. Events never need removing: the start
    times carry the window information. O(k) per event.
    """

    name = "temporal_ordered"

    def __init__(self, steps: tuple[str, ...], condition: Mapping[str, float]) -> None:
        self.steps = steps
        self.condition = condition
        self.latest_start: list[float] = [_NEVER] * len(steps)
        self.positions: dict[str, list[int]] = {}
        for index, rule in enumerate(steps):
            self.positions.setdefault(rule, []).append(index)

    def add(self, entry: Entry) -> None:
        before = self.latest_start
        updates: list[tuple[int, float]] = []
        for rule in entry.rules:
            for step in self.positions.get(rule, ()):
                start = entry.ts if step == 0 else before[step - 1]
                if start > before[step]:
                    updates.append((step, start))
        for step, start in updates:
            if start > before[step]:
                before[step] = start

    def remove(self, entry: Entry) -> None:
        return None

    def result(self, lower_bound: int) -> tuple[bool, Number | None]:
        complete = self.latest_start[-1] >= lower_bound
        steps = len(self.steps)
        return complete and condition_holds(self.condition, steps), steps
