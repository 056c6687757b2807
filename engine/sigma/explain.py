"""Why a rule did or did not match an event: the evaluated condition tree, kept for analysts.

The compiled fast path only answers yes/no; ``CompiledRule.explain`` re-walks the same compiled tree without
short-circuiting and records every identifier and detection item with the field, modifier chain, expected
values and the event's actual value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from dataclasses import field as dc_field
from typing import Any


@dataclass
class ExplanationNode:
    #: "logsource" | "condition" | "and" | "or" | "not" | "identifier" | "item" | "keyword"
    kind: str
    label: str
    matched: bool
    field: str | None = None
    modifiers: list[str] = dc_field(default_factory=list)
    expected: list[str] = dc_field(default_factory=list)
    actual: Any = None
    reason: str = ""
    children: list["ExplanationNode"] = dc_field(default_factory=list)

    def walk(self) -> list["ExplanationNode"]:
        nodes = [self]
        for child in self.children:
            nodes.extend(child.walk())
        return nodes


@dataclass
class Explanation:
    rule_id: str
    title: str
    matched: bool
    #: the logsource scoping check and one node per condition string (a list of conditions is OR)
    scope: ExplanationNode
    conditions: list[ExplanationNode]

    @property
    def matched_identifiers(self) -> list[str]:
        return [n.label for c in self.conditions for n in c.walk() if n.kind == "identifier" and n.matched]

    @property
    def failed_identifiers(self) -> list[str]:
        return [n.label for c in self.conditions for n in c.walk()
                if n.kind == "identifier" and not n.matched]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> str:
        verdict = "MATCH" if self.matched else "no match"
        lines = [f"{self.title} [{self.rule_id}]: {verdict}"]
        _render(self.scope, 1, lines)
        for condition in self.conditions:
            _render(condition, 1, lines)
        return "\n".join(lines)


def _render(node: ExplanationNode, depth: int, lines: list[str]) -> None:
    mark = "✔" if node.matched else "✘"
    pad = "  " * depth
    if node.kind in ("item", "keyword"):
        mods = "|" + "|".join(node.modifiers) if node.modifiers else ""
        target = node.field if node.field is not None else "<any string field>"
        text = f"{pad}{mark} {target}{mods}: expected {', '.join(node.expected)}; actual {node.actual!r}"
        if node.reason:
            text += f" ({node.reason})"
        lines.append(text)
    else:
        text = f"{pad}{mark} {node.kind} {node.label}".rstrip()
        if node.reason:
            text += f" ({node.reason})"
        lines.append(text)
    for child in node.children:
        _render(child, depth + 1, lines)


# --- correlations ----------------------------------------------------------------------------------
# A correlation never matches one event: it counts or orders the matches of its base rules over a window.
# So "explain" shows what it aggregates and explains each base rule (recursively, for chained correlations)
# against the event: the analyst sees whether this event would count towards it.

_OPERATORS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "=="}


def _duration(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def correlation_summary(correlation: Any) -> list[str]:
    """The lines that describe a ``CompiledCorrelation``: type, group-by, timespan, condition."""
    spec = correlation.spec
    metric = spec.type if spec.condition_field is None else f"{spec.type}({spec.condition_field})"
    if spec.condition:
        condition = " and ".join(f"{metric} {_OPERATORS.get(op, op)} {value:g}"
                                 for op, value in spec.condition.items())
    elif spec.extended_condition:
        condition = spec.extended_condition
    else:
        condition = "all referenced rules occur" + (" in order" if spec.type == "temporal_ordered" else "")
    return [
        f"{correlation.title} [{correlation.id}]: correlation {spec.type}",
        f"  group-by: {', '.join(spec.group_by) or '(none)'}",
        f"  timespan: {_duration(spec.timespan_ms)}",
        f"  condition: {condition}",
        f"  base rules: {', '.join(spec.rules)}",
    ]


@dataclass
class CorrelationExplanation:
    """A correlation and, per base rule, the explanation of the event against it."""

    rule_id: str
    title: str
    type: str
    group_by: list[str]
    timespan_ms: int
    condition: dict[str, float]
    condition_field: str | None
    summary: list[str]
    #: one ``Explanation`` (detection rule) or ``CorrelationExplanation`` (chained correlation) per base rule
    base: list[Any]

    @property
    def matched(self) -> bool:
        """True when the event matches at least one base rule, i.e. it would count towards the correlation."""
        return any(part.matched for part in self.base)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("base", "summary")}
        out["kind"] = "correlation"
        out["matched"] = self.matched
        out["base"] = [part.to_dict() for part in self.base]
        return out

    def to_text(self) -> str:
        lines = list(self.summary)
        verdict = "counts towards it" if self.matched else "matches none of its base rules"
        lines.append(f"  this event {verdict}")
        for part in self.base:
            lines.extend("  " + line for line in part.to_text().splitlines())
        return "\n".join(lines)


def explain_correlation(correlation: Any, ruleset: Any, event: Any) -> CorrelationExplanation:
    """Explain ``event`` against every base rule of ``correlation`` (ids resolved in ``ruleset``)."""
    base: list[Any] = []
    for ref in correlation.spec.rules:
        if ref in ruleset.rules:
            base.append(ruleset.rules[ref].explain(event))
        elif ref in ruleset.correlations:
            base.append(explain_correlation(ruleset.correlations[ref], ruleset, event))
    spec = correlation.spec
    return CorrelationExplanation(correlation.id, correlation.title, spec.type, list(spec.group_by),
                                  spec.timespan_ms, dict(spec.condition), spec.condition_field,
                                  correlation_summary(correlation), base)
