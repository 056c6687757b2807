"""The rule loader never crashes: any file content becomes rules or errors naming the file."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.sigma import load_rules

KEYS = ["title", "id", "name", "logsource", "detection", "condition", "level", "status", "correlation",
        "rules", "type", "timespan", "group-by", "product", "selection", "tags", "filter", "field"]
scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=10) | st.just(
    "5d6f7a8b-1c2d-4e3f-9a0b-1c2d3e4f5a6b")
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                         | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5),
                         max_leaves=15)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=documents)
def test_random_rule_documents_load_or_report(tmp_path, document):
    path = tmp_path / "fuzz.yml"
    path.write_text(yaml.safe_dump(document))
    ruleset = load_rules([str(tmp_path)])
    for error in ruleset.errors:
        assert str(path) in str(error)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_random_text_loads_or_reports(tmp_path, text):
    path = tmp_path / "fuzz.yml"
    path.write_text(text)
    ruleset = load_rules([str(tmp_path)])
    assert all(str(path) in str(error) for error in ruleset.errors)
