"""Value semantics shared by the correlation engine and its brute-force reference.

These are *definitions* (what "equal group value", "numeric", "percentile" and "condition" mean), kept in one
small module so the O(n log n) engine and the O(n^2) reference in the tests cannot drift apart on them. Every
definition here has its own unit tests; the window logic that uses them is what the property tests compare.

Numbers are kept exact (``int`` or ``Fraction``) while aggregating and rounded once at the end, so a sliding
sum that adds and subtracts values gives bit-for-bit the same result as summing the window afresh.
"""

from __future__ import annotations

import json
import math
import operator
import re
from fractions import Fraction
from typing import Any, Callable, Mapping, Sequence

import orjson

Number = int | float

#: The Sigma correlation condition operators.
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "eq": operator.eq,
    "neq": operator.ne,
}

# Plain decimal notation only: int()/float() would also accept "1_000", "nan", "inf" and " 0x1" lookalikes,
# none of which an analyst means as a number in a log field.
_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def canonical_value(value: Any) -> str | None:
    """The form in which group-by and value_count values are compared: ``str`` of a scalar, JSON of a list.

    ``None`` means "absent": such a match is not correlated. Strings are compared exactly (case matters),
    and ``4688`` equals ``"4688"`` because both print the same, as Sigma's number/string matching does.
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)


def canonical_json(value: Mapping[str, Any]) -> str:
    """Compact JSON with sorted keys: the stable text form of a group (same as the alert model's)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def normalise_number(value: float | int) -> Number | None:
    """Integral floats become ints so equal values have one representation (1.0 and "1" are the same 1).

    Non-finite values are rejected: NaN breaks ordering and infinities break exact sums.
    """
    if isinstance(value, int):
        return value
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() else value


def to_number(value: Any) -> Number | None:
    """A numeric field value for value_sum/avg/median/percentile, or ``None`` if it is not a number.

    Numeric strings (plain decimal or exponent notation, surrounding blanks allowed) are converted;
    booleans are not numbers here even though Python says ``True == 1``.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return normalise_number(value)
    if isinstance(value, str):
        text = value.strip()
        if _INT_RE.fullmatch(text):
            return int(text)
        if _FLOAT_RE.fullmatch(text):
            return normalise_number(float(text))
    return None


def exact_result(value: int | Fraction) -> Number:
    """Round an exact aggregate once: an int when it is integral, else the nearest float."""
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else float(value)
    return value


def percentile_linear(ordered: Sequence[Number], percentile: float) -> Number:
    """Linear-interpolation percentile (numpy's default, "type 7") of a non-empty sorted sequence.

    rank = p/100 * (n-1); the result interpolates between the values at floor(rank) and ceil(rank).
    Chosen over nearest-rank because percentile 50 is then the usual median (mean of the two middle values).
    Computed exactly, rounded once.
    """
    n = len(ordered)
    if n == 0:
        raise ValueError("percentile of an empty window")
    rank = Fraction(percentile) * (n - 1) / 100
    low = math.floor(rank)
    weight = rank - low
    if weight == 0:
        return ordered[low]
    below, above = Fraction(ordered[low]), Fraction(ordered[low + 1])
    return exact_result(below + (above - below) * weight)


def condition_holds(condition: Mapping[str, float], value: float | None) -> bool:
    """True when every operator->threshold entry holds for ``value`` (several entries form a range).

    An empty condition holds; a ``None`` value (no metric) never does.
    """
    if value is None:
        return False
    for name, threshold in condition.items():
        compare = OPERATORS.get(name)
        if compare is None:
            raise ValueError(f"unknown correlation condition operator {name!r}")
        if not compare(value, threshold):
            return False
    return True


def validate_condition(condition: Mapping[str, Any]) -> None:
    """Reject unknown operators and non-numeric thresholds up front, with a message naming the culprit."""
    for name, threshold in condition.items():
        if name not in OPERATORS:
            raise ValueError(f"unknown correlation condition operator {name!r}")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ValueError(f"correlation condition {name!r} needs a number, got {threshold!r}")
        if isinstance(threshold, float) and math.isnan(threshold):
            raise ValueError(f"correlation condition {name!r} is NaN")
