"""Extended conditions of temporal correlations: ``a and (b or not c)`` over "rule has a match in the window".

A tiny recursive-descent parser (precedence ``not`` > ``and`` > ``or``, parentheses) compiled to a closure,
so evaluating it per window is a few function calls. Unknown identifiers are a load error, not a silent
"never matches": a typo in a rule must not disable it.
"""

from __future__ import annotations

import re
from typing import AbstractSet, Callable, Iterable

Predicate = Callable[[AbstractSet[str]], bool]

_TOKEN_RE = re.compile(r"\(|\)|[^\s()]+")
_KEYWORDS = {"and", "or", "not"}


class _Parser:
    """Parses one token list; each ``_parse_*`` method consumes tokens and returns a predicate."""

    def __init__(self, tokens: list[str], known: frozenset[str], text: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.known = known
        self.text = text

    def error(self, message: str) -> ValueError:
        return ValueError(f"extended condition {self.text!r}: {message}")

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise self.error("unexpected end")
        self.pos += 1
        return token

    def parse(self) -> Predicate:
        predicate = self._parse_or()
        if self.peek() is not None:
            raise self.error(f"unexpected {self.peek()!r}")
        return predicate

    def _is(self, keyword: str) -> bool:
        token = self.peek()
        return token is not None and token.lower() == keyword

    def _parse_or(self) -> Predicate:
        parts = [self._parse_and()]
        while self._is("or"):
            self.take()
            parts.append(self._parse_and())
        if len(parts) == 1:
            return parts[0]
        return lambda present: any(part(present) for part in parts)

    def _parse_and(self) -> Predicate:
        parts = [self._parse_not()]
        while self._is("and"):
            self.take()
            parts.append(self._parse_not())
        if len(parts) == 1:
            return parts[0]
        return lambda present: all(part(present) for part in parts)

    def _parse_not(self) -> Predicate:
        if self._is("not"):
            self.take()
            inner = self._parse_not()
            return lambda present: not inner(present)
        return self._parse_atom()

    def _parse_atom(self) -> Predicate:
        token = self.take()
        if token == "(":
            inner = self._parse_or()
            if self.take() != ")":
                raise self.error("missing ')'")
            return inner
        if token == ")" or token.lower() in _KEYWORDS:
            raise self.error(f"unexpected {token!r}")
        if token not in self.known:
            raise self.error(f"{token!r} is not one of the referenced rules {sorted(self.known)}")
        return lambda present: token in present


def compile_extended_condition(text: str, referenced: Iterable[str]) -> Predicate:
    """Compile ``text`` into a predicate over the set of referenced ids that have a match in the window."""
    tokens = _TOKEN_RE.findall(text)
    if not tokens:
        raise ValueError("extended condition is empty")
    return _Parser(tokens, frozenset(referenced), text).parse()
