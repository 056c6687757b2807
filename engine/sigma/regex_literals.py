"""Necessary literals of a regular expression: lower-cased texts one of which every match contains.

Why: the literal prefilter (engine/sigma/prefilter.py) offers a rule to the exact evaluator only when an
Aho-Corasick scan of the *lower-cased* field found one of the rule's literals. Regex values (``|re``: the
Invoke-Obfuscation family, ``\\windows\\temp\\[a-z0-9]{10}\\.exe``) had none, so such rules were checked on
every event their index offered (~17k checks over evtx-samples, almost none holding). Here the pattern is
walked with Python's own parser (``re._parser``, as the ``re`` module compiles it) and the literal runs that
every match must contain are collected.

Exactness (tests/test_regex_literals.py checks it with hypothesis): the claim is "if ``re.search(p, t)``
then one of the returned literals is a substring of ``t.lower()``". A run is taken only from consecutive
mandatory items of the match: top-level concatenation, groups, atomic groups, ``{n}`` repeats; zero-width
items (``^ $ \\b``, lookarounds) consume nothing, so the chars either side stay adjacent. Anything that can
be absent or vary (``?`` ``*`` ``{0,n}``, classes, ``.``, backreferences, conditionals) ends the run; a
``{n,m}`` repeat with ``n >= 1`` contributes its own inner requirements. An alternation contributes an
any-of set only when every branch has a literal.

Case: ``str.lower()`` is character-wise except for ``Σ`` (final sigma depends on the next char), so a run
never contains ``Σ``; a case-sensitive literal char ``c`` is then in ``t.lower()`` as ``c.lower()``. Under
``IGNORECASE`` a literal matches other chars too, and for ASCII ``i`` and ``s`` some of those lower to
something else (``İ`` -> ``i̇``, dotless ``ı``, long ``ſ``): those chars, and every non-ASCII char, end the
run (the ASCII table is checked against every code point in the tests), also under ``re.ASCII``, which a
scoped ``(?u:...)`` can undo. A class such as ``[Kk]`` counts as
one char when all of its members lower to the same one.
"""

from __future__ import annotations

import re
from re import _constants as C  # noqa: N812 - the re module's own opcodes
from re import _parser
from typing import Any, Iterable

#: ``{literal, ...}``: every match contains at least one of them (lower-cased)
AnyOf = frozenset[str]

#: shortest literal worth a requirement: shorter ones hit nearly every value and flood the automaton (but
#: see ``_RARE``)
MIN_LENGTH = 3
#: a shorter literal is still taken when it holds one of these chars: they are rare in event text (command
#: lines, paths), so the scan's hits stay few (Invoke-Obfuscation's backtick, ``${``); speed only, not exactness
_RARE = frozenset("`~!@#$^&*+[]{}|;<>?")
#: at most this many alternatives in an any-of set (a wider alternation is not worth scanning for)
MAX_ALTERNATIVES = 16

#: ASCII chars that, under IGNORECASE (re.ASCII too: a scoped ``(?u:)`` undoes it), also match a char whose
#: ``lower()`` differs: ``i``/``I`` match U+0130 (lower ``i̇``) and U+0131, ``s``/``S`` match U+017F (tests
#: recompute this)
ICASE_UNSAFE = frozenset("iIsS")
_SIGMA = "\u03a3"  # lower() of Σ depends on what follows it
_BREAK = None
_REPEATS = (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT)
_ZERO_WIDTH = (C.AT, C.ASSERT, C.ASSERT_NOT)
#: alternatives distributed over their sequence per pattern, at most (each costs one more walk of it)
_DISTRIBUTE_BUDGET = 64
#: ``{n}`` repeats are unrolled up to this many consumed chars (``\\{2}``), longer ones just end the run
_UNROLL = 32


def score(requirement: AnyOf) -> tuple[int, int]:
    """Rarer first: a long shortest literal, then few alternatives (as prefilter.score)."""
    return (min(len(lit) for lit in requirement), -len(requirement))


def required_literals(pattern: str, flags: int = 0) -> AnyOf | None:
    """The best any-of set of lower-cased literals every match of ``pattern`` contains, or None.

    ``flags`` as passed to ``re.compile`` (inline ``(?i)``/``(?x)`` in the pattern are read by the parser).
    """
    found = required_literal_sets(pattern, flags, limit=1)
    return found[0] if found else None


def required_literal_sets(pattern: str, flags: int = 0, limit: int = 3) -> list[AnyOf]:
    """Up to ``limit`` any-of sets every match meets all of (AND-linked), best first.

    Why several: ``cmd.{0,5}/c.+powershell.+(?:input|noexit)`` needs ``powershell`` *and* one of ``input``
    / ``noexit``: a rule whose regex is its only value can require both."""
    try:
        parsed = _parser.parse(pattern, flags)
    except (re.error, RecursionError, OverflowError):  # pragma: no cover - values compiled before
        return []
    all_flags = parsed.state.flags | flags
    # ICASE_UNSAFE even under re.ASCII: a scoped (?u:...) turns Unicode folding back on (ſ matches s)
    walk = _Walk(ICASE_UNSAFE)
    try:
        found = walk.analyse(walk.flatten(parsed, bool(all_flags & re.IGNORECASE)))
    except RecursionError:  # pragma: no cover - absurdly nested pattern: no requirement
        return []
    return sorted(dict.fromkeys(found), key=score, reverse=True)[:limit]


#: one item of a flattened sequence: ``(opcode, argument, IGNORECASE in force)``; ``_RUN_END``: a pseudo
#: opcode that only ends the current run
Item = tuple[Any, Any, bool]
_RUN_END = object()


class _Walk:
    def __init__(self, unsafe: frozenset[str]) -> None:
        self.unsafe = unsafe
        #: how many more alternatives may be distributed over the rest of their sequence (see analyse)
        self.budget = _DISTRIBUTE_BUDGET

    def flatten(self, items: Iterable[tuple[Any, Any]], icase: bool) -> list[Item]:
        """The items one match passes through in order, groups opened: a group is mandatory, so its
        chars are adjacent to those around it; each item keeps the case flag in force where it stands."""
        out: list[Item] = []
        for op, av in items:
            if op is C.SUBPATTERN:
                _group, add, remove, inner = av
                inner_icase = (icase or bool(add & re.IGNORECASE)) and not remove & re.IGNORECASE
                out.extend(self.flatten(inner, inner_icase))
            elif op is C.ATOMIC_GROUP:  # matches a subset of what the plain group does: still necessary
                out.extend(self.flatten(av, icase))
            elif op in _REPEATS:
                low, high, inner = av
                if low == high and low * inner.getwidth()[1] <= _UNROLL:
                    for _ in range(low):  # exactly ``low`` consecutive copies ({0}: nothing)
                        out.extend(self.flatten(inner, icase))
                elif low >= 1:
                    # x{n,m} matches x1..xk (k >= 1): what precedes runs into x1, xk runs into what
                    # follows (x1 and xk may be one copy: both claims still hold)
                    out.extend(self.flatten(inner, icase))
                    out.append((_RUN_END, None, icase))
                    out.extend(self.flatten(inner, icase))
                else:  # may be absent
                    out.append((_RUN_END, None, icase))
            else:
                out.append((op, av, icase))
        return out

    def analyse(self, flat: list[Item]) -> list[AnyOf]:
        """AND-linked requirements of one flattened sequence: its literal runs, an any-of set for each
        alternation whose every branch has one, and for the first alternation the sequence distributed
        over it (``x(a|b)y`` is ``xay|xby``: runs may then cross the alternation)."""
        tokens: list[str | None] = []
        reqs: list[AnyOf] = []
        first_branch = -1
        for index, (op, av, icase) in enumerate(flat):
            if op is C.LITERAL:
                tokens.append(self._char(av, icase))
            elif op is C.IN:
                tokens.append(self._class(av, icase))
            elif op in _ZERO_WIDTH:
                continue  # consumes nothing: the chars either side are adjacent in the match
            elif op is C.BRANCH:
                tokens.append(_BREAK)
                if first_branch < 0:
                    first_branch = index
                union = self._any_of([self.analyse(self.flatten(alt, icase)) for alt in av[1]])
                if union is not None:
                    reqs.append(union)
            else:  # ANY, NOT_LITERAL, GROUPREF, GROUPREF_EXISTS, _RUN_END ...: varies or can be empty
                tokens.append(_BREAK)
        run: list[str] = []
        for token in tokens + [_BREAK]:
            if token is _BREAK:
                literal = "".join(run)
                if len(literal) >= MIN_LENGTH or (literal and not _RARE.isdisjoint(literal)):
                    reqs.append(frozenset((literal,)))
                run = []
            else:
                run.append(token)
        if first_branch >= 0:
            _op, av, icase = flat[first_branch]
            alternatives = av[1]
            if len(alternatives) <= MAX_ALTERNATIVES and self.budget >= len(alternatives):
                self.budget -= len(alternatives)
                before, after = flat[:first_branch], flat[first_branch + 1:]
                union = self._any_of([self.analyse(before + self.flatten(alt, icase) + after)
                                      for alt in alternatives])
                if union is not None:
                    reqs.append(union)
        return reqs

    @staticmethod
    def _any_of(branches: list[list[AnyOf]]) -> AnyOf | None:
        """Each branch's best requirement, united: every match takes one branch (None: one has none)."""
        if not branches or not all(branches):
            return None
        union = frozenset().union(*(max(b, key=score) for b in branches))
        return union if len(union) <= MAX_ALTERNATIVES else None
    def _char(self, code: int, icase: bool) -> str | None:
        """``code`` as the lower-cased char every matching char lowers to, or None (ends the run)."""
        char = chr(code)
        if char == _SIGMA:
            return None
        if icase and (not char.isascii() or char in self.unsafe):
            return None
        return char.lower()

    def _class(self, items: list[tuple[Any, Any]], icase: bool) -> str | None:
        """A class whose members are plain chars that all lower to one text (``[Kk]``, ``[.]``)."""
        lowered = set()
        for op, av in items:
            if op is not C.LITERAL:  # NEGATE, RANGE, CATEGORY
                return None
            char = self._char(av, icase)
            if char is None:
                return None
            lowered.add(char)
        return lowered.pop() if len(lowered) == 1 else None
