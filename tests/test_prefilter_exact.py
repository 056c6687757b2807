"""The literal prefilter (engine/sigma/prefilter.py) never changes a match: fast path == plain evaluator.

"Plain" is ``CompiledRule.matches`` over every rule, no index, no prefilter. The fast path is what the
engine runs: ``RuleSet.candidates`` then ``matches``. Random rules are built from the constructs the
prefilter reasons about (wildcards, |contains/startswith/endswith/all/cased/re/windash, keywords, numbers,
null/exists, negation and OR/AND conditions) over a small alphabet with case traps (Σ/σ/ς, İ, ß), and
events reuse the rules' own literals so matches are frequent. The slow test runs the whole SigmaHQ
Windows set over ``evtx-samples``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.sigma import load_rules

ROOT = Path(__file__).resolve().parent.parent
ALPHABET = "abAB.\\*?ΣσςİiIßsSſı "
FIELDS = ["a", "b", "c"]
MODIFIERS = ["", "|contains", "|contains", "|startswith", "|endswith", "|contains|all", "|cased",
             "|contains|cased", "|endswith|windash", "|re", "|re", "|re|i", "|base64offset|contains", "|neq",
             "|wide|contains"]
CONDITIONS = ["sel", "sel", "sel and not f", "sel or f", "1 of s*", "1 of s*", "all of them", "kw and sel",
              "(sel or kw) and not f", "kw", "not f", "sel and sel2 or f and kw", "1 of s* and not f"]

pattern = st.text(ALPHABET, min_size=0, max_size=6)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@st.composite
def regex_value(draw: st.DrawFn) -> str:
    """Regexes with literals long enough to anchor a rule (engine/sigma/regex_literals.py), among the
    constructs that end or join a literal run, with scoped and global case flags."""
    lit = st.text(ALPHABET, min_size=1, max_size=5).map(re.escape)
    other = st.sampled_from([".", ".*", r"\s?", "[aA]", "[sſ]", "(?:ab|Σσ)", "b+", "^", "$", "(?i:a)",
                             "(?-i:sa)", "(?:ab){2}", r"\b", "(?=a)", "a{0,2}"])
    pattern = "".join(draw(st.lists(lit | lit | other, min_size=1, max_size=4)))
    if draw(st.booleans()):
        pattern = f"(?:{pattern})|{draw(lit)}"
    return draw(st.sampled_from(["", "(?i)"])) + pattern


@st.composite
def detection_item(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(FIELDS))
    mod = draw(st.sampled_from(MODIFIERS))
    if mod.startswith("|re"):
        if draw(st.booleans()):
            return f"{name}{mod}: {_quote(draw(st.sampled_from(['a', 'b+', '^A', 'σ$', '.'])))}"
        return f"{name}{mod}: {_quote(draw(regex_value()))}"
    kind = draw(st.integers(0, 15))
    if kind == 0 and not mod:
        return f"{name}: {draw(st.integers(-2, 12))}"
    if kind == 1 and not mod:
        return f"{name}: null"
    if kind == 2 and not mod:
        return f"{name}|exists: {draw(st.sampled_from(['true', 'false']))}"
    values = draw(st.lists(pattern, min_size=1, max_size=2))
    return f"{name}{mod}: [{', '.join(_quote(v) for v in values)}]"


@st.composite
def rule_text(draw: st.DrawFn, n: int) -> str:
    def block(label: str) -> str:
        items = draw(st.lists(detection_item(), min_size=1, max_size=2, unique_by=lambda s: s.split(":")[0]))
        return f"  {label}:\n" + "".join(f"    {item}\n" for item in items)

    keywords = draw(st.lists(pattern.filter(bool), min_size=1, max_size=2))
    body = block("sel") + block("sel2") + block("f") + block("s1") + block("s2")
    body += "  kw:\n" + "".join(f"    - {_quote(k)}\n" for k in keywords)
    return (f"title: R{n}\nid: 00000000-0000-4000-8000-{n:012d}\nlogsource: {{product: ehr}}\ndetection:\n"
            f"{body}  condition: {draw(st.sampled_from(CONDITIONS))}\n")


scalar_values = st.one_of(st.none(), st.booleans(), st.integers(-2, 12), st.floats(allow_nan=False, width=16),
                          st.text(ALPHABET, max_size=10))
event_values = st.one_of(scalar_values, st.lists(scalar_values, max_size=3),
                         st.dictionaries(st.sampled_from("ab"), scalar_values, max_size=2))


def _literals_of(docs: list[str]) -> list[str]:
    """Fragments of the rules' own quoted values, so generated events hit them often."""
    out = []
    for text in re.findall(r"'((?:[^']|'')*)'", "\n".join(docs)):
        out.extend(chunk for chunk in re.split(r"[*?\\]+", text) if chunk)
    return out or ["a"]


@st.composite
def events_for(draw: st.DrawFn, fragments: list[str]) -> dict:
    frag_text = st.lists(st.sampled_from(fragments) | st.text(ALPHABET, max_size=2), min_size=1,
                         max_size=3).map("".join)
    # mix case so case folding is exercised
    frag_text = frag_text.map(str.upper) | frag_text | frag_text.map(str.swapcase) | frag_text.map(str.lower)
    value = frag_text | frag_text | frag_text | event_values | st.lists(frag_text, max_size=3)
    fields = draw(st.fixed_dictionaries({name: value for name in FIELDS}, optional={"x": value}))
    return {"event.dataset": draw(st.sampled_from(["ehr.audit"] * 5 + ["vpn.auth"])), **fields}


def assert_same_matches(ruleset, event) -> None:
    plain = {rule.id for rule in ruleset.rules.values() if rule.matches(event)}
    fast = {rule.id for rule in ruleset.candidates(event) if rule.matches(event)}
    assert fast == plain, event


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data(), texts=st.lists(st.integers(), min_size=1, max_size=4))
def test_fast_path_matches_exactly_what_the_plain_evaluator_matches(tmp_path_factory, data, texts):
    directory = tmp_path_factory.mktemp("rules")
    docs = [data.draw(rule_text(n)) for n in range(len(texts))]
    (directory / "rules.yml").write_text("---\n".join(docs))
    ruleset = load_rules([directory])
    fragments = _literals_of(docs)
    for _ in range(12):
        assert_same_matches(ruleset, data.draw(events_for(fragments)))


# --- the prefilter really narrows, and where it must not ----------------------------------------------

def _ruleset(tmp_path, *bodies: str):
    docs = [f"title: R{n}\nid: 00000000-0000-4000-8000-{n:012d}\nlogsource: {{product: ehr}}\n"
            f"detection:\n{body}" for n, body in enumerate(bodies)]
    (tmp_path / "r.yml").write_text("---\n".join(docs))
    return load_rules([tmp_path])


def test_an_event_without_the_literal_meets_no_rule(tmp_path):
    rs = _ruleset(tmp_path, "  sel: {a|endswith: '\\\\cmd.exe'}\n  condition: sel\n",
                  "  sel: {b|contains|all: [foo, bar]}\n  condition: sel\n")
    assert len(rs.prefilter.anchored) == 2
    assert rs.candidates({"event.dataset": "ehr.audit", "a": "C:\\Windows\\powershell.exe", "b": "foo"}) == []
    hit = {"event.dataset": "ehr.audit", "a": "C:\\WINDOWS\\CMD.EXE", "b": ["x", "BAR FOO"]}
    assert sorted(r.title for r in rs.candidates(hit)) == ["R0", "R1"]
    assert all(r.matches(hit) for r in rs.candidates(hit))


def test_rules_without_a_necessary_literal_stay_on_the_index_path(tmp_path):
    rs = _ruleset(tmp_path, "  sel: {a: 5}\n  condition: sel\n",
                  "  sel: {a|contains: x}\n  f: {b: y}\n  condition: sel or not f\n",
                  "  sel: {a|re: 'x+'}\n  condition: sel\n",
                  "  sel: {a|cased: X}\n  condition: sel\n")
    assert rs.prefilter.anchored == set()
    event = {"event.dataset": "ehr.audit", "a": "5"}
    assert {r.title for r in rs.candidates(event)} == {r.title for r in rs.index_candidates(event)}


def test_numbers_and_booleans_are_scanned_by_their_text(tmp_path):
    rs = _ruleset(tmp_path, "  sel: {a|contains: '12'}\n  condition: sel\n",
                  "  sel: {a|startswith: tr}\n  condition: sel\n")
    for value, titles in ((4123, ["R0"]), (True, ["R1"]), ([None, 7, 120.5], ["R0"]), ({"k": "12"}, [])):
        event = {"event.dataset": "ehr.audit", "a": value}
        assert [r.title for r in rs.candidates(event) if r.matches(event)] == titles


def test_keywords_are_found_in_any_string_value(tmp_path):
    rs = _ruleset(tmp_path, "  kw: [mimikatz]\n  condition: kw\n")
    assert rs.prefilter.anchored
    assert rs.candidates({"event.dataset": "ehr.audit", "a": 1, "b": "nothing"}) == []
    event = {"event.dataset": "ehr.audit", "a": 1, "b": ["x", "run MimiKatz now"]}
    assert [r.title for r in rs.candidates(event) if r.matches(event)] == ["R0"]


@pytest.mark.parametrize("memo_max", [1, 2, 8192])
def test_remembered_field_scans_answer_per_field_and_value(tmp_path, monkeypatch, memo_max):
    """The per-field memo of scans (``Prefilter.seen``): one value seen in two fields meets each field's
    own literals, a value's case variants meet them alike, and a memo that fills and clears changes
    nothing."""
    import engine.sigma.prefilter as prefilter

    monkeypatch.setattr(prefilter, "_MEMO_MAX", memo_max)
    rs = _ruleset(tmp_path, "  sel: {a|contains: cmd}\n  condition: sel\n",
                  "  sel: {b|contains: exe}\n  condition: sel\n")
    stream = [({"a": "cmd.exe"}, ["R0"]), ({"b": "cmd.exe"}, ["R1"]), ({"a": "CMD.EXE", "b": "CMD.EXE"}, ["R0", "R1"]),
              ({"a": "exe", "b": "cmd"}, []), ({"a": "cmd.exe"}, ["R0"]), ({"b": "x"}, []), ({"b": "cmd.exe"}, ["R1"])]
    for _ in range(2):
        for fields, titles in stream:
            event = {"event.dataset": "ehr.audit", **fields}
            assert sorted(r.title for r in rs.candidates(event) if r.matches(event)) == titles, event


def test_context_dependent_lower_case_is_exact(tmp_path):
    """``"ΑΣ".lower()`` ends in final sigma ``ς``: a rule on ``σ`` must not match it, one on ``ς`` must."""
    rs = _ruleset(tmp_path, "  sel: {a|endswith: 'σ'}\n  condition: sel\n",
                  "  sel: {a|endswith: 'ς'}\n  condition: sel\n")
    kw = _ruleset(tmp_path / "kw" if (tmp_path / "kw").mkdir() is None else tmp_path,
                  "  kw: ['σ']\n  condition: kw\n", "  kw: ['ς']\n  condition: kw\n")
    for text in ("ΑΣ", "Σ", "ΑΣ Β", "aσ"):
        assert_same_matches(rs, {"event.dataset": "ehr.audit", "a": text})
        assert_same_matches(kw, {"event.dataset": "ehr.audit", "a": text, "b": ["Σ", "ΑΣ"]})
        assert_same_matches(kw, {"event.dataset": "ehr.audit", "a": text, "b": "Β"})


def test_regex_and_cased_rules_are_anchored_on_their_literals(tmp_path):
    rs = _ruleset(tmp_path, "  sel: {a|re: '\\\\Temp\\\\[a-z]{8}\\.exe$'}\n  condition: sel\n",
                  "  sel: {a|re|i: '(?:procdump|whoami)\\.exe'}\n  condition: sel\n",
                  "  sel: {a|contains|cased: 'Invoke-Mimikatz'}\n  condition: sel\n")
    assert len(rs.prefilter.anchored) == 3
    assert rs.candidates({"event.dataset": "ehr.audit", "a": "C:\\Windows\\cmd.exe"}) == []
    for value, titles in (("C:\\Temp\\abcdefgh.exe", ["R0"]), ("C:\\TEMP\\abcdefgh.exe", []),
                          ("C:\\x\\WHOAMI.EXE", ["R1"]), ("Invoke-Mimikatz -x", ["R2"]), ("invoke-mimikatz", [])):
        event = {"event.dataset": "ehr.audit", "a": value}
        assert [r.title for r in rs.candidates(event) if r.matches(event)] == titles, value
        assert_same_matches(rs, event)


def test_a_lone_regex_requires_all_its_literals(tmp_path):
    """``powershell`` *and* one of ``input``/``noexit`` (Invoke-Obfuscation STDIN+): an event with only the
    first is not offered, one with both is and matches."""
    rs = _ruleset(tmp_path, "  sel: {a|re: 'cmd.{0,5}(?:/c|/r).+powershell.+(?:input|noexit).+x'}\n"
                            "  condition: sel\n")
    assert rs.prefilter.anchored
    assert rs.candidates({"event.dataset": "ehr.audit", "a": "cmd /c powershell -nop x"}) == []
    event = {"event.dataset": "ehr.audit", "a": "cmd /c powershell -noexit x"}
    assert [r.title for r in rs.candidates(event) if r.matches(event)] == ["R0"]


def test_case_folding_traps_of_re_i_still_match(tmp_path):
    """``re.I`` matches ``ſ`` for ``s`` and ``İ``/``ı`` for ``i``, whose ``lower()`` differ: the literal of
    ``isolated`` must not be ``isolated``, and these events must still match. The Kelvin sign ``K``, which
    ``re.I`` matches for ``k``, lowers to ``k``: ``kelvin`` stays whole."""
    rs = _ruleset(tmp_path, "  sel: {a|re|i: 'isolated'}\n  condition: sel\n",
                  "  sel: {a|re|i: 'kelvin'}\n  condition: sel\n")
    assert len(rs.prefilter.anchored) == 2
    hits = 0
    for value in ("İſOLATED", "ıſolated", "ISOLATED", "isolated", "\u212aELVIN", "Kelvin", "olated", "elvin"):
        event = {"event.dataset": "ehr.audit", "a": value}
        assert_same_matches(rs, event)
        hits += any(r.matches(event) for r in rs.rules.values())
    assert hits == 6


# --- the whole SigmaHQ Windows set over evtx-samples ----------------------------------------------------

@pytest.mark.slow
def test_sigmahq_windows_rules_over_evtx_samples_match_identically():
    sys.path.insert(0, str(ROOT))
    from bench import sigmahq_data

    if not sigmahq_data.available():
        pytest.skip("SigmaHQ rules or evtx-samples not in ../shared/datasets")
    ruleset = sigmahq_data.load_sigmahq_rules()
    rules = list(ruleset.rules.values())
    assert len(rules) > 2000
    fast: set[tuple[str, str]] = set()
    plain: set[tuple[str, str]] = set()
    events = 0
    for event in sigmahq_data.iter_events():
        events += 1
        eid = event["event.id"]
        fast.update((eid, r.id) for r in ruleset.candidates(event) if r.matches(event))
        plain.update((eid, r.id) for r in rules if r.matches(event))
    assert events > 20000
    assert len(plain) > 1000  # the samples really fire many rules
    assert fast == plain


def test_a_scoped_scan_offers_only_its_rules_and_misses_none(tmp_path):
    rs = _ruleset(tmp_path, "  sel: {a|contains: cmd}\n  condition: sel\n",
                  "  kw: [cmd]\n  condition: kw\n", "  sel: {a: x}\n  condition: sel\n")
    event = {"event.dataset": "ehr.audit", "a": "run CMD"}
    ids = sorted(rs.rules)
    scoped = rs.matcher(frozenset(ids[1:]))
    assert {r.id for r in scoped(event)} == {ids[1]}
    assert {r.id for r in rs.candidates(event) if r.matches(event)} == set(ids[:2])
    assert {r.id for r in rs.matcher(frozenset(ids))(event)} == set(ids[:2])
