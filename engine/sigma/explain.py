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
