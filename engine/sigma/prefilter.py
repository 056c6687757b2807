"""Necessary literals and one Aho-Corasick scan per field: which rules an event can possibly match.

Why: with the SigmaHQ Windows set, the rule index (dataset + ``EventID``) still hands a Sysmon process
creation ~1,000 rules, almost all of which fail on an ``Image|endswith`` or a ``CommandLine|contains``. Here
each rule is reduced, at load time, to *requirements* it cannot match without: "field F contains one of these
lower-case literals". All literals of one field go into one Aho-Corasick automaton (``pyahocorasick``), the
event's value of that field is lower-cased once and scanned once, and a rule is offered to the exact
evaluator only when every one of its requirements saw a literal -- the way YARA and Hyperscan prefilter.

Exactness: a requirement is derived only where the compiled matcher provably cannot match without it (see
:func:`requirements`; regexes: engine/sigma/regex_literals.py); anything else (numbers, regexes without a
literal every match contains, negations, null/exists/fieldref) yields no requirement, and a rule without
any stays on the index path. The prefilter only
narrows; ``CompiledRule.matches`` still decides (tests/test_prefilter_exact.py checks both claims).
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import ahocorasick
from sigma.types import SigmaCasedString, SigmaRegularExpression, SigmaString

from engine.events import DATASET
from engine.sigma.compiler import BoolNode, IdentifierNode, ItemNode, Node
from engine.sigma.regex_literals import required_literal_sets, required_literals
from engine.sigma.values import as_text, compile_regex, index_key

if TYPE_CHECKING:
    from engine.sigma.model import CompiledRule

#: "field contains (lower-cased) one of these literals"; field ``None``: some string value of the event
#: does (a keyword item)
Requirement = frozenset[tuple[str | None, str]]
_SIGMA = "\u03a3"  # the one char whose lower() depends on its neighbours (final sigma)


def value_literals(value: Any) -> frozenset[str] | None:
    """Lower-cased literals one of which every event text matching ``value`` contains, or None.

    An uncased wildcard string: its longest literal run, lower-cased as ``values.string_shape`` does
    (``eq`` matches the whole literal; the other shapes are the runs in order with wildcards between). A
    ``|cased`` string: its longest run without ``Σ``, lower-cased -- the value matched case-sensitively, so
    the event text holds the run and ``str.lower()``, char-wise but for ``Σ``, maps it into the lowered
    text. A regex: :func:`regex_literals.required_literals` (an any-of set). None for anything else
    (numbers, CIDR, ...), so the value's group yields no requirement.
    """
    kind = type(value)
    if kind is SigmaString:
        return _longest_run(value, cased=False)
    if kind is SigmaCasedString:
        return _longest_run(value, cased=True)
    if kind is SigmaRegularExpression:
        pattern = compile_regex(value)
        return required_literals(pattern.pattern, pattern.flags)
    return None


def _longest_run(value: SigmaString, cased: bool) -> frozenset[str] | None:
    runs, current = [], ""
    for part in value.s:
        if isinstance(part, str):
            if cased and _SIGMA in part:
                pieces = part.split(_SIGMA)
                runs.append(current + pieces[0].lower())
                runs.extend(piece.lower() for piece in pieces[1:-1])
                current = pieces[-1].lower()
            else:
                current += part.lower()  # part-wise, exactly as string_shape lowers the literal
        else:
            runs.append(current)
            current = ""
    runs.append(current)
    best = max(runs, key=len)
    return frozenset((best,)) if best else None


def _item_requirements(node: ItemNode) -> list[Requirement]:
    if node.negated:
        return []
    per_group: list[list[Requirement] | None] = []  # each group: AND-linked requirements, or None
    for group in node.groups:
        if len(group) == 1 and type(group[0]) is SigmaRegularExpression:
            # a lone regex may need several literals at once (regex_literals.required_literal_sets)
            pattern = compile_regex(group[0])
            sets = required_literal_sets(pattern.pattern, pattern.flags)
            per_group.append([frozenset((node.field, lit) for lit in s) for s in sets] or None)
            continue
        literals = [value_literals(v) for v in group]
        if not literals or None in literals:
            per_group.append(None)
        else:
            per_group.append([frozenset((node.field, lit) for lits in literals for lit in lits)])  # type: ignore[union-attr]
    if node.linking == "and":  # |all: each value is needed
        return [req for g in per_group if g is not None for req in g]
    if not per_group or None in per_group:
        return []
    if len(per_group) == 1:
        return per_group[0]  # type: ignore[return-value]
    return [frozenset().union(*(max(g, key=score) for g in per_group))]  # type: ignore[arg-type]


def score(requirement: Requirement) -> tuple[int, int]:
    """Rarer first: long shortest literal, then few alternatives."""
    return (min(len(lit) for _, lit in requirement), -len(requirement))


def _any_of(branches: list[list[Requirement]]) -> list[Requirement]:
    if not branches or any(not b for b in branches):
        return []
    if len(branches) == 1:
        return branches[0]
    return [frozenset().union(*(max(b, key=score) for b in branches))]


def requirements(node: Node) -> list[Requirement]:
    """AND-linked requirements every event matching ``node`` meets (possibly none)."""
    if isinstance(node, ItemNode):
        return _item_requirements(node)
    if isinstance(node, IdentifierNode):
        return requirements(node.child)
    if isinstance(node, BoolNode):
        if node.op == "and":
            return [r for child in node.children for r in requirements(child)]
        if node.op == "or":
            return _any_of([requirements(child) for child in node.children])
    return []  # not, true


def rule_requirements(rule: "CompiledRule") -> list[Requirement]:
    """A rule matches when any of its conditions does: their requirements OR-ed (deduplicated)."""
    found = _any_of([requirements(c) for c in rule._conditions])
    return list(dict.fromkeys(found))


def _texts(value: Any) -> Iterable[str]:
    """The lower-cased texts a string item compares, as ``values.text_predicate`` and ``ItemNode`` do."""
    if type(value) is list:
        for item in value:
            if item is not None:
                yield from _texts_scalar(item)
    else:
        yield from _texts_scalar(value)


def _texts_scalar(value: Any) -> Iterable[str]:
    text = value if type(value) is str else as_text(value)
    if text is not None:
        yield text.lower()


def _string_values(event: Mapping[str, Any]) -> list[str]:
    """What ``engine.events.iter_string_values`` yields, in another order (the hot path: one C-level pass
    for the usual all-``str`` values; order does not matter to a scan for literals)."""
    values = event.values()
    out = [value for value in values if type(value) is str]
    if len(out) != len(values):
        for value in values:
            if type(value) is str:
                continue
            if isinstance(value, str):
                out.append(value)
            elif isinstance(value, list):
                out.extend([item for item in value if isinstance(item, str)])
    return out


#: the literal id of an automaton hit ``(end, id)``: mapped in C, no Python frame per scanned field
_hit_id = itemgetter(1)
#: distinct values remembered per scanned field (then forgotten at once: no LRU bookkeeping per event)
_MEMO_MAX = 8192


class _DatasetScan:
    def __init__(self) -> None:
        self.literals: dict[str | None, dict[str, int]] = {}  # field (None: keywords) -> literal -> id
        #: anchor literal id -> (rule, its requirements as literal ids, its index discriminator)
        self.by_literal: dict[int, list[tuple["CompiledRule", tuple[frozenset[int], ...], Any]]] = {}
        #: field -> its automaton's ``iter``; ``keywords``: the one over all string values
        self.fields: dict[str, Any] = {}
        self.keywords: Any = None
        #: field -> {value: the literal ids its scan finds}; see Prefilter.seen
        self.memos: dict[str, dict[str, tuple[int, ...]]] = {}


class Prefilter:
    """Rules with requirements, by dataset; :meth:`candidates` returns those an event may match."""

    def __init__(self, rules: Iterable["CompiledRule"]) -> None:
        self.anchored: set[str] = set()
        self._ids: dict[tuple[str | None, str], int] = {}
        self._datasets: dict[str, _DatasetScan] = {}
        for rule in rules:
            reqs = rule_requirements(rule)
            discriminators = rule.discriminators()
            if not _anchors(reqs, discriminators):
                continue
            self.anchored.add(rule.id)
            anchor = max(reqs, key=score)
            as_ids = tuple(frozenset(self._id(pair) for pair in req) for req in reqs)
            for dataset in rule.datasets:
                scan = self._datasets.setdefault(dataset, _DatasetScan())
                entry = (rule, as_ids, discriminators.get(dataset))
                for req in reqs:
                    for name, lit in req:
                        scan.literals.setdefault(name, {})[lit] = self._id((name, lit))
                for pair in anchor:
                    scan.by_literal.setdefault(self._id(pair), []).append(entry)
        for scan in self._datasets.values():
            for name, literals in scan.literals.items():
                automaton = ahocorasick.Automaton()
                for lit, lit_id in literals.items():
                    automaton.add_word(lit, lit_id)
                automaton.make_automaton()
                if name is None:
                    scan.keywords = automaton.iter
                else:
                    scan.fields[name] = automaton.iter
                    scan.memos[name] = {}

    def _id(self, pair: tuple[str | None, str]) -> int:
        return self._ids.setdefault(pair, len(self._ids))

    def seen(self, event: Mapping[str, Any]) -> set[int]:
        """Ids of the (field, literal) pairs present in ``event``: one scan per field, case folded once."""
        dataset = event.get(DATASET)
        scan = self._datasets.get(dataset) if type(dataset) is str else None
        seen: set[int] = set()
        if scan is None:
            return seen
        fields = scan.fields
        memos = scan.memos
        for name in fields.keys() & event.keys():
            value = event[name]
            if value is None:
                continue
            scan_iter = fields[name]
            if type(value) is str:
                # Field values repeat (evtx-samples: 171k scans of 16k distinct values): a value's hits are
                # the same every time, so each distinct value is scanned once until the memo fills.
                memo = memos[name]
                hits = memo.get(value)
                if hits is None:
                    if len(memo) >= _MEMO_MAX:
                        memo.clear()
                    hits = memo[value] = tuple(map(_hit_id, scan_iter(value.lower())))
                if hits:
                    seen.update(hits)
            else:
                for text in _texts(value):
                    seen.update(map(_hit_id, scan_iter(text)))
        if scan.keywords is not None:
            # Keywords: every string value, as ItemNode searches them, in one scan. The NUL separator can
            # only add matches spanning two values (more candidates), never hide one; it is neither cased
            # nor case-ignorable, so lower() of the whole equals lower() of each value (final sigma).
            text = "\x00".join(_string_values(event)).lower()
            seen.update(map(_hit_id, scan.keywords(text)))
        return seen

    def candidates(self, event: Mapping[str, Any]) -> list["CompiledRule"]:
        """Anchored rules whose every requirement saw a literal in ``event`` and whose index discriminator
        (e.g. ``EventID``) the event has: two necessary conditions (unanchored rules: not here)."""
        dataset = event.get(DATASET)
        scan = self._datasets.get(dataset) if type(dataset) is str else None
        if scan is None:
            return []
        seen = self.seen(event)
        if not seen:
            return []
        out: list[CompiledRule] = []
        by_literal = scan.by_literal
        keys: dict[str, frozenset[str]] = {}
        for lit in seen:
            for rule, reqs, disc in by_literal.get(lit, ()):
                for req in reqs:
                    if seen.isdisjoint(req):
                        break
                else:
                    if disc is not None:
                        have = keys.get(disc[0])
                        if have is None:
                            have = keys[disc[0]] = _index_keys(event.get(disc[0]))
                        if have.isdisjoint(disc[1]):
                            continue
                    out.append(rule)
        return out


def is_anchored(rule: "CompiledRule") -> bool:
    """Whether :class:`Prefilter` serves ``rule`` (it has necessary literals the index does not cover)."""
    return _anchors(rule_requirements(rule), rule.discriminators())


def _anchors(reqs: list[Requirement], discriminators: Mapping[str, Any]) -> bool:
    return bool(reqs) and not _index_suffices(reqs, discriminators)


def _index_suffices(reqs: list[Requirement], discriminators: Mapping[str, Any]) -> bool:
    """The rule index already narrows by every field the literals are on (``event.action: read`` indexed by
    ``event.action``): the scan would find nothing the index lookup does not, and costs more, so the rule
    stays on the index path. Only speed is at stake here, never a match."""
    if any(d is None for d in discriminators.values()):
        return False
    fields = {d[0] for d in discriminators.values()}
    return all(name in fields for req in reqs for name, _ in req)


def _index_keys(value: Any) -> frozenset[str]:
    """The index keys of a field's value, as ``RuleSet`` looks them up (a list: each member's)."""
    if value is None:
        return frozenset()
    items = value if type(value) is list else (value,)
    return frozenset(k for k in (index_key(x) for x in items) if k is not None)
