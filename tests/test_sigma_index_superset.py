"""The rule index may only narrow: every rule that matches an event is among ``candidates(event)``.

Events are built from the values the shipped rules test (in every case and type variant Sigma treats as
equal: ``"4769"`` and ``4769``, ``true`` and ``"TRUE"``), so matches are frequent and the index is really
exercised, not just random noise that matches nothing.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import DEFAULTS
from engine.sigma import load_rules

ROOT = Path(__file__).resolve().parent.parent
RULESET = load_rules([str(ROOT / "rules")], placeholders=DEFAULTS["rules"]["placeholders"])  # |expand rules too
FIELDS = sorted({f for rule in RULESET.rules.values() for f in rule.fields})
VALUES = st.sampled_from([True, False, "true", "TRUE", "false", "read", "READ", "vread", "export", "print",
                          "search-type", "failure", "Success", "vpn-login", 4769, "4769", "0x17", "0X17", "0x0",
                          "svc$", "krbtgt", "P1", None, "", "x"])


@settings(max_examples=400, deadline=None)
@given(dataset=st.sampled_from(["ehr.audit", "vpn.auth", "windows.security"]),
       fields=st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=8))
def test_candidates_contain_every_matching_rule(dataset, fields):
    event = {"event.dataset": dataset, **fields}
    candidates = {rule.id for rule in RULESET.candidates(event)}
    matching = {rule.id for rule in RULESET.rules.values() if rule.matches(event)}
    assert matching <= candidates


def test_boolean_flags_are_indexed():
    quiet = {"event.dataset": "ehr.audit", "event.action": "search-type", "user.name": "u"}
    flagged = {**quiet, "ehr.break_the_glass": True}
    titles = {rule.title for rule in RULESET.candidates(flagged)} - {r.title for r in RULESET.candidates(quiet)}
    assert "EHR break-the-glass access" in titles


def _index_key_reference(value):
    from engine.sigma import values as V

    if isinstance(value, bool):
        return "true" if value else "false"
    number = V.as_number(value)
    if number is not None:
        if isinstance(number, float):
            return str(int(number)) if number.is_integer() else repr(number)
        return str(number)
    return value.lower() if isinstance(value, str) else None


@settings(max_examples=3000, deadline=None)
@given(value=st.text(max_size=8) | st.integers() | st.floats(allow_nan=False) | st.booleans())
def test_index_key_fast_path_equals_the_full_normal_form(value):
    from engine.sigma.values import index_key

    assert index_key(value) == _index_key_reference(value)
