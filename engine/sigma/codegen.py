"""A rule's predicate on one dataset as one generated Python function (the scan's fast path).

Why: the compiled tree (engine/sigma/compiler.py) is a closure per node, so one check of a small rule is
five to fifteen Python calls: the AND/OR lambdas, each item's field lookup, its value predicate. Calls are
most of the cost of matching. Here the whole tree becomes one expression in one function: AND/OR/NOT are
Python's own operators, and the common item shapes are inlined --

* ``Field: [a, b]`` (plain strings, no wildcards): a ``str`` value is lower-cased and looked up in a set;
* ``Field: true`` / ``Field: 4624`` / ``Field: [4624, 4625]``: a ``bool``/``int`` value is compared directly;
* ``Field|exists: true|false``, ``Field: null``: ``get(field) is (not) None``;
* any other item of value predicates only (``|gte: 3``, ``|contains``, ``|re``...): an absent field is
  False without calling the item's closure.

Any other value type of the event (a list, a number for a string item, ...) and every other item shape
call the item's compiled closure, which stays the definition: the inlined test is only the closure's own
first branch written out (tests/test_scan_matcher.py holds the two equal on random rules and events).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from sigma.types import (
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SigmaTimestampPart,
)

from engine.sigma import values as V
from engine.sigma.compiler import BoolNode, IdentifierNode, ItemNode, Node, TrueNode

Predicate = Callable[[Mapping[str, Any]], bool]


class _Source:
    """The expression text of one predicate and the constants it names."""

    def __init__(self) -> None:
        self.constants: dict[str, Any] = {}

    def const(self, value: Any) -> str:
        name = f"_c{len(self.constants)}"
        self.constants[name] = value
        return name

    def expr(self, node: Node) -> str:
        kind = type(node)
        if kind is IdentifierNode:
            return self.expr(node.child)  # type: ignore[attr-defined]
        if kind is TrueNode:
            return "True"
        if kind is BoolNode:
            parts = [self.expr(c) for c in node.children]  # type: ignore[attr-defined]
            if node.op == "not":  # type: ignore[attr-defined]
                return f"(not {parts[0]})"
            return "(" + f" {node.op} ".join(parts) + ")"  # type: ignore[attr-defined]
        if kind is ItemNode:
            return self.item(node)  # type: ignore[arg-type]
        return f"{self.const(node.fn)}(ev)"

    def item(self, node: ItemNode) -> str:
        """One item: an inlined first branch for the common shapes, else (and for other value types) the
        item's own closure."""
        closure = f"{self.const(node.fn)}(ev)"
        if type(node.field) is not str or node.negated or len(node.groups) != 1:
            return closure
        group = node.groups[0]
        name = repr(node.field)  # a str's repr is a Python string literal: rule text never becomes code
        fallback = f"(v is not None and {closure})"
        if len(group) == 1 and type(group[0]) is SigmaExists:
            return f"(get({name}) is {'not ' if group[0].exists else ''}None)"
        if len(group) == 1 and type(group[0]) is SigmaNull:
            return f"(get({name}) is None)"
        if len(group) == 1 and type(group[0]) is SigmaBool:
            flag = "True" if group[0].boolean else "False"
            return f"(v is {flag} if (v := get({name})).__class__ is bool else {fallback})"
        if group and all(type(v) is SigmaNumber and type(v.number) is int for v in group):
            numbers = self.const(frozenset(v.number for v in group))
            return f"(v in {numbers} if (v := get({name})).__class__ is int else {fallback})"
        literals = _plain_literals(group)
        if literals is not None:
            texts = self.const(literals)
            return f"(v.lower() in {texts} if (v := get({name})).__class__ is str else {fallback})"
        if group and all(type(v) in _SCALAR_VALUES for v in group):
            # only value predicates (compiler._scalar_fn): an absent field is False without the call
            return f"(get({name}) is not None and {closure})"
        return closure


#: value types the compiler turns into value predicates only (``ItemNode._compile_group``: no item-level
#: test such as null, exists or a field reference), so the item is False on an absent field
_SCALAR_VALUES = frozenset({SigmaString, SigmaCasedString, SigmaNumber, SigmaBool, SigmaRegularExpression,
                            SigmaCIDRExpression, SigmaCompareExpression, SigmaTimestampPart})


def _plain_literals(group: Sequence[Any]) -> frozenset[str] | None:
    """The lower-cased texts of a group of uncased strings without wildcards (what ``string_group``
    compares with ``==``), or None when the group has anything else."""
    if not group or any(type(v) is not SigmaString for v in group):
        return None
    shapes = [V.string_shape(v, lower=True) for v in group]
    if any(shape.kind != "eq" for shape in shapes):
        return None
    return frozenset(shape.literal for shape in shapes)


def _body(source: _Source, conditions: Sequence[Node], scope: Node | None) -> str:
    body = " or ".join(source.expr(c) for c in conditions) or "False"
    if scope is not None:
        body = f"{source.expr(scope)} and ({body})"
    return body


def _function(text: str, source: _Source, name: str) -> Any:
    namespace: dict[str, Any] = dict(source.constants)
    exec(compile(text, "<sigma rule>", "exec"), namespace)  # noqa: S102 - our own text, no user code
    return namespace[name]


def generate(conditions: Sequence[Node], scope: Node | None) -> Predicate:
    """``scope and (condition 1 or condition 2 ...)`` as one function of the event.

    Raises (SyntaxError, RecursionError, MemoryError...) for a tree too deep for Python's parser: the
    caller then keeps the closures.
    """
    source = _Source()
    text = f"def predicate(ev):\n    get = ev.get\n    return {_body(source, conditions, scope)}\n"
    return _function(text, source, "predicate")  # type: ignore[no-any-return]


def generate_checks(checks: Sequence[Any], results: Sequence[Sequence[Any]]) -> Callable[[Mapping[str, Any]], list[Any]]:
    """One function for several checks in a row: ``[*results[0] if check 0 holds, *results[1] if ...]``.

    Why: the index offers an EHR read the same two or three checks every time; called one by one that is
    a Python call, a tuple unpack and a ``get`` binding per check. Here they are one call, in the same
    order, each check's test written as :func:`generate` writes it (or its predicate called, where it
    cannot be inlined). A check is ``(conditions, scope)`` to inline or a predicate to call. Raises as
    :func:`generate` does.
    """
    source = _Source()
    lines = ["def checks(ev):", "    get = ev.get", "    out = []"]
    for check, result in zip(checks, results, strict=True):
        test = f"{source.const(check)}(ev)" if callable(check) else _body(source, *check)
        lines += [f"    if {test}:", f"        out += {source.const(tuple(result))}"]
    lines.append("    return out\n")
    return _function("\n".join(lines), source, "checks")  # type: ignore[no-any-return]


def generate_lookup(fields: Sequence[str], memo: Mapping[Any, Any], slow: Callable[[Mapping[str, Any]], Any]
                    ) -> Callable[[Mapping[str, Any]], Any]:
    """``memo[key](event)`` with the key read inline: the values of ``fields`` and their types, flat.

    Why: the scan looks its memo up for every event; ``tuple(map(event.get, fields))`` and the tuple of
    their types cost as much as running the checks of an EHR read. Here the reads are local variables and
    one tuple. A key not in the memo, or not hashable (a list value), goes to ``slow(event)``, which must
    compute the same key (``values + types``), fill the memo and return the result.
    """
    source = _Source()
    names = [f"v{i}" for i in range(len(fields))]
    lines = ["def lookup(ev):", "    get = ev.get"]
    lines += [f"    {name} = get({field!r})" for name, field in zip(names, fields)]
    parts = names + [f"_type({name})" for name in names]
    key = "(" + "".join(f"{part}, " for part in parts) + ")"
    memo_name, slow_name = source.const(memo), source.const(slow)
    lines += ["    try:", f"        cell = {memo_name}[{key}]", "    except (KeyError, TypeError):",
              f"        return {slow_name}(ev)", "    return cell[0](ev)\n"]
    source.constants["_type"] = type
    return _function("\n".join(lines), source, "lookup")  # type: ignore[no-any-return]
