"""One scan's rules as one function: an event in, the rules that match it out (exactly).

Why: a scan offers every event to the rules that could match it and then checks each exactly. Done rule
by rule (``RuleSet.candidates`` then ``CompiledRule.matches``), a pack of a few dozen rules over 100k
events spends more on finding and calling the candidates than on matching: the index lookup recomputes
the same keys for every event, the literal prefilter scans fields although the index alone offers an event
two or three rules, and rules with the same detection (three base rules "a read of an identifiable
patient", one per correlation) are evaluated once each. Here, per dataset of the scan:

* the index lookup is memoised on the raw values of the index fields (an EHR event has a handful of
  ``event.action`` values, so the lookup is one tuple and one dict probe);
* the literal prefilter (engine/sigma/prefilter.py) serves the dataset only where the index could offer an
  event more than ``PREFILTER_MIN_OFFERED`` checks; below that its scan costs more than it saves;
* rules whose detection and logsource condition are the same (:func:`fingerprint`) share one check, and
  the check is bound to the dataset (no per-call dataset and scope lookups);
* the checks one memoised lookup offers run, once it has served ``GENERATE_AFTER`` events, as one
  generated function (``codegen.generate_checks``): one call per event instead of one per check.

Exactness: the index and the prefilter are superset filters, and a check stands for rules with the same
predicate, so the rules returned are exactly those whose ``matches`` holds (tests/test_scan_matcher.py:
random rules and events, against ``matches`` over every rule).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from sigma.types import (
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SigmaTimestampPart,
)

from engine.events import DATASET
from engine.sigma.codegen import generate, generate_checks, generate_lookup
from engine.sigma.compiler import BoolNode, IdentifierNode, ItemNode, Node, TrueNode
from engine.sigma.prefilter import Prefilter, is_anchored
from engine.sigma.rule_index import DiscriminatorIndex

if TYPE_CHECKING:
    from engine.sigma.model import CompiledRule

Predicate = Callable[[Mapping[str, Any]], bool]

#: a dataset's literal scan is used only when the index alone could offer one event more checks than this
PREFILTER_MIN_OFFERED = 8

#: a check's predicate is generated as one function once it has been evaluated this many times
GENERATE_AFTER = 256

#: memoised index lookups per dataset; past this the memo starts again (a high-cardinality index field)
MEMO_MAX = 4096


class _NoKey(Exception):
    """A node or value :func:`fingerprint` cannot describe exactly: its rule then shares no check."""


def _value_key(v: Any) -> tuple[Any, ...]:
    """Everything the compiled matcher reads of one Sigma value (equal keys: equal behaviour)."""
    kind = type(v)
    if kind is SigmaString or kind is SigmaCasedString:
        return (kind.__name__, tuple(v.s))  # str parts and SpecialChars members (placeholders are resolved)
    if kind is SigmaNumber:
        return ("number", type(v.number).__name__, v.number)
    if kind is SigmaBool:
        return ("bool", v.boolean)
    if kind is SigmaRegularExpression:
        return ("re", str(v.regexp), tuple(sorted(flag.name for flag in v.flags)))
    if kind is SigmaCIDRExpression:
        return ("cidr", str(v.network))
    if kind is SigmaCompareExpression:
        return ("compare", v.op.name, type(v.number.number).__name__, v.number.number)
    if kind is SigmaTimestampPart:
        return ("timestamp_part", v.timestamp_part.name, v.number)
    if kind is SigmaNull:
        return ("null",)
    if kind is SigmaExists:
        return ("exists", v.exists)
    if kind is SigmaFieldReference:
        return ("fieldref", v.field, v.starts_with, v.ends_with)
    raise _NoKey(kind.__name__)


def node_key(node: Node | None) -> tuple[Any, ...] | None:
    """A structural key of a compiled node: two nodes with equal keys match the same events.

    Labels and identifier names are left out (they only explain); everything an ``ItemNode`` compiles from
    (field, modifiers, value groups, linking, negation) and the shape of the boolean tree is in.
    """
    if node is None:
        return None
    kind = type(node)
    if kind is ItemNode:
        groups = tuple(tuple(_value_key(v) for v in group) for group in node.groups)  # type: ignore[attr-defined]
        return ("item", node.field, tuple(node.modifiers), node.linking, node.negated, groups)  # type: ignore[attr-defined]
    if kind is IdentifierNode:
        return node_key(node.child)  # type: ignore[attr-defined]
    if kind is BoolNode:
        return ("bool", node.op, tuple(node_key(c) for c in node.children))  # type: ignore[attr-defined]
    if kind is TrueNode:
        return ("true",)
    raise _NoKey(kind.__name__)


def fingerprint(rule: "CompiledRule", dataset: str) -> tuple[Any, ...]:
    """What decides ``rule.matches`` on an event of ``dataset``: its logsource condition there and its
    detection's conditions. A rule that cannot be described exactly gets a key of its own."""
    try:
        if not rule._conditions:
            raise _NoKey("no conditions")
        return ("rule", node_key(rule._scope_nodes.get(dataset)), tuple(node_key(c) for c in rule._conditions))
    except _NoKey:
        return ("only", rule.id)


def closure_predicate(rule: "CompiledRule", dataset: str) -> Predicate:
    """``rule.matches`` for events already known to be of ``dataset`` (one of the rule's), as closures."""
    extra, fn = rule._scope.get(dataset), rule._fn
    if extra is None:
        return fn
    return lambda ev: extra(ev) and fn(ev)


def bound_predicate(rule: "CompiledRule", dataset: str) -> Predicate:
    """The same as one generated function (engine/sigma/codegen.py), or the closures where the tree is
    too deep to generate."""
    try:
        if rule._conditions:
            return generate(rule._conditions, rule._scope_nodes.get(dataset))
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        pass
    return closure_predicate(rule, dataset)


class _DatasetPlan:
    """The checks of one dataset, their index, the memo of index lookups, and the prefilter if it pays."""

    def __init__(self, dataset: str, rules: Sequence["CompiledRule"], anchored: frozenset[str]) -> None:
        self.dataset = dataset
        self.disc = {rule.id: rule.discriminators().get(dataset) for rule in rules}
        # The literal scan serves the anchored rules only if the index, holding every rule, could offer one
        # event too many of them; then the index keeps the rest (the caller attaches the scan).
        self.anchored_rules = [r for r in rules if r.id in anchored]
        if self.anchored_rules and self._most_offered(rules) > PREFILTER_MIN_OFFERED:
            indexed = [r for r in rules if r.id not in anchored]
            shared = False  # a large set, narrowed by the scan: sharing a check saves little, costs keys
        else:
            self.anchored_rules = []
            indexed, shared = list(rules), True
        #: check -> (predicate, the rules it stands for)
        self.checks: list[tuple[Predicate, list["CompiledRule"]]] = []
        self.check_of: dict[str, int] = {}
        keys = self._keys(rules) if shared else {rule.id: ("only", rule.id) for rule in rules}
        by_key: dict[tuple[Any, ...], int] = {}
        for rule in rules:
            key = (rule.id in anchored, keys[rule.id])
            index = by_key.get(key)
            if index is None:
                index = by_key[key] = len(self.checks)
                self.checks.append((self._first_call(index, rule), []))
            self.checks[index][1].append(rule)
            self.check_of[rule.id] = index
        self.prefilter: Prefilter | None = None
        self.index = self._index(indexed)
        self.fields = tuple(self.index.tables)
        #: index key -> [the function running the offered checks]; one list per offered tuple, so the
        #: keys offering the same checks share it and see it replaced by the generated one
        self.memo: dict[Any, list[Callable[[Mapping[str, Any]], list["CompiledRule"]]]] = {}
        self.runners: dict[tuple[int, ...], list[Callable[[Mapping[str, Any]], list["CompiledRule"]]]] = {}

    def _keys(self, rules: Sequence["CompiledRule"]) -> dict[str, tuple[Any, ...]]:
        """Each rule's check key: its :func:`fingerprint` where another rule reads the same fields with the
        same discriminator (only those can have the same detection), else a key of its own."""
        alike: dict[tuple[Any, ...], int] = {}
        for rule in rules:
            coarse = (rule.fields, self.disc[rule.id])
            alike[coarse] = alike.get(coarse, 0) + 1
        return {rule.id: fingerprint(rule, self.dataset) if alike[(rule.fields, self.disc[rule.id])] > 1
                else ("only", rule.id) for rule in rules}

    def _most_offered(self, rules: Sequence["CompiledRule"]) -> int:
        """An upper bound of the rules the index offers one event if it holds all of these: the unindexed
        ones, plus the largest bucket of each index field (a rule is in one field's table only)."""
        probe: DiscriminatorIndex[str] = DiscriminatorIndex()
        for rule in rules:
            probe.add(self.disc[rule.id], rule.id)
        return len(probe.unindexed) + sum(max(map(len, t.values()), default=0) for t in probe.tables.values())

    def _first_call(self, index: int, rule: "CompiledRule") -> Predicate:
        """A stand-in that runs the closures for the check's first ``GENERATE_AFTER`` events, then puts
        the generated function in its place. Generating costs ~0.5 ms a rule (SigmaHQ: 0.5 CPU-s for the
        770 rules the samples reach, more than they save); a check offered many events repays it."""
        closure = closure_predicate(rule, self.dataset)
        calls = 0

        def counted(event: Mapping[str, Any]) -> bool:
            nonlocal calls
            calls += 1
            if calls >= GENERATE_AFTER:
                self.checks[index] = (bound_predicate(rule, self.dataset), self.checks[index][1])
            return closure(event)
        return counted

    def _index(self, rules: Iterable["CompiledRule"]) -> DiscriminatorIndex[int]:
        """These rules' checks by discriminator, each check listed once."""
        index: DiscriminatorIndex[int] = DiscriminatorIndex()
        seen: set[int] = set()
        for rule in rules:
            check = self.check_of[rule.id]
            if check in seen:
                continue  # its check is indexed already (same detection, same discriminator)
            seen.add(check)
            index.add(self.disc[rule.id], check)
        return index

    def lookup(self, values: tuple[Any, ...]) -> tuple[int, ...]:
        """The checks the index offers for these values of ``self.fields`` (as ``RuleSet`` looks up)."""
        return tuple(dict.fromkeys(self.index.lookup(dict(zip(self.fields, values)).get)))

    def runner(self, offered: tuple[int, ...]) -> list[Callable[[Mapping[str, Any]], list["CompiledRule"]]]:
        """The cell holding the function that runs these checks in order: a loop over the checks first,
        after ``GENERATE_AFTER`` events one generated function (:func:`generate_checks`) doing the same."""
        cell = self.runners.get(offered)
        if cell is not None:
            return cell
        if len(self.runners) >= MEMO_MAX:
            self.runners.clear()
            self.memo.clear()
        checks, calls = self.checks, 0

        def loop(event: Mapping[str, Any]) -> list["CompiledRule"]:
            nonlocal calls
            calls += 1
            if calls == GENERATE_AFTER and offered:
                self._generate_runner(offered, cell)
            out: list[CompiledRule] = []
            for index in offered:
                predicate, rules = checks[index]
                if predicate(event):
                    out.extend(rules)
            return out

        cell = self.runners[offered] = [loop]
        return cell

    def _generate_runner(self, offered: tuple[int, ...], cell: list[Any]) -> None:
        """Put one generated function for ``offered`` in ``cell``; keep the loop if it cannot be built."""
        parts: list[Any] = []
        for index in offered:
            rule = self.checks[index][1][0]  # every rule of a check has the same predicate here
            if rule._conditions:
                parts.append((rule._conditions, rule._scope_nodes.get(self.dataset)))
            else:
                parts.append(closure_predicate(rule, self.dataset))
        try:
            cell[0] = generate_checks(parts, [self.checks[index][1] for index in offered])
        except (SyntaxError, RecursionError, MemoryError, ValueError):
            pass

    def matcher(self) -> Callable[[Mapping[str, Any]], list["CompiledRule"]]:
        """``match``, with the memo probe generated (codegen.generate_lookup) where no literal scan follows
        it; ``match`` itself handles every key the memo does not hold yet."""
        if self.prefilter is not None:
            return self.match
        try:
            return generate_lookup(self.fields, self.memo, self.match)
        except (SyntaxError, RecursionError, MemoryError, ValueError):
            return self.match

    def match(self, event: Mapping[str, Any]) -> list["CompiledRule"]:
        values = tuple(map(event.get, self.fields))
        try:
            # The types are part of the key: True == 1 and hash alike, but index as "true" and "1".
            key: Any = values + tuple(map(type, values))
            cell = self.memo.get(key)
        except TypeError:  # a list value: not hashable, looked up each time
            key = cell = None
        if cell is None:
            cell = self.runner(self.lookup(values))
            if key is not None:
                if len(self.memo) >= MEMO_MAX:
                    self.memo.clear()
                self.memo[key] = cell
        out = cell[0](event)
        if self.prefilter is not None:
            checks, check_of = self.checks, self.check_of
            for index in dict.fromkeys([check_of[r.id] for r in self.prefilter.candidates(event)]):
                predicate, rules = checks[index]
                if predicate(event):
                    out.extend(rules)
        return out


class ScanMatcher:
    """``matcher(event)``: the rules of one scan that match ``event``, each once (any order).

    ``prefilter``, when given, must hold every rule passed here and no other (the rule set's own, for a
    scan of all its rules); otherwise one is built for the datasets that use it.
    """

    def __init__(self, rules: Iterable["CompiledRule"], prefilter: Prefilter | None = None) -> None:
        rules = list(rules)
        by_dataset: dict[str, list[CompiledRule]] = {}
        for rule in rules:
            for dataset in rule.datasets:
                by_dataset.setdefault(dataset, []).append(rule)
        anchored = frozenset(prefilter.anchored if prefilter is not None else (r.id for r in rules if is_anchored(r)))
        self._plans: dict[str, _DatasetPlan] = {}
        scanned: list[_DatasetPlan] = []
        for dataset, mine in by_dataset.items():
            plan = self._plans[dataset] = _DatasetPlan(dataset, mine, anchored)
            if plan.anchored_rules:
                scanned.append(plan)
        if scanned:
            if prefilter is None:
                prefilter = Prefilter({r.id: r for p in scanned for r in p.anchored_rules}.values())
            for plan in scanned:
                plan.prefilter = prefilter
        self._match = {dataset: plan.matcher() for dataset, plan in self._plans.items()}

    def __call__(self, event: Mapping[str, Any]) -> list["CompiledRule"]:
        dataset = event.get(DATASET)
        match = self._match.get(dataset) if type(dataset) is str else None
        if match is None:
            return []
        return match(event)

    def uses_prefilter(self, dataset: str) -> bool:
        """Whether events of ``dataset`` go through the literal scan (for tests and benchmarks)."""
        plan = self._plans.get(dataset)
        return plan is not None and plan.prefilter is not None
