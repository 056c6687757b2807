"""pySigma's parsed detection -> a tree of Python closures (fast ``fn``) that can also explain itself.

We compile from the condition's parse tree *before* pySigma's post-processing (which inlines detections),
so identifiers survive and an explanation can say "selection matched, filter did not". Each detection is
compiled once even when several conditions reference it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from sigma.conditions import (
    ConditionAND,
    ConditionIdentifier,
    ConditionNOT,
    ConditionOR,
    ConditionSelector,
)
from sigma.modifiers import reverse_modifier_mapping
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaDetections
from sigma.types import (
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SigmaTimestampPart,
    SpecialChars,
)

from engine.events import iter_string_values
from engine.sigma import values as V
from engine.sigma.explain import ExplanationNode

Predicate = Callable[[Mapping[str, Any]], bool]
Discriminator = tuple[str, frozenset[str]]
_ABSENT = object()


class CompileError(Exception):
    """A detection that cannot be evaluated; ``key`` is the detection key path (for the load error)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _any(fns: Sequence[Predicate]) -> Predicate:
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        a, b = fns
        return lambda ev: a(ev) or b(ev)
    fs = tuple(fns)
    return lambda ev: any(f(ev) for f in fs)


def _all(fns: Sequence[Predicate]) -> Predicate:
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        a, b = fns
        return lambda ev: a(ev) and b(ev)
    fs = tuple(fns)
    return lambda ev: all(f(ev) for f in fs)


# --- nodes ------------------------------------------------------------------------------------------


class Node:
    fn: Predicate

    def explain(self, event: Mapping[str, Any]) -> ExplanationNode:  # pragma: no cover - abstract
        raise NotImplementedError

    def discriminator(self) -> Discriminator | None:
        return None


class BoolNode(Node):
    def __init__(self, op: str, children: list[Node], label: str = "") -> None:
        self.op, self.children, self.label = op, children, label
        fns = [c.fn for c in children]
        if op == "and":
            self.fn = _all(fns)
        elif op == "or":
            self.fn = _any(fns)
        else:
            inner = fns[0]
            self.fn = lambda ev: not inner(ev)

    def explain(self, event: Mapping[str, Any]) -> ExplanationNode:
        kids = [c.explain(event) for c in self.children]
        if self.op == "and":
            matched = all(k.matched for k in kids)
        elif self.op == "or":
            matched = any(k.matched for k in kids)
        else:
            matched = not kids[0].matched
        return ExplanationNode(self.op, self.label, matched, children=kids)

    def discriminator(self) -> Discriminator | None:
        if self.op == "not":
            return None
        found = [c.discriminator() for c in self.children]
        if self.op == "and":
            return best_discriminator(found)
        if any(d is None for d in found) or len({d[0] for d in found if d}) != 1:
            return None
        keys: frozenset[str] = frozenset().union(*(d[1] for d in found if d))
        return (found[0][0], keys) if found[0] else None  # type: ignore[index]


def best_discriminator(found: Iterable[Discriminator | None]) -> Discriminator | None:
    """The narrowest of several AND-linked discriminators (fewest allowed values)."""
    usable = [d for d in found if d is not None]
    return min(usable, key=lambda d: len(d[1])) if usable else None


class IdentifierNode(Node):
    def __init__(self, name: str, child: Node) -> None:
        self.name, self.child, self.fn = name, child, child.fn

    def explain(self, event: Mapping[str, Any]) -> ExplanationNode:
        inner = self.child.explain(event)
        return ExplanationNode("identifier", self.name, inner.matched, children=[inner])

    def discriminator(self) -> Discriminator | None:
        return self.child.discriminator()


class ItemNode(Node):
    """One detection item: ``Field|mod|mod: [values]`` (or a keyword list when ``field`` is None)."""

    def __init__(self, key: str, field: str | None, modifiers: list[str], groups: list[list[Any]],
                 linking: str, negated: bool) -> None:
        self.key, self.field, self.modifiers = key, field, modifiers
        self.groups, self.linking, self.negated = groups, linking, negated
        self.fields: set[str] = set() if field is None else {field}
        group_fns = [self._compile_group(g) for g in groups]
        fn = _all(group_fns) if linking == "and" else _any(group_fns)
        if negated:
            inner = fn
            fn = lambda ev: not inner(ev)  # noqa: E731
        self.fn = fn

    # Values of one group are OR-linked (an OR item has one group; `|all` has one group per value, and a
    # windash/base64offset expansion stays one OR group inside it).
    def _compile_group(self, group: list[Any]) -> Predicate:
        uncased = [v for v in group if type(v) is SigmaString]
        cased = [v for v in group if isinstance(v, SigmaCasedString)]
        scalars: list[V.Scalar] = []
        item_level: list[Predicate] = []
        if self.field is None:  # keywords: implicit contains, searched in every string field
            uncased = [_contains(v) for v in uncased]
            cased = [SigmaCasedString.from_sigma_string(_contains(v)) for v in cased]
        if uncased:
            scalars.append(V.text_predicate(uncased, cased=False))
        if cased:
            scalars.append(V.text_predicate(cased, cased=True))
        for v in group:
            if isinstance(v, SigmaString):
                continue
            if isinstance(v, SigmaTimestampPart):
                scalars.append(V.timestamp_part_predicate(v))
            elif isinstance(v, SigmaBool):
                scalars.append(V.bool_predicate(v.boolean))
            elif isinstance(v, SigmaNumber):
                scalars.append(V.number_predicate(v.number))
            elif isinstance(v, SigmaRegularExpression):
                scalars.append(V.regex_predicate(v))
            elif isinstance(v, SigmaCIDRExpression):
                scalars.append(V.cidr_predicate(v))
            elif isinstance(v, SigmaCompareExpression):
                scalars.append(V.compare_predicate(v))
            elif isinstance(v, (SigmaNull, SigmaExists, SigmaFieldReference)):
                if self.field is None:
                    raise CompileError(self.key, f"{type(v).__name__} needs a field")
                item_level.append(self._item_level(v))
            else:
                raise CompileError(self.key, f"unsupported value type {type(v).__name__}")
        if scalars:
            item_level.append(self._scalar_fn(scalars))
        return _any(item_level)

    def _scalar_fn(self, scalars: list[V.Scalar]) -> Predicate:
        if len(scalars) == 1:
            scalar = scalars[0]
        else:
            ss = tuple(scalars)
            scalar = lambda v: any(s(v) for s in ss)  # noqa: E731
        if self.field is None:
            return lambda ev: any(scalar(s) for s in iter_string_values(ev))
        name = self.field

        def fn(ev: Mapping[str, Any]) -> bool:
            v = ev.get(name)
            if v is None:
                return False
            if type(v) is list:
                return any(scalar(x) for x in v if x is not None)
            return scalar(v)
        return fn

    def _item_level(self, v: Any) -> Predicate:
        name = self.field
        assert name is not None
        if isinstance(v, SigmaNull):
            return lambda ev: ev.get(name) is None
        if isinstance(v, SigmaExists):
            if v.exists:
                return lambda ev: ev.get(name) is not None
            return lambda ev: ev.get(name) is None
        ref = v.field
        self.fields.add(ref)
        mode = ("contains" if v.starts_with and v.ends_with else
                "startswith" if v.starts_with else "endswith" if v.ends_with else "eq")

        def texts(value: Any) -> list[str]:
            items = value if type(value) is list else [value]
            return [t.lower() for t in (V.as_text(x) for x in items) if t is not None]

        def fn(ev: Mapping[str, Any]) -> bool:
            a, b = ev.get(name), ev.get(ref)
            if a is None or b is None:
                return False
            for x in texts(a):
                for y in texts(b):
                    if (x == y if mode == "eq" else x.startswith(y) if mode == "startswith"
                            else x.endswith(y) if mode == "endswith" else y in x):
                        return True
            return False
        return fn

    def explain(self, event: Mapping[str, Any]) -> ExplanationNode:
        matched = self.fn(event)
        expected = [" | ".join(V.describe(v) for v in g) if len(g) > 1 else V.describe(g[0])
                    for g in self.groups]
        if self.field is None:
            return ExplanationNode("keyword", self.key, matched, None, self.modifiers, expected,
                                   actual=None, reason="searched every string field")
        actual = event.get(self.field, _ABSENT) if hasattr(event, "get") else _ABSENT
        reason = "field absent" if actual is _ABSENT else ""
        if self.negated:
            reason = (reason + "; " if reason else "") + "negated"
        return ExplanationNode("item", self.key, matched, self.field, self.modifiers, expected,
                               None if actual is _ABSENT else actual, reason)

    def discriminator(self) -> Discriminator | None:
        if self.field is None or self.negated:
            return None
        candidates: list[Discriminator] = []
        for group in self.groups:
            keys: set[str] = set()
            for v in group:
                if type(v) in (SigmaString, SigmaCasedString) and not v.contains_special():
                    k = V.index_key("".join(v.s))
                elif type(v) is SigmaNumber:
                    k = V.index_key(v.number)
                elif type(v) is SigmaBool:
                    k = V.index_key(v.boolean)
                else:
                    k = None
                if k is None:
                    break
                keys.add(k)
            else:
                candidates.append((self.field, frozenset(keys)))
        if self.linking == "or":
            return candidates[0] if len(candidates) == len(self.groups) == 1 else None
        return best_discriminator(candidates)


def _contains(v: SigmaString) -> SigmaString:
    if not v.startswith(SpecialChars.WILDCARD_MULTI):
        v = SpecialChars.WILDCARD_MULTI + v
    if not v.endswith(SpecialChars.WILDCARD_MULTI):
        v = v + SpecialChars.WILDCARD_MULTI
    return v


class TrueNode(Node):
    def __init__(self) -> None:
        self.fn = lambda ev: True

    def explain(self, event: Mapping[str, Any]) -> ExplanationNode:
        return ExplanationNode("and", "", True)


# --- compiling --------------------------------------------------------------------------------------


class UnresolvedPlaceholder(Exception):
    def __init__(self, name: str, empty: bool = False) -> None:
        super().__init__(name)
        self.name, self.empty = name, empty

    def describe(self) -> str:
        """Why an empty list is refused rather than matching nothing: a filter built on one would silently
        never apply, and a selection never fire; the site that meant "no one" says so with a value."""
        if self.empty:
            return (f"placeholder '%{self.name}%' is an empty list in rules.placeholders: |expand needs at least "
                    "one value (to match no one, give a value no event carries, e.g. ['(none)'])")
        return f"placeholder '%{self.name}%' is not configured"


@dataclass
class CompiledDetection:
    conditions: list[Node]
    fields: frozenset[str]
    fn: Predicate
    #: a keyword item searches every string field, so ``fields`` cannot list what the rule reads
    reads_every_field: bool = False


class DetectionCompiler:
    def __init__(self, detections: SigmaDetections, placeholders: Mapping[str, Sequence[str]]) -> None:
        self.detections = detections
        self.placeholders = placeholders
        self.cache: dict[str, Node] = {}
        self.fields: set[str] = set()
        self.reads_every_field = False

    def compile(self) -> CompiledDetection:
        conditions = []
        for cond in self.detections.parsed_condition:
            tree = cond.parse(postprocess=False)
            node = self._condition(tree)
            conditions.append(BoolNode("or", [node], label=cond.condition)
                              if not isinstance(node, BoolNode) else node)
            if not conditions[-1].label:
                conditions[-1].label = cond.condition  # type: ignore[attr-defined]
        fn = _any([c.fn for c in conditions])
        return CompiledDetection(conditions, frozenset(self.fields), fn, self.reads_every_field)

    def _condition(self, tree: Any) -> Node:
        if isinstance(tree, ConditionIdentifier):
            return self._identifier(tree.identifier)
        if isinstance(tree, ConditionSelector):
            ids = tree.resolve_referenced_detections(self.detections)
            if not ids:
                raise CompileError("detection.condition",
                                   f"'{tree.args[0]} of {tree.pattern}' matches no detection")
            op = "and" if tree.cond_class is ConditionAND else "or"
            return BoolNode(op, [self._identifier(i.identifier) for i in ids],
                            label=f"{tree.args[0]} of {tree.pattern}")
        if isinstance(tree, ConditionNOT):
            return BoolNode("not", [self._condition(tree.args[0])])
        if isinstance(tree, (ConditionAND, ConditionOR)):
            op = "and" if isinstance(tree, ConditionAND) else "or"
            return BoolNode(op, [self._condition(a) for a in tree.args])
        raise CompileError("detection.condition", f"unsupported condition element {tree!r}")

    def _identifier(self, name: str) -> Node:
        if name not in self.cache:
            try:
                detection = self.detections.detections[name]
            except KeyError:
                raise CompileError("detection.condition",
                                   f"detection '{name}' is not defined") from None
            self.cache[name] = IdentifierNode(name, self._detection(detection, f"detection.{name}"))
        return self.cache[name]

    def _detection(self, detection: SigmaDetection, key: str) -> Node:
        children: list[Node] = []
        for item in detection.detection_items:
            if isinstance(item, SigmaDetection):
                children.append(self._detection(item, key))
            else:
                children.append(self._item(item, key))
        if len(children) == 1:
            return children[0]
        op = "and" if detection.item_linking is ConditionAND else "or"
        return BoolNode(op, children)

    def _item(self, item: SigmaDetectionItem, parent_key: str) -> Node:
        mods = [reverse_modifier_mapping[m.__name__] for m in item.modifiers]
        key_text = (item.field or "") + ("|" + "|".join(mods) if mods else "")
        key = f"{parent_key}.{key_text}" if key_text else parent_key
        groups: list[list[Any]] = []
        for value in item.value:
            expanded = value.values if isinstance(value, SigmaExpansion) else [value]
            group: list[Any] = []
            for v in expanded:
                try:
                    group.extend(self._resolve_placeholders(v))
                except UnresolvedPlaceholder as e:
                    raise CompileError(key, e.describe()) from None
            groups.append(group)
        if not groups:  # `Field: []` or a bare `Field:` → null check
            groups = [[SigmaNull()]]
        linking = "and" if item.value_linking is ConditionAND else "or"
        if linking == "or" and len(groups) > 1:
            groups = [[v for g in groups for v in g]]
        node = ItemNode(key_text or "keywords", item.field, mods, groups, linking, item.negated)
        node.key = key
        self.fields |= node.fields
        self.reads_every_field |= item.field is None  # keywords
        return node

    def _resolve_placeholders(self, v: Any) -> list[Any]:
        if not isinstance(v, (SigmaString, SigmaRegularExpression)) or not v.contains_placeholder():
            return [v]
        regex = isinstance(v, SigmaRegularExpression)

        def callback(p: Any) -> Iterable[Any]:
            if p.name not in self.placeholders:
                raise UnresolvedPlaceholder(p.name)
            if not self.placeholders[p.name]:
                raise UnresolvedPlaceholder(p.name, empty=True)
            for text in self.placeholders[p.name]:
                if regex:
                    import re
                    yield SigmaString(re.escape(str(text)), escape=False)
                else:
                    yield SigmaString(str(text))

        out = v.replace_placeholders(callback)
        if isinstance(v, SigmaCasedString):
            out = [SigmaCasedString.from_sigma_string(s) for s in out]
        return list(out)
