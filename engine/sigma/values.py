"""Compiling one Sigma value (after pySigma applied its modifiers) into a predicate on one event value.

Why this is its own module: it is the hot path. Everything that can be decided at load time is -- literals
are lowercased once, a wildcard string becomes ``==``/``startswith``/``endswith``/``in`` when its shape
allows and a regex only when it must, and the many values of one detection item are folded into one set
lookup plus tuple ``startswith``/``endswith`` calls.

Case: Sigma strings match case-insensitively unless ``|cased``. We compare ``str.lower()`` of both sides
(not ``casefold``: it is faster and keeps ``len`` stable for ASCII; docs/rules.md lists the non-ASCII
consequences, e.g. ``ß`` does not match ``SS``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import ip_address
from typing import Any, Callable

from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SpecialChars,
    TimestampPart,
)

Scalar = Callable[[Any], bool]


def as_text(value: Any) -> str | None:
    """The text a string pattern is matched against: numbers by their decimal form, booleans as true/false."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return None


def as_number(value: Any) -> int | float | None:
    """Numbers and numeric strings (``"4688"``) compare as numbers; everything else is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return None
    return None


# ASCII characters int()/float() may start with (non-ASCII first characters, e.g. other digit scripts or
# Unicode spaces, always take the full path).
_NUMBER_START = frozenset("0123456789+-. \t\n\r\x0b\x0c\x1c\x1d\x1e\x1finINfF")


def index_key(value: Any) -> str | None:
    """Normal form used by the rule index: equal under Sigma ``=`` (numbers, case, booleans) implies equal
    keys. A boolean ``true`` and the string ``"TRUE"`` both match ``field: true``, so both key ``"true"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if type(value) is str and value[:1].isascii() and value[:1] not in _NUMBER_START:
        return value.lower()  # cannot be numeric: skip the int()/float() attempts (exceptions are slow)
    number = as_number(value)
    if number is not None:
        if isinstance(number, float):
            return str(int(number)) if number.is_integer() else repr(number)
        return str(number)
    if isinstance(value, str):
        return value.lower()
    return None


# --- wildcard strings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StringShape:
    """A wildcard string reduced to the cheapest test that decides it."""

    kind: str  # "eq" | "startswith" | "endswith" | "contains" | "any" | "regex"
    literal: str  # for eq/startswith/endswith/contains
    regex: re.Pattern[str] | None = None


def string_shape(value: SigmaString, lower: bool) -> StringShape:
    parts = [p.lower() if lower and isinstance(p, str) else p for p in value.s]
    if any(isinstance(p, Placeholder) for p in parts):  # pragma: no cover - resolved before compiling
        raise ValueError("unresolved placeholder")
    star = SpecialChars.WILDCARD_MULTI
    texts = [p for p in parts if isinstance(p, str)]
    specials = [p for p in parts if isinstance(p, SpecialChars)]
    if not specials:
        return StringShape("eq", "".join(texts))
    if all(p is star for p in specials):
        if all(p is star for p in parts):
            return StringShape("any", "")
        if len(texts) == 1:
            lit = texts[0]
            inner = parts[1:-1] if len(parts) == 3 else None
            if parts == [star, lit]:
                return StringShape("endswith", lit)
            if parts == [lit, star]:
                return StringShape("startswith", lit)
            if len(parts) == 3 and parts[0] is star and parts[2] is star and inner == [lit]:
                return StringShape("contains", lit)
    pattern = "".join(
        re.escape(p) if isinstance(p, str) else (".*" if p is star else ".") for p in parts
    )
    return StringShape("regex", "", re.compile(pattern, re.DOTALL))


def wildcard_regex(value: SigmaString, lower: bool) -> re.Pattern[str]:
    """A full-match regex for any wildcard string (used by explain and by property tests)."""
    shape = string_shape(value, lower)
    if shape.regex is not None:
        return shape.regex
    parts = [p.lower() if lower and isinstance(p, str) else p for p in value.s]
    pattern = "".join(
        re.escape(p) if isinstance(p, str) else (".*" if p is SpecialChars.WILDCARD_MULTI else ".")
        for p in parts
    )
    return re.compile(pattern, re.DOTALL)


def string_group(values: list[SigmaString], cased: bool) -> Callable[[str], bool]:
    """One predicate for many OR-linked strings: a set, two tuples, a few substrings, then regexes."""
    eq: set[str] = set()
    starts: list[str] = []
    ends: list[str] = []
    contains: list[str] = []
    regexes: list[re.Pattern[str]] = []
    anything = False
    for value in values:
        shape = string_shape(value, lower=not cased)
        if shape.kind == "eq":
            eq.add(shape.literal)
        elif shape.kind == "startswith":
            starts.append(shape.literal)
        elif shape.kind == "endswith":
            ends.append(shape.literal)
        elif shape.kind == "contains":
            contains.append(shape.literal)
        elif shape.kind == "any":
            anything = True
        else:
            assert shape.regex is not None
            regexes.append(shape.regex)
    if anything:
        return lambda s: True
    eq_f = frozenset(eq)
    starts_t, ends_t, contains_t = tuple(starts), tuple(ends), tuple(contains)
    full = tuple(r.fullmatch for r in regexes)
    if not starts_t and not ends_t and not contains_t and not full:
        return eq_f.__contains__

    def match(s: str) -> bool:
        if s in eq_f:
            return True
        if starts_t and s.startswith(starts_t):
            return True
        if ends_t and s.endswith(ends_t):
            return True
        for c in contains_t:
            if c in s:
                return True
        for f in full:
            if f(s) is not None:
                return True
        return False

    return match


def text_predicate(values: list[SigmaString], cased: bool) -> Scalar:
    """Wrap a string group so it accepts any scalar event value (numbers by their text form)."""
    group = string_group(values, cased)
    if cased:
        def scalar(v: Any) -> bool:
            if type(v) is str:
                return group(v)
            t = as_text(v)
            return t is not None and group(t)
    else:
        def scalar(v: Any) -> bool:
            if type(v) is str:
                return group(v.lower())
            t = as_text(v)
            return t is not None and group(t.lower())
    return scalar


# --- other value types ------------------------------------------------------------------------------


def number_predicate(number: int | float) -> Scalar:
    def scalar(v: Any) -> bool:
        n = as_number(v)
        return n is not None and n == number
    return scalar


def bool_predicate(flag: bool) -> Scalar:
    text = "true" if flag else "false"

    def scalar(v: Any) -> bool:
        if isinstance(v, bool):
            return v is flag
        return isinstance(v, str) and v.lower() == text
    return scalar


_COMPARE = {
    CompareOperators.LT: lambda a, b: a < b,
    CompareOperators.LTE: lambda a, b: a <= b,
    CompareOperators.GT: lambda a, b: a > b,
    CompareOperators.GTE: lambda a, b: a >= b,
    CompareOperators.NEQ: lambda a, b: a != b,
}


def compare_predicate(value: SigmaCompareExpression) -> Scalar:
    op = _COMPARE[value.op]
    bound = value.number.number

    def scalar(v: Any) -> bool:
        n = as_number(v)
        return n is not None and op(n, bound)
    return scalar


_RE_FLAGS = {
    SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
    SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
    SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
}


def compile_regex(value: SigmaRegularExpression) -> re.Pattern[str]:
    flags = 0
    for flag in value.flags:
        flags |= _RE_FLAGS[flag]
    return re.compile(str(value.regexp), flags)


def regex_predicate(value: SigmaRegularExpression) -> Scalar:
    """Sigma regexes are unanchored (search), case-sensitive unless ``|i``."""
    search = compile_regex(value).search

    def scalar(v: Any) -> bool:
        t = v if type(v) is str else as_text(v)
        return t is not None and search(t) is not None
    return scalar


@lru_cache(maxsize=65536)
def _parse_ip(text: str) -> Any:
    try:
        return ip_address(text.strip())
    except ValueError:
        return None


def cidr_predicate(value: SigmaCIDRExpression) -> Scalar:
    """A value that is not an IP address (or of the other IP version) is simply no match."""
    network = value.network

    def scalar(v: Any) -> bool:
        if not isinstance(v, str):
            return False
        addr = _parse_ip(v)
        return addr is not None and addr.version == network.version and addr in network
    return scalar


_TS_PART = {
    TimestampPart.MINUTE: lambda d: d.minute,
    TimestampPart.HOUR: lambda d: d.hour,
    TimestampPart.DAY: lambda d: d.day,
    TimestampPart.WEEK: lambda d: d.isocalendar()[1],
    TimestampPart.MONTH: lambda d: d.month,
    TimestampPart.YEAR: lambda d: d.year,
}


def timestamp_part_predicate(value: SigmaTimestampPart) -> Scalar:
    from engine.events import parse_timestamp

    part = _TS_PART[value.timestamp_part]
    wanted = value.number

    def scalar(v: Any) -> bool:
        try:
            return part(parse_timestamp(v)) == wanted
        except (ValueError, TypeError, OverflowError, OSError):
            return False
    return scalar


def describe(value: Any) -> str:
    """How a compiled value is shown to an analyst in an explanation."""
    if isinstance(value, SigmaCasedString):
        return f"{value.to_plain()!r} (cased)"
    if isinstance(value, SigmaString):
        return repr(value.to_plain())
    if isinstance(value, SigmaRegularExpression):
        flags = "".join(sorted(SigmaRegularExpression.sigma_to_re_flag[f] for f in value.flags))
        return f"/{value.regexp}/{flags}"
    if isinstance(value, SigmaCompareExpression):
        return f"{value.op.name.lower()} {value.number.number}"
    if isinstance(value, SigmaTimestampPart):
        return f"{value.timestamp_part.name.lower()} == {value.number}"
    if isinstance(value, SigmaNumber):
        return str(value.number)
    if isinstance(value, SigmaBool):
        return str(value.boolean).lower()
    if isinstance(value, SigmaCIDRExpression):
        return f"cidr {value.cidr}"
    return str(value)
