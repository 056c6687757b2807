"""Reading a Sigma correlation document into a ``CorrelationSpec`` (references still unresolved).

We read the YAML ourselves rather than through pySigma's ``SigmaCorrelationRule`` because pySigma 1.5
rejects range conditions (``gt`` + ``lte``) that the correlation engine supports; the checks mirror its.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from engine.correlation.spec import CORRELATION_TYPES

OPERATORS = ("gt", "gte", "lt", "lte", "eq", "neq")
TEMPORAL = ("temporal", "temporal_ordered")
_TIMESPAN = re.compile(r"^\s*(\d+)\s*([smhdwMy])\s*$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000,
            "M": 2_592_000_000, "y": 31_536_000_000}
_IDENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*")


class CorrelationError(Exception):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key, self.message = key, message


@dataclass
class RawCorrelation:
    """A correlation as written: references are rule ids or names, not yet resolved."""

    type: str
    rules: list[str]
    group_by: tuple[str, ...]
    timespan_ms: int
    condition: dict[str, float] = field(default_factory=dict)
    condition_field: str | None = None
    percentile: float | None = None
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)
    extended_condition: str | None = None
    generate: bool = False


def timespan_ms(text: Any) -> int:
    m = _TIMESPAN.match(str(text))
    if not m:
        raise CorrelationError("correlation.timespan", f"invalid timespan '{text}' (e.g. 5m, 1h, 30s)")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def condition_references(expression: str) -> list[str]:
    """Rule references in an extended condition, in order of first appearance."""
    seen: list[str] = []
    for token in _IDENT.findall(expression):
        if token not in ("and", "or", "not") and token not in seen:
            seen.append(token)
    return seen


def rewrite_condition(expression: str, resolve: Mapping[str, str]) -> str:
    return _IDENT.sub(lambda m: resolve.get(m.group(0), m.group(0)), expression)


def parse_correlation(body: Any) -> RawCorrelation:
    if not isinstance(body, Mapping):
        raise CorrelationError("correlation", "correlation must be a mapping")
    ctype = body.get("type")
    if ctype not in CORRELATION_TYPES:
        raise CorrelationError("correlation.type",
                               f"unknown correlation type '{ctype}' (one of {', '.join(CORRELATION_TYPES)})")
    span = body.get("timespan")
    if span is None:
        raise CorrelationError("correlation.timespan", "missing timespan")
    ms = timespan_ms(span)
    group_by = body.get("group-by", ())
    if isinstance(group_by, str):
        group_by = [group_by]
    if not isinstance(group_by, (list, tuple)):
        raise CorrelationError("correlation.group-by", "group-by must be a field or a list of fields")
    generate = body.get("generate", False)
    if not isinstance(generate, bool):
        raise CorrelationError("correlation.generate", "generate must be true or false")
    raw = RawCorrelation(ctype, [], tuple(str(g) for g in group_by), ms, generate=generate)

    rules = body.get("rules")
    if isinstance(rules, str):
        rules = [rules]
    if rules is not None and not (isinstance(rules, list) and all(isinstance(r, str) for r in rules)):
        raise CorrelationError("correlation.rules", "rules must be a rule id/name or a list of them")
    raw.rules = list(rules or [])

    cond = body.get("condition")
    if ctype in TEMPORAL:
        if isinstance(cond, str):
            raw.extended_condition = cond
            refs = condition_references(cond)
            if not raw.rules:
                raw.rules = refs
            elif set(refs) != set(raw.rules):
                raise CorrelationError("correlation.condition",
                                       "the extended condition must reference exactly the listed rules")
        elif cond is not None:
            raw.condition = _condition(cond, raw)
    else:
        if cond is None:
            raise CorrelationError("correlation.condition", f"{ctype} needs a condition")
        raw.condition = _condition(cond, raw)
        if not raw.condition:
            raise CorrelationError("correlation.condition", "condition needs an operator (gte, gt, ...)")
        if ctype != "event_count" and raw.condition_field is None:
            raise CorrelationError("correlation.condition.field", f"{ctype} needs condition.field")
        if ctype == "value_percentile" and raw.percentile is None:
            raise CorrelationError("correlation.condition.percentile", "value_percentile needs percentile")
    if not raw.rules:
        raise CorrelationError("correlation.rules", "missing rule references")

    aliases = body.get("aliases", {}) or {}
    if not isinstance(aliases, Mapping) or not all(isinstance(m, Mapping) for m in aliases.values()):
        raise CorrelationError("correlation.aliases", "aliases must map alias -> {rule: field}")
    raw.aliases = {str(a): {str(r): str(f) for r, f in m.items()} for a, m in aliases.items()}
    return raw


def _condition(cond: Any, raw: RawCorrelation) -> dict[str, float]:
    if not isinstance(cond, Mapping):
        raise CorrelationError("correlation.condition", "condition must be a mapping like {gte: 10}")
    unknown = set(cond) - set(OPERATORS) - {"field", "percentile"}
    if unknown:
        raise CorrelationError("correlation.condition",
                               f"unknown condition keys: {', '.join(sorted(map(str, unknown)))}")
    out: dict[str, float] = {}
    for op in OPERATORS:
        if op in cond:
            value = cond[op]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CorrelationError(f"correlation.condition.{op}", f"'{value}' is not a number")
            out[op] = value
    if "field" in cond:
        f = cond["field"]
        if isinstance(f, list):
            f = f[0] if len(f) == 1 else None
        if not isinstance(f, str):
            raise CorrelationError("correlation.condition.field", "field must be one field name")
        raw.condition_field = f
    if "percentile" in cond:
        p = cond["percentile"]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 100:
            raise CorrelationError("correlation.condition.percentile", "percentile must be 0..100")
        raw.percentile = float(p)
    return out
