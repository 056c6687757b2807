"""Property tests: wildcard matching agrees with a reference matcher; matching never raises."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sigma.types import SigmaString

from engine.sigma import load_rules
from engine.sigma.values import string_group

ALPHABET = "ab*?\\"


def reference_match(pattern: str, text: str) -> bool:
    """Sigma wildcard semantics written independently: \\ escapes * ? and \\, else is literal."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "*?\\":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    return re.fullmatch("".join(out), text, re.DOTALL | re.IGNORECASE) is not None


@settings(max_examples=500)
@given(st.text(ALPHABET, max_size=8), st.text("abAB*?\\\n", max_size=10))
def test_wildcard_matching_agrees_with_reference(pattern, text):
    match = string_group([SigmaString(pattern)], cased=False)
    assert match(text.lower()) == reference_match(pattern, text)


RULES = """
title: T{n}
id: eeeeeeee-0000-4000-8000-00000000000{n}
logsource: {{product: ehr}}
detection:
{body}
"""
BODIES = [
    "  sel: {a|contains: x, b|re: 'y+', c|cidr: 10.0.0.0/8}\n  condition: sel",
    "  sel: {a|gt: 3, b: null, c|exists: true}\n  f: {d|fieldref: a}\n  condition: sel or not f",
    "  kw: [foo, 'b*r']\n  sel: {a|base64offset|contains: hi, b|windash: -x}\n  condition: kw or sel",
    "  sel: {a: 5, b: true, c|endswith: [q, r], d|startswith|cased: Z}\n  condition: all of them",
]

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6),
                    st.binary(max_size=3))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=2), scalars,
                                                                           max_size=2))


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d", "event.dataset", "x"]), values))
def test_evaluator_never_raises_on_arbitrary_events(tmp_path, event):
    if not hasattr(test_evaluator_never_raises_on_arbitrary_events, "rules"):
        for n, body in enumerate(BODIES):
            (tmp_path / f"r{n}.yml").write_text(RULES.format(n=n, body=body))
        rs = load_rules([tmp_path])
        assert not rs.errors, [str(e) for e in rs.errors]
        test_evaluator_never_raises_on_arbitrary_events.rules = rs  # type: ignore[attr-defined]
    rs = test_evaluator_never_raises_on_arbitrary_events.rules  # type: ignore[attr-defined]
    for dataset in (event.get("event.dataset"), "ehr.audit"):
        e = {**event, "event.dataset": dataset}
        for r in rs.rules.values():
            assert isinstance(r.matches(e), bool)
            assert r.explain(e).matched == r.matches(e)
        rs.candidates(e)
