"""What the correlation engine needs to know about a Sigma correlation rule, free of pySigma types.

The Sigma loader builds one of these per correlation rule; the correlation engine consumes it. Keeping it a
plain dataclass lets the correlation code be tested (and property-tested) without parsing YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

CORRELATION_TYPES = (
    "event_count",
    "value_count",
    "temporal",
    "temporal_ordered",
    "value_sum",
    "value_avg",
    "value_percentile",
    "value_median",
)


@dataclass(frozen=True)
class CorrelationSpec:
    id: str
    type: str
    #: Referenced rule/correlation ids, resolved to canonical ids, in the order the rule declares them
    #: (the order matters for temporal_ordered).
    rules: tuple[str, ...]
    group_by: tuple[str, ...] = ()
    timespan_ms: int = 60_000
    #: alias name -> {referenced id -> field name in that rule's events}
    aliases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: operator -> threshold, e.g. {"gte": 10} or a range {"gt": 5, "lte": 10}. Empty for temporal types.
    condition: Mapping[str, float] = field(default_factory=dict)
    #: the field a value_* correlation aggregates (value_count counts its distinct values)
    condition_field: str | None = None
    percentile: float | None = None
    #: Boolean expression over referenced ids for temporal types ("a and not b"); None = all must occur.
    extended_condition: str | None = None
    generate: bool = False
