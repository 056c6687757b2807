"""Store queries from rules: Lucene with event.dataset, SQLite WHERE, fallback notes, no mutation."""

from __future__ import annotations

import sqlite3
import textwrap

from engine.sigma import convert_rule, load_rules

RID = "dddddddd-0000-4000-8000-000000000001"


def load_one(tmp_path, detection: str, logsource: str = "{product: ehr}", placeholders=None):
    (tmp_path / "r.yml").write_text(
        f"title: T\nid: {RID}\nlogsource: {logsource}\ndetection:\n"
        + textwrap.indent(textwrap.dedent(detection), "  "))
    rs = load_rules([tmp_path], placeholders=placeholders)
    assert not rs.errors, [str(e) for e in rs.errors]
    return rs.rules[RID]


def test_lucene_query_has_dataset_and_sysmon_event_id(tmp_path):
    r = load_one(tmp_path, "sel: {Image|endswith: '\\\\whoami.exe'}\ncondition: sel\n",
                 logsource="{product: windows, category: image_load}")
    q = convert_rule(r, "elasticsearch")
    assert q.pushdown and q.store == "elasticsearch"
    assert "event.dataset:windows.sysmon" in q.query and "EventID:7" in q.query
    assert "whoami.exe" in q.query


def test_lucene_query_of_a_category_on_two_sources_narrows_by_both_event_ids(tmp_path):
    # process_creation is Sysmon 1 and Security 4688: the prefilter must let both through
    r = load_one(tmp_path, "sel: {Image|endswith: '\\\\whoami.exe'}\ncondition: sel\n",
                 logsource="{product: windows, category: process_creation}")
    q = convert_rule(r, "elasticsearch")
    assert "event.dataset:(windows.sysmon OR windows.security)" in q.query
    assert "EventID:(1 OR 4688)" in q.query


def test_converting_twice_gives_the_same_query_and_leaves_rule_untouched(tmp_path):
    r = load_one(tmp_path, "sel: {ehr.action: read}\ncondition: sel\n")
    before = r.sigma.to_dict()
    first, second = convert_rule(r, "elasticsearch"), convert_rule(r, "elasticsearch")
    convert_rule(r, "sqlite")
    assert first.query == second.query
    assert first.query.count("event.dataset") == 1
    assert r.sigma.to_dict() == before
    assert r.matches({"event.dataset": "ehr.audit", "ehr.action": "READ"})


def test_sqlite_where_runs_as_a_prefilter(tmp_path):
    r = load_one(tmp_path, "sel: {ehr.action: read}\ncondition: sel\n")
    q = convert_rule(r, "sqlite")
    assert q.pushdown and not q.query.upper().startswith("SELECT")
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE logs (`event.dataset` TEXT, `ehr.action` TEXT)")
    db.executemany("INSERT INTO logs VALUES (?, ?)",
                   [("ehr.audit", "read"), ("ehr.audit", "write"), ("vpn.auth", "read")])
    rows = db.execute(f"SELECT * FROM logs WHERE {q.query}").fetchall()
    assert rows == [("ehr.audit", "read")]


def test_placeholders_are_filled_in_queries(tmp_path):
    r = load_one(tmp_path, "sel: {ehr.patient.id|expand: '%vip%'}\ncondition: sel\n",
                 placeholders={"vip": ["P1", "P2"]})
    q = convert_rule(r, "elasticsearch")
    assert q.pushdown and "P1" in q.query and "P2" in q.query


def test_unsupported_conversion_falls_back_to_scan(tmp_path):
    r = load_one(tmp_path, "sel: {user.name|fieldref: ehr.patient.name}\ncondition: sel\n")
    q = convert_rule(r, "elasticsearch")  # the Lucene backend cannot compare two fields
    assert not q.pushdown and q.query is None
    assert q.note.startswith("falls back to dataset + time-range scan: ")
    assert "field" in q.note
    assert convert_rule(r, "sqlite").pushdown
    assert r.matches({"event.dataset": "ehr.audit", "user.name": "A", "ehr.patient.name": "a"})


def test_keyword_rule_falls_back_on_sqlite(tmp_path):
    r = load_one(tmp_path, "kw: [foo]\ncondition: kw\n")
    q = convert_rule(r, "sqlite")
    assert not q.pushdown and "falls back" in q.note
