"""SIGMA-CONFORMANCE.md items 1-18, one test (or a few) each, against the compiled evaluator."""

from __future__ import annotations

import base64
import textwrap
import uuid
from pathlib import Path

import pytest

from engine.sigma import CompiledRule, RuleSet, load_rules

EHR = "ehr.audit"


def load(tmp_path: Path, detection: str, logsource: str = "product: ehr", placeholders=None,
         extra_docs: str = "") -> RuleSet:
    rid = str(uuid.uuid4())
    body = textwrap.dedent(detection).strip("\n")
    text = (f"title: Test rule\nid: {rid}\nlevel: high\nlogsource: {{{logsource}}}\n"
            f"detection:\n{textwrap.indent(body, '  ')}\n{extra_docs}")
    path = tmp_path / f"{rid}.yml"
    path.write_text(text, encoding="utf-8")
    return load_rules([path], placeholders=placeholders)


def one(tmp_path: Path, detection: str, **kw) -> CompiledRule:
    rs = load(tmp_path, detection, **kw)
    assert not rs.errors, [str(e) for e in rs.errors]
    assert len(rs.rules) == 1
    return next(iter(rs.rules.values()))


def ev(**fields) -> dict:
    event = {"event.dataset": EHR}
    event.update({k.replace("__", "."): v for k, v in fields.items()})
    return event


# 1 ------------------------------------------------------------------------------------------------
def test_strings_are_case_insensitive_including_equality(tmp_path):
    r = one(tmp_path, """
        sel: {process: CMD.EXE}
        condition: sel""")
    assert r.matches(ev(process="cmd.exe"))
    assert r.matches(ev(process="Cmd.Exe"))
    assert not r.matches(ev(process="cmd.exe2"))


def test_non_ascii_case_folding_uses_lower(tmp_path):
    r = one(tmp_path, """
        sel: {user.name: ÄRZTIN}
        condition: sel""")
    assert r.matches(ev(user__name="ärztin"))
    # documented in docs/rules.md: str.lower(), so "ß" and "SS" are different letters
    r2 = one(tmp_path, """
        sel: {user.name: STRASSE}
        condition: sel""")
    assert not r2.matches(ev(user__name="straße"))


# 2 ------------------------------------------------------------------------------------------------
def test_cased_modifier_is_case_sensitive(tmp_path):
    r = one(tmp_path, """
        sel: {process|cased: cmd}
        condition: sel""")
    assert r.matches(ev(process="cmd"))
    assert not r.matches(ev(process="CMD"))


# 3 ------------------------------------------------------------------------------------------------
def test_wildcards_star_and_question_mark(tmp_path):
    r = one(tmp_path, r"""
        sel: {path: 'c:\win*\sys?em32\\*.exe'}
        condition: sel""")
    assert r.matches(ev(path="C:\\Windows\\System32\\cmd.exe"))
    assert r.matches(ev(path="c:\\win\\sysXem32\\a.exe"))
    assert not r.matches(ev(path="c:\\windows\\syst3m32x\\a.exe"))
    assert not r.matches(ev(path="c:\\windows\\system32\\a.dll"))


def test_escaped_star_is_literal(tmp_path):
    r = one(tmp_path, r"""
        sel: {v: 'a\*b'}
        condition: sel""")
    assert r.matches(ev(v="a*b"))
    assert not r.matches(ev(v="axxb"))
    assert not r.matches(ev(v="ab"))


def test_escaped_backslash_then_wildcard(tmp_path):
    r = one(tmp_path, r"""
        sel: {v: 'dir\\*'}
        condition: sel""")
    assert r.matches(ev(v="dir\\anything"))
    assert r.matches(ev(v="dir\\"))
    assert not r.matches(ev(v="dirx"))


# 4 ------------------------------------------------------------------------------------------------
def test_lists_or_maps_and_contains_all(tmp_path):
    r = one(tmp_path, """
        sel:
          a: [x, y]
          b|contains|all: [foo, bar]
        condition: sel""")
    assert r.matches(ev(a="y", b="xxbarxxfooxx"))
    assert not r.matches(ev(a="y", b="xxfooxx"))
    assert not r.matches(ev(a="z", b="foobar"))
    assert not r.matches(ev(b="foobar"))


def test_list_of_maps_is_or(tmp_path):
    r = one(tmp_path, """
        sel:
          - {a: 1, b: 2}
          - {c: 3}
        condition: sel""")
    assert r.matches(ev(a=1, b=2))
    assert r.matches(ev(c=3))
    assert not r.matches(ev(a=1))


def test_list_valued_field_matches_if_any_element_matches(tmp_path):
    r = one(tmp_path, """
        sel: {user.roles: admin}
        condition: sel""")
    assert r.matches(ev(user__roles=["nurse", "Admin"]))
    assert not r.matches(ev(user__roles=["nurse"]))


# 5 ------------------------------------------------------------------------------------------------
def test_re_is_case_sensitive_unless_i(tmp_path):
    r = one(tmp_path, """
        sel: {v|re: 'ab+c'}
        condition: sel""")
    assert r.matches(ev(v="xxabbbcxx"))
    assert not r.matches(ev(v="ABC"))
    ri = one(tmp_path, """
        sel: {v|re|i: 'ab+c'}
        condition: sel""")
    assert ri.matches(ev(v="ABBC"))


def test_re_multiline_and_dotall_flags(tmp_path):
    rm = one(tmp_path, """
        sel: {v|re|m: '^second$'}
        condition: sel""")
    assert rm.matches(ev(v="first\nsecond\nthird"))
    plain = one(tmp_path, """
        sel: {v|re: '^second$'}
        condition: sel""")
    assert not plain.matches(ev(v="first\nsecond\nthird"))
    rs = one(tmp_path, """
        sel: {v|re|s: 'a.b'}
        condition: sel""")
    assert rs.matches(ev(v="a\nb"))
    plain_s = one(tmp_path, """
        sel: {v|re: 'a.b'}
        condition: sel""")
    assert not plain_s.matches(ev(v="a\nb"))


def test_bad_regex_is_a_load_error(tmp_path):
    rs = load(tmp_path, """
        sel: {v|re: 'a(b'}
        condition: sel""")
    assert not rs.rules
    (err,) = rs.errors
    assert err.key == "detection.sel.v|re"
    assert "regular expression" in err.message
    assert err.line == 6


# 6 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dash", ["-", "/", "\u2013", "\u2014", "\u2015"])
def test_windash_matches_all_dash_forms(tmp_path, dash):
    r = one(tmp_path, """
        sel: {CommandLine|windash|contains: ' -enc '}
        condition: sel""", logsource="product: windows, category: process_creation")
    event = {"event.dataset": "windows.sysmon", "EventID": 1, "CommandLine": f"powershell {dash}enc AAA"}
    assert r.matches(event)


def test_windash_does_not_expand_inner_dash(tmp_path):
    r = one(tmp_path, """
        sel: {v|windash: 'x-y'}
        condition: sel""")
    assert r.matches(ev(v="x-y"))
    assert not r.matches(ev(v="x/y"))


# 7 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["", "a", "ab"])
def test_base64offset_contains_finds_all_offsets(tmp_path, prefix):
    r = one(tmp_path, """
        sel: {v|base64offset|contains: 'http://evil'}
        condition: sel""")
    encoded = base64.b64encode((prefix + "http://evil/x").encode()).decode()
    assert r.matches(ev(v=f"powershell -e {encoded}"))
    other = base64.b64encode((prefix + "http://good/x").encode()).decode()
    assert not r.matches(ev(v=other))


def test_base64_and_utf16le_base64offset(tmp_path):
    r = one(tmp_path, """
        sel: {v|base64: 'secret'}
        condition: sel""")
    assert r.matches(ev(v=base64.b64encode(b"secret").decode()))
    r2 = one(tmp_path, """
        sel: {v|utf16le|base64offset|contains: 'Invoke'}
        condition: sel""")
    for prefix in ("", "x", "xy"):
        blob = base64.b64encode((prefix + "Invoke-Thing").encode("utf-16-le")).decode()
        assert r2.matches(ev(v=blob)), prefix


# 8 ------------------------------------------------------------------------------------------------
def test_cidr_v4_v6_and_non_ip(tmp_path):
    r = one(tmp_path, """
        sel: {source.ip|cidr: ['10.0.0.0/8', '2001:db8::/32']}
        condition: sel""")
    assert r.matches(ev(source__ip="10.1.2.3"))
    assert r.matches(ev(source__ip="2001:db8:1::5"))
    assert not r.matches(ev(source__ip="11.0.0.1"))
    assert not r.matches(ev(source__ip="2001:db9::1"))
    assert not r.matches(ev(source__ip="not-an-ip"))
    assert not r.matches(ev(source__ip=42))


# 9 ------------------------------------------------------------------------------------------------
def test_fieldref_compares_two_fields(tmp_path):
    r = one(tmp_path, """
        sel: {user__name|fieldref: ehr__patient__name}
        condition: sel""".replace("__", "."))
    assert r.matches(ev(user__name="Jane Doe", ehr__patient__name="jane doe"))
    assert not r.matches(ev(user__name="Jane Doe", ehr__patient__name="John Doe"))
    assert not r.matches(ev(user__name="Jane Doe"))
    assert "ehr.patient.name" in r.fields


@pytest.mark.parametrize("mod,value,expected", [
    ("startswith", "jane doe md", True), ("endswith", "dr jane doe", True),
    ("contains", "x jane doe x", True), ("startswith", "dr jane doe", False)])
def test_fieldref_with_position_modifiers(tmp_path, mod, value, expected):
    r = one(tmp_path, f"""
        sel: {{a|fieldref|{mod}: b}}
        condition: sel""")
    assert r.matches(ev(a=value, b="Jane Doe")) is expected


# 10, 11 --------------------------------------------------------------------------------------------
def test_exists_distinguishes_absent_null_empty(tmp_path):
    yes = one(tmp_path, """
        sel: {v|exists: true}
        condition: sel""")
    no = one(tmp_path, """
        sel: {v|exists: false}
        condition: sel""")
    assert not yes.matches(ev()) and no.matches(ev())
    assert not yes.matches(ev(v=None)) and no.matches(ev(v=None))  # null counts as absent (as in ES)
    assert yes.matches(ev(v="")) and not no.matches(ev(v=""))


def test_null_matches_absent_or_null_not_empty(tmp_path):
    r = one(tmp_path, """
        sel: {v: null}
        condition: sel""")
    assert r.matches(ev())
    assert r.matches(ev(v=None))
    assert not r.matches(ev(v=""))
    empty = one(tmp_path, """
        sel: {v: ''}
        condition: sel""")
    assert empty.matches(ev(v="")) and not empty.matches(ev()) and not empty.matches(ev(v=None))


# 12 -----------------------------------------------------------------------------------------------
def test_sel_and_not_filter_fires_when_filter_field_absent(tmp_path):
    r = one(tmp_path, """
        sel: {ehr__action: read}
        filter: {user__department: oncology}
        condition: sel and not filter""".replace("__", "."))
    assert r.matches(ev(ehr__action="read"))
    assert r.matches(ev(ehr__action="read", user__department=None))
    assert not r.matches(ev(ehr__action="read", user__department="Oncology"))


# 13 -----------------------------------------------------------------------------------------------
def test_numbers_match_numeric_strings(tmp_path):
    r = one(tmp_path, """
        sel: {EventID: 4688}
        condition: sel""")
    assert r.matches(ev(EventID=4688))
    assert r.matches(ev(EventID="4688"))
    assert not r.matches(ev(EventID=4689))
    assert not r.matches(ev(EventID="x4688"))
    s = one(tmp_path, """
        sel: {EventID: '4688'}
        condition: sel""")
    assert s.matches(ev(EventID=4688)) and s.matches(ev(EventID="4688"))


@pytest.mark.parametrize("mod,bound,value,expected", [
    ("gt", 5, 6, True), ("gt", 5, 5, False), ("gte", 5, 5, True), ("lt", 5, 4.5, True),
    ("lt", 5, "4", True), ("lte", 5, 5, True), ("lte", 5, 6, False), ("gt", 5, "abc", False),
    ("gt", 5, True, False)])
def test_numeric_comparisons(tmp_path, mod, bound, value, expected):
    r = one(tmp_path, f"""
        sel: {{n|{mod}: {bound}}}
        condition: sel""")
    assert r.matches(ev(n=value)) is expected


# 14 -----------------------------------------------------------------------------------------------
def test_keywords_search_every_string_field(tmp_path):
    r = one(tmp_path, """
        keywords: [mimikatz, 'sekurlsa::']
        condition: keywords""")
    assert r.matches(ev(message="ran MIMIKATZ today"))
    assert r.matches(ev(other=["x", "sekurlsa::logonpasswords"]))
    assert not r.matches(ev(message="benign", n=5))


def test_keywords_all_form(tmp_path):
    r = one(tmp_path, """
        keywords:
          '|all': [alpha, beta]
        condition: keywords""")
    assert r.matches(ev(a="alpha", b="beta"))
    assert r.matches(ev(a="alpha and beta"))
    assert not r.matches(ev(a="alpha"))


# 15 -----------------------------------------------------------------------------------------------
def test_precedence_not_and_or(tmp_path):
    r = one(tmp_path, """
        a: {x: 1}
        b: {y: 1}
        c: {z: 1}
        condition: a or b and not c""")
    assert r.matches(ev(x=1, z=1))          # a or (b and (not c))
    assert r.matches(ev(y=1))
    assert not r.matches(ev(y=1, z=1))


def test_one_of_and_all_of_them_skip_underscore(tmp_path):
    r = one(tmp_path, """
        sel_a: {x: 1}
        sel_b: {y: 1}
        other: {z: 1}
        condition: 1 of sel_* and other""")
    assert r.matches(ev(y=1, z=1))
    assert not r.matches(ev(y=1))
    them = one(tmp_path, """
        a: {x: 1}
        b: {y: 1}
        _helper: {never: here}
        condition: all of them""")
    assert them.matches(ev(x=1, y=1))  # _helper is not part of `them`


def test_list_of_conditions_is_or(tmp_path):
    r = one(tmp_path, """
        a: {x: 1}
        b: {y: 1}
        condition: [a, b]""")
    assert r.matches(ev(x=1)) and r.matches(ev(y=1)) and not r.matches(ev(z=1))


# 16 -----------------------------------------------------------------------------------------------
def test_expand_placeholders_from_configured_lists(tmp_path):
    r = one(tmp_path, """
        sel: {ehr.patient.id|expand: '%vip_patients%'}
        condition: sel""", placeholders={"vip_patients": ["P-1", "P-2"]})
    assert r.matches(ev(ehr__patient__id="p-2"))
    assert not r.matches(ev(ehr__patient__id="P-3"))


def test_unresolved_placeholder_rejects_rule(tmp_path):
    rs = load(tmp_path, """
        sel: {ehr.patient.id|expand: '%vip_patients%'}
        condition: sel""", placeholders={})
    assert not rs.rules
    (err,) = rs.errors
    assert "%vip_patients%" in err.message
    assert err.key == "detection.sel.ehr.patient.id|expand"


def test_an_empty_placeholder_list_is_one_clear_line_saying_what_to_do(tmp_path):
    rs = load(tmp_path, """
        sel: {ehr.patient.id|expand: '%vip_patients%'}
        condition: sel""", placeholders={"vip_patients": []})
    assert not rs.rules
    (err,) = rs.errors
    assert err.key == "detection.sel.ehr.patient.id|expand"
    assert err.message == ("placeholder '%vip_patients%' is an empty list in rules.placeholders: |expand needs at "
                           "least one value (to match no one, give a value no event carries, e.g. ['(none)'])")


# 17 -----------------------------------------------------------------------------------------------
FILTER = """---
title: Ignore the records office
id: {fid}
logsource: {{product: ehr}}
filter:
  rules: [{ref}]
  records: {{user.department: records}}
  condition: not records
"""


def test_sigma_filter_applies_by_rule_reference_and_logsource(tmp_path):
    rid = "11111111-1111-4111-8111-111111111111"
    (tmp_path / "rule.yml").write_text(textwrap.dedent(f"""\
        title: Chart read
        id: {rid}
        logsource: {{product: ehr}}
        detection:
          sel: {{ehr.action: read}}
          condition: sel
        ---
        title: Other chart read
        id: 22222222-2222-4222-8222-222222222222
        logsource: {{product: ehr}}
        detection:
          sel: {{ehr.action: read}}
          condition: sel
        """) + FILTER.format(fid=uuid.uuid4(), ref=rid))
    rs = load_rules([tmp_path])
    assert not rs.errors, [str(e) for e in rs.errors]
    target, other = rs.rules[rid], rs.rules["22222222-2222-4222-8222-222222222222"]
    records = ev(ehr__action="read", user__department="records")
    assert not target.matches(records)
    assert target.matches(ev(ehr__action="read", user__department="icu"))
    assert other.matches(records)  # the filter names only the first rule


def test_sigma_filter_with_other_logsource_does_not_apply(tmp_path):
    rid = "33333333-3333-4333-8333-333333333333"
    (tmp_path / "rule.yml").write_text(textwrap.dedent(f"""\
        title: Chart read
        id: {rid}
        logsource: {{product: ehr}}
        detection:
          sel: {{ehr.action: read}}
          condition: sel
        """) + FILTER.format(fid=uuid.uuid4(), ref=rid).replace("product: ehr", "product: vpn"))
    rs = load_rules([tmp_path])
    assert rs.rules[rid].matches(ev(ehr__action="read", user__department="records"))


# 18 -----------------------------------------------------------------------------------------------
def test_logsource_scoping(tmp_path):
    r = one(tmp_path, """
        sel: {user.name: alice}
        condition: sel""", logsource="product: vpn")
    assert r.matches({"event.dataset": "vpn.auth", "user.name": "alice"})
    assert not r.matches({"event.dataset": "ehr.audit", "user.name": "alice"})
    assert not r.matches({"user.name": "alice"})


def test_windows_category_adds_sysmon_event_id(tmp_path):
    r = one(tmp_path, """
        sel: {Image|endswith: '\\whoami.exe'}
        condition: sel""", logsource="product: windows, category: process_creation")
    base = {"event.dataset": "windows.sysmon", "Image": "C:\\Windows\\whoami.exe"}
    assert r.matches({**base, "EventID": 1})
    assert not r.matches({**base, "EventID": 3})
    assert not r.matches({**base, "event.dataset": "windows.security", "EventID": 1})
