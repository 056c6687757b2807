"""The counting shortcut of correlation grouping (``_groups_by_count``) equals the general grouping loop.

The shortcut serves event_count/value_count with a lower-bound condition and one group-by field: it counts
the group keys in C and lists only the matches of groups that can meet the bound. It must give the same
groups, the same entries in the same order as the general loop, and step aside where a value's canonical
form could join a string's group (``4688`` and ``"4688"`` are one group).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import engine.correlation.engine as engine
from engine.correlation import Match, evaluate_correlation
from engine.correlation.spec import CorrelationSpec
from tests.correlation_reference import reference_triggers
from tests.test_correlation_properties import SETTINGS, THRESHOLDS, comparable, specs, streams


def _entries(grouped: dict[Any, list[Any]]) -> dict[Any, list[tuple[Any, ...]]]:
    return {key: [(e.ts, e.event_id, sorted(e.rules), e.value) for e in entries] for key, entries in grouped.items()}


def _general(spec: CorrelationSpec, matches: list[Match], monkeypatch: pytest.MonkeyPatch) -> dict[Any, Any]:
    with monkeypatch.context() as m:
        m.setattr(engine, "_groups_by_count", lambda *args: None)
        return _entries(engine._group_entries(spec, matches))


@st.composite
def counted_specs(draw: st.DrawFn) -> CorrelationSpec:
    """The random specs of the property suite, made what the shortcut serves: a count type, one group-by
    field (an alias in some: then rules may read different fields), a ``gt``/``gte`` condition."""
    base = draw(specs())
    kind = draw(st.sampled_from(["event_count", "value_count"]))
    ops = draw(st.lists(st.sampled_from(["gt", "gte"]), min_size=1, max_size=2, unique=True))
    condition = {op: draw(st.sampled_from(THRESHOLDS)) for op in ops}
    aliases = dict(base.aliases)
    group_by = draw(st.sampled_from([("user",), ("who",), ("host",)]))
    if group_by == ("who",) and "who" not in aliases and draw(st.booleans()):
        aliases["who"] = {r: draw(st.sampled_from(["user", "account"])) for r in base.rules}
    return replace(base, type=kind, group_by=group_by, condition=condition, aliases=aliases,
                   condition_field=base.condition_field or "val", extended_condition=None)


@SETTINGS
@given(spec=counted_specs(), matches=streams())
def test_the_shortcut_groups_as_the_general_loop(spec: CorrelationSpec, matches: list[Match]) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        expected = _general(spec, matches, monkeypatch)
    layouts = {rule: engine._field_layout(spec, rule) for rule in spec.rules}
    taken = engine._groups_by_count(list(matches), layouts, spec.condition) is not None
    event(f"shortcut {'taken' if taken else 'declined'}, {'groups' if expected else 'none'}")
    assert _entries(engine._group_entries(spec, matches)) == expected


def _read(n: int, user: Any, rule: str = "read") -> Match:
    return Match(rule, 1_000 + n, f"e{n}", {"user.name": user})


@pytest.mark.parametrize("users", [["1", 1, "1"], [1, 1, "1"], ["1", "1", "1"], ["1", None, "1", ["x"], "1"]])
def test_a_number_and_its_string_are_one_group_whatever_the_path(users: list[Any]) -> None:
    """Three reads by "1" (one of them logged as the number 1) reach ``gte: 3``: one trigger."""
    spec = CorrelationSpec("c", "event_count", ("read",), ("user.name",), 60_000, condition={"gte": 3})
    matches = [_read(n, user) for n, user in enumerate(users)] + [_read(9, "1", rule="other")]
    triggers = evaluate_correlation(spec, matches)
    assert [(t.group, t.event_total) for t in triggers] == [({"user.name": "1"}, 3)]
    assert comparable(triggers) == comparable(reference_triggers(spec, matches))


def test_only_groups_meeting_the_bound_are_listed_in_input_order() -> None:
    spec = CorrelationSpec("c", "event_count", ("read",), ("user.name",), 60_000, condition={"gt": 2})
    matches = [_read(n, user) for n, user in enumerate(["a", "b", "a", "c", "a", "b", "a"])]
    layouts = {"read": engine._field_layout(spec, "read")}
    grouped = engine._groups_by_count(matches, layouts, spec.condition)
    assert grouped == {"a": [matches[0], matches[2], matches[4], matches[6]]}
