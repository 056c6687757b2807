"""Loading: validation errors point at file/key/line, correlations load into specs, index, explain."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.sigma import RuleLoadError, load_rules, rule_source

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "aaaaaaaa-0000-4000-8000-000000000002"
C1 = "cccccccc-0000-4000-8000-000000000001"
C2 = "cccccccc-0000-4000-8000-000000000002"


def write(tmp_path: Path, text: str, name: str = "r.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def rule(rid: str = A, title: str = "T", extra: str = "", logsource: str = "{product: ehr}",
         name: str | None = None, field: str = "ehr.action") -> str:
    name_line = f"name: {name}\n" if name else ""
    return (f"title: {title}\nid: {rid}\n{name_line}{extra}logsource: {logsource}\n"
            f"detection:\n  sel: {{{field}: read}}\n  condition: sel\n")


def test_error_str_format():
    assert str(RuleLoadError("r.yml", "id", "bad")) == "r.yml: id: bad"
    assert str(RuleLoadError("r.yml", None, "bad")) == "r.yml: bad"
    assert str(RuleLoadError("r.yml", "id", "bad", line=3)) == "r.yml:3: id: bad"


@pytest.mark.parametrize("text,key,line", [
    ("id: " + A + "\nlogsource: {product: ehr}\ndetection: {sel: {a: 1}, condition: sel}\n", "title", 1),
    ("title: T\nid: not-a-uuid\nlogsource: {product: ehr}\ndetection: {sel: {a: 1}, condition: sel}\n",
     "id", 2),
    ("title: T\nlogsource: {product: ehr}\ndetection: {sel: {a: 1}, condition: sel}\n", "id", 1),
    ("title: T\nid: " + A + "\nlevel: severe\nlogsource: {product: ehr}\n"
     "detection: {sel: {a: 1}, condition: sel}\n", "level", 3),
    ("title: T\nid: " + A + "\nstatus: wip\nlogsource: {product: ehr}\n"
     "detection: {sel: {a: 1}, condition: sel}\n", "status", 3),
    ("title: T\nid: " + A + "\nlogsource: {product: mainframe}\n"
     "detection: {sel: {a: 1}, condition: sel}\n", "logsource", 3),
    ("title: T\nid: " + A + "\nlogsource: {product: ehr}\ndetection:\n  sel:\n    a|frobnicate: 1\n"
     "  condition: sel\n", "detection.sel.a|frobnicate", 6),
])
def test_validation_errors_name_key_and_line(tmp_path, text, key, line):
    path = write(tmp_path, text)
    rs = load_rules([path])
    assert not rs.rules
    assert [e.key for e in rs.errors] == [key]
    err = rs.errors[0]
    assert err.path == str(path) and err.line == line
    assert str(err).startswith(f"{path}:{line}: {key}: ")


def test_bad_rule_does_not_stop_others_and_invalid_yaml_is_an_error(tmp_path):
    write(tmp_path, rule(A), "good.yml")
    write(tmp_path, "title: [unclosed\n", "broken.yaml")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", rule(B), "nested.yml")
    write(tmp_path, "not yaml rules", "notes.txt")
    rs = load_rules([tmp_path])
    assert set(rs.rules) == {A, B}
    (err,) = rs.errors
    assert err.path.endswith("broken.yaml") and "invalid YAML" in err.message


def test_duplicate_id_is_an_error(tmp_path):
    write(tmp_path, rule(A, "first"), "a.yml")
    write(tmp_path, rule(A, "second"), "b.yml")
    rs = load_rules([tmp_path])
    assert rs.rules[A].title == "first"
    (err,) = rs.errors
    assert err.key == "id" and "duplicate" in err.message and err.path.endswith("b.yml")


def test_metadata_and_fields(tmp_path):
    write(tmp_path, rule(A, extra="level: critical\nstatus: stable\ndescription: why\n"
                                  "tags: [attack.t1078]\n", name="chart_read"))
    r = load_rules([tmp_path]).rules[A]
    assert (r.title, r.level, r.status, r.description, r.tags, r.name) == (
        "T", "critical", "stable", "why", ["attack.t1078"], "chart_read")
    assert r.datasets == ("ehr.audit",)
    assert "ehr.action" in r.fields
    assert str(r.sigma.id) == A
    assert "ehr.action: read" in rule_source(r)


def test_rule_source_is_the_single_document(tmp_path):
    write(tmp_path, rule(A, "first") + "---\n" + rule(B, "second"))
    rs = load_rules([tmp_path])
    assert "second" not in rule_source(rs.rules[A]) and "first" in rule_source(rs.rules[A])
    assert "second" in rule_source(rs.rules[B])


# --- correlations ------------------------------------------------------------------------------------

def corr(cid: str, body: str, name: str | None = None, extra: str = "") -> str:
    name_line = f"name: {name}\n" if name else ""
    return f"title: C {cid}\nid: {cid}\n{name_line}{extra}correlation:\n{textwrap.indent(textwrap.dedent(body), '  ')}"


def test_event_count_with_range_group_by_and_timespan(tmp_path):
    write(tmp_path, rule(A, name="failed_login", logsource="{product: vpn}") + "---\n" + corr(C1, """\
        type: event_count
        rules: failed_login
        group-by: [user.name, source.ip]
        timespan: 5m
        condition: {gt: 5, lte: 10}
        """, extra="level: high\n"))
    rs = load_rules([tmp_path])
    assert not rs.errors, [str(e) for e in rs.errors]
    c = rs.correlations[C1]
    assert c.spec.type == "event_count" and c.spec.rules == (A,)
    assert c.spec.group_by == ("user.name", "source.ip")
    assert c.spec.timespan_ms == 300_000
    assert dict(c.spec.condition) == {"gt": 5, "lte": 10}
    assert c.level == "high" and c.fields == frozenset({"user.name", "source.ip"})
    assert rs.datasets_for(C1) == ("vpn.auth",)
    assert rs.alerting_rules() == []  # referenced without generate: its matches are not alerts


def test_value_count_aliases_chaining_generate_and_order(tmp_path):
    write(tmp_path, rule(A, name="vpn_login", logsource="{product: vpn}", field="event.action")
          + "---\n" + rule(B, name="chart_open", field="ehr.action") + "---\n"
          + corr(C2, """\
            type: temporal_ordered
            rules: [many_patients, vpn_login]
            group-by: [who]
            timespan: 1h
            generate: true
            aliases:
              who: {many_patients: user.name, vpn_login: user.id}
            """) + "\n---\n"
          + corr(C1, """\
            type: value_count
            rules: [chart_open]
            group-by: user.name
            timespan: 30s
            condition: {field: ehr.patient.id, gte: 20}
            """, name="many_patients"))
    rs = load_rules([tmp_path])
    assert not rs.errors, [str(e) for e in rs.errors]
    inner, outer = rs.correlations[C1], rs.correlations[C2]
    assert inner.spec.condition_field == "ehr.patient.id" and inner.spec.condition == {"gte": 20}
    assert inner.spec.timespan_ms == 30_000
    assert outer.spec.rules == (C1, A)
    assert outer.spec.aliases == {"who": {C1: "user.name", A: "user.id"}}
    assert outer.spec.generate is True
    assert {"who", "user.name", "user.id"} <= outer.fields
    assert [c.id for c in rs.correlation_order()] == [C1, C2]
    assert set(rs.datasets_for(C2)) == {"ehr.audit", "vpn.auth"}
    assert [r.id for r in rs.alerting_rules()] == [A]  # B only feeds a non-generating correlation


def test_temporal_extended_condition_rewritten_to_ids(tmp_path):
    write(tmp_path, rule(A, name="a") + "---\n" + rule(B, name="b") + "---\n" + corr(C1, """\
        type: temporal
        rules: [a, b]
        timespan: 10m
        condition: a and not b
        """))
    rs = load_rules([tmp_path])
    assert not rs.errors, [str(e) for e in rs.errors]
    assert rs.correlations[C1].spec.extended_condition == f"{A} and not {B}"


def test_correlation_referencing_unknown_rule_is_an_error(tmp_path):
    write(tmp_path, corr(C1, """\
        type: event_count
        rules: [no_such_rule]
        timespan: 5m
        condition: {gte: 3}
        """))
    rs = load_rules([tmp_path])
    assert not rs.correlations
    (err,) = rs.errors
    assert err.key == "correlation.rules" and "no_such_rule" in err.message and err.line == 5


def test_correlation_value_type_needs_field(tmp_path):
    write(tmp_path, rule(A, name="a") + "---\n" + corr(C1, """\
        type: value_sum
        rules: [a]
        timespan: 5m
        condition: {gte: 3}
        """))
    (err,) = load_rules([tmp_path]).errors
    assert err.key == "correlation.condition.field"


# --- index and explain --------------------------------------------------------------------------------

def test_candidates_narrow_by_dataset_and_discriminating_field(tmp_path):
    docs = []
    for i, code in enumerate((4624, 4625, 4768)):
        docs.append(f"title: R{code}\nid: bbbbbbbb-0000-4000-8000-00000000000{i}\n"
                    "logsource: {product: windows, service: security}\n"
                    f"detection:\n  sel: {{EventID: {code}, TargetUserName: x}}\n  condition: sel\n")
    docs.append("title: keyword\nid: bbbbbbbb-0000-4000-8000-000000000009\n"
                "logsource: {product: windows, service: security}\n"
                "detection:\n  kw: [evil]\n  condition: kw\n")
    write(tmp_path, "---\n".join(docs))
    rs = load_rules([tmp_path])
    ev = {"event.dataset": "windows.security", "EventID": "4625", "TargetUserName": "x"}
    titles = sorted(r.title for r in rs.index_candidates(ev))
    assert titles == ["R4625", "keyword"]
    assert rs.candidates({"event.dataset": "ehr.audit", "EventID": 4625}) == []
    # the literal prefilter narrows further: "evil" occurs nowhere in the event
    assert [r.title for r in rs.candidates(ev)] == ["R4625"]
    assert [r.title for r in rs.candidates(ev) if r.matches(ev)] == ["R4625"]


def test_explain_reports_identifiers_fields_and_values(tmp_path):
    write(tmp_path, f"title: T\nid: {A}\nlogsource: {{product: ehr}}\ndetection:\n"
                    "  sel: {ehr.action|startswith: [print, export]}\n"
                    "  filter: {user.department: records}\n  condition: sel and not filter\n")
    r = load_rules([tmp_path]).rules[A]
    hit = r.explain({"event.dataset": "ehr.audit", "ehr.action": "EXPORT_PDF"})
    assert hit.matched and hit.matched_identifiers == ["sel"] and hit.failed_identifiers == ["filter"]
    text = hit.to_text()
    assert "ehr.action|startswith" in text and "'print*'" in text and "EXPORT_PDF" in text
    miss = r.explain({"event.dataset": "ehr.audit", "ehr.action": "export", "user.department": "records"})
    assert not miss.matched and miss.to_dict()["conditions"][0]["matched"] is False
    other = r.explain({"event.dataset": "vpn.auth", "ehr.action": "export"})
    assert not other.matched and "another log source" in other.to_text()
