"""Necessary literals of a regex (engine/sigma/regex_literals.py): if ``re.search(p, s)`` then one of the
returned literals is in ``s.lower()``.

The hypothesis test builds random patterns from the constructs the walker reasons about (literals with
case traps, classes, groups, scoped and global flags, alternation, every kind of repeat, anchors,
lookarounds, backreferences), draws strings that match them (``st.from_regex`` of the pattern without its
lookarounds, then some chars swapped for their case-folding traps: ``ſ``, ``İ``, ``ı``, Kelvin ``K``,
``Σ``), and checks the claim for every string the real ``re`` matches.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.sigma.regex_literals import ICASE_UNSAFE, required_literal_sets, required_literals

CHARS = "abcsikSIKΣσςİıſK$`-. \\"
#: a char and what it may be swapped for in a drawn string: the case-folding traps of ``lower()``/``re.I``
TRAPS = {"s": "Sſ", "S": "sſ", "i": "Iİı", "I": "iİı", "k": "KK", "K": "kK", "σ": "Σς", "ς": "Σσ", "Σ": "σς"}


def _literal(draw: st.DrawFn) -> tuple[str, str]:
    text = re.escape(draw(st.text(CHARS, min_size=1, max_size=4)))
    return text, text


@st.composite
def regex(draw: st.DrawFn, depth: int = 0) -> tuple[str, str]:
    """``(pattern, generator pattern)``: the generator is the pattern with lookarounds dropped, for
    ``st.from_regex`` (which cannot satisfy most of them); the test checks ``re.search`` itself."""
    terms = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 12 if depth < 2 else 5))
        if kind <= 2:
            atom = _literal(draw)
        elif kind == 3:
            members = "".join(dict.fromkeys(draw(st.text(CHARS.replace("\\", ""), min_size=1, max_size=3))))
            neg = draw(st.sampled_from(["", "", "^"]))
            atom = (f"[{neg}{re.escape(members)}]",) * 2  # type: ignore[assignment]
        elif kind == 4:
            atom = (draw(st.sampled_from([".", r"\d", r"\w", r"\s", r"\S"])),) * 2  # type: ignore[assignment]
        elif kind == 5:
            anchor = draw(st.sampled_from(["^", "$", r"\b", r"\B", r"\A", r"\Z"]))
            atom = (anchor, anchor)
        else:
            inner, gen = draw(regex(depth + 1))
            alt = draw(regex(depth + 1)) if draw(st.booleans()) else None
            if alt is not None:
                inner, gen = f"{inner}|{alt[0]}", f"{gen}|{alt[1]}"
            opener = draw(st.sampled_from(["(", "(?:", "(?i:", "(?-i:", "(?u:", "(?a:", "(?>", "(?=", "(?!",
                                            "(?<=x)("]))
            if opener in ("(?=", "(?!"):
                atom = (f"{opener}{inner})", "")
            elif opener == "(?<=x)(":
                atom = (f"(?<=x)({inner})", f"x({gen})")
            else:
                atom = (f"{opener}{inner})", f"{opener}{gen})")
        # unbounded repeats only on single items: nested ones could backtrack for minutes
        quants = ["", "", "", "?", "{2}", "{0}", "{1,3}", "{0,2}"] + (
            ["*", "+", "{2,}", "*?", "+?", "++"] if kind <= 4 else [])
        quant = draw(st.sampled_from(quants))
        if quant and atom[0] not in ("^", "$", r"\b", r"\B", r"\A", r"\Z") and atom[1]:
            atom = (atom[0] + quant, atom[1] + quant)
        terms.append(atom)
    pattern = "".join(t[0] for t in terms)
    gen = "".join(t[1] for t in terms)
    if depth == 0 and draw(st.booleans()):  # a backreference to the first group, if there is one
        pattern, gen = pattern + r"(?:\1)?", gen
    return pattern, gen


def _swap_traps(draw: st.DrawFn, text: str) -> str:
    return "".join(draw(st.sampled_from(TRAPS[c] + c)) if c in TRAPS and draw(st.booleans()) else c
                   for c in text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.filter_too_much])
@given(data=st.data(), spec=regex(), flags=st.sampled_from([0, 0, re.I, re.I | re.A, re.X, re.I | re.S]),
       global_i=st.booleans())
def test_every_match_contains_a_required_literal(data, spec, flags, global_i):
    pattern, gen = spec
    if global_i:
        pattern, gen = "(?i)" + pattern, "(?i)" + gen
    try:
        compiled = re.compile(pattern, flags)
        gen_re = re.compile(gen, flags & ~re.X)
    except re.error:
        assume(False)
        return
    literals = required_literals(pattern, flags)
    for _ in range(4):
        text = data.draw(st.from_regex(gen_re).map(lambda s: s[:40]) | st.text(CHARS, max_size=8))
        text = _swap_traps(data.draw, text)
        if compiled.search(text) and literals is not None:
            assert any(lit in text.lower() for lit in literals), (pattern, flags, text, literals)


# --- what it finds, and where it must find nothing --------------------------------------------------

@pytest.mark.parametrize("pattern, flags, expected", [
    (r"\\Windows\\Temp\\[a-z0-9]{10}\.exe", 0, {"\\windows\\temp\\"}),
    (r"(?i)\.exe\s+werfaultsecure\.exe", 0, {"ecure.exe"}),  # 's' ends the run under (?i): ſ
    (r"\.exe\s+werfaultsecure\.exe", re.I | re.A, {"ecure.exe"}),  # re.A too: (?u:s) would match ſ
    (r"\.EXE\s+WerFaultSecure", 0, {"werfaultsecure"}),  # case-sensitive: lower() of the exact chars
    (r"[Kk]er[Nn]el32", 0, {"kernel32"}),  # a class whose members lower alike is one char
    (r"ab{0}cde", 0, {"acde"}),  # {0} consumes nothing
    (r"(?:xyz){2}", 0, {"xyzxyz"}),
    (r'"(?:\{\d\})+"\s*-f', 0, {'"{'}),  # a repeat's first copy runs into what precedes it
    (r"abc(?=d)def", 0, {"abcdef"}),  # lookarounds consume nothing
    (r"^cmd(?:\.exe)?\s+/c", 0, {"cmd"}),  # optional group ends the run
    (r"(?:powershell|pwsh)\.exe", 0, {"powershell.exe", "pwsh.exe"}),
    (r"net\s+(?:view|user)", 0, {"view", "user"}),
    (r"`.*`", 0, {"`"}),  # short, but a rare char
])
def test_literals_found(pattern, flags, expected):
    assert required_literals(pattern, flags) == frozenset(expected)


@pytest.mark.parametrize("pattern, flags, expected", [
    (r"^[A-Za-z0-9]{16}$", 0, None),
    (r"(?:abc)?def", re.I, {"def"}),  # the optional group gives nothing
    (r"(?:cmd|\d+)\.x", 0, None),  # one branch without a literal: no any-of set
    (r"(?i)set", 0, None),  # ſet matches: 'set' is not in its lower()
    (r"(?i)aiz", 0, None),  # İ lowers to two chars, ı to itself
    (r"xyΣzw", 0, None),  # lower() of Σ depends on the next char: 'xy' and 'zw' are too short
    (r"(?i)xyzé", 0, {"xyz"}),  # non-ASCII under re.I ends the run
    (r"ab", 0, None),  # too short
    (r"(abc)\1", 0, {"abc"}),  # the backreference ends the run
])
def test_nothing_or_only_safe_runs(pattern, flags, expected):
    assert required_literals(pattern, flags) == (None if expected is None else frozenset(expected))


def test_the_case_traps_really_match():
    """The reasons behind ICASE_UNSAFE and the Σ rule, as a reader would check them."""
    assert re.search("(?u:sss)", "ſſſ", re.I | re.A) and required_literals("(?u:sss)", re.I | re.A) is None
    assert re.search("(?i)set", "ſet") and "set" not in "ſet".lower()
    assert re.search("(?i)aiz", "aİz") and "aiz" not in "aİz".lower()
    assert re.search("(?i)aiz", "aız") and "aiz" not in "aız".lower()
    assert re.search("xΣ", "xΣ") and "xσ" not in "xΣ".lower()  # final sigma: 'xς'
    assert re.search("(?i)ker", "Ker") and "ker" in "Ker".lower()  # Kelvin sign: safe


def test_icase_unsafe_is_every_ascii_char_some_other_char_folds_to():
    """Recomputed over every code point: an ASCII ``c`` is unsafe under ``re.I`` when a char it matches
    lowers to something other than ``c.lower()``."""
    everything = "".join(map(chr, range(0x110000)))
    unsafe = {chr(c) for c in range(128)
              if any(x.lower() != chr(c).lower() for x in re.findall(re.escape(chr(c)), everything, re.I))}
    assert unsafe == set(ICASE_UNSAFE)


def test_several_and_linked_sets_best_first():
    pattern = r'cmd.{0,5}(?:/c|/r).+powershell.+(?:\$?\{?input\}?|noexit).+"'
    assert required_literal_sets(pattern) == [frozenset({"powershell"}), frozenset({"input", "noexit"}),
                                              frozenset({"cmd"})]
    assert required_literal_sets(pattern, limit=1) == [frozenset({"powershell"})]
    assert required_literal_sets(r"^[a-z]{8}$") == []
