"""Cases: alerts about one user or patient within one period become one case (engine/alerts/cases.py).

What a user sees: one case per person and day instead of a flood, its reasons and a score that adds up,
the same cases whatever order alerts arrived in, exactly one JSONL line per case revision across crashes,
and rule files that declare their own grouping and suppression.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.alerts.cases import (CASE_BUILDER, CaseBuilder, CaseConfigError, case_settings, memberships,
                                 merged_suppression, rule_defaults)
from engine.alerts.model import Alert, alert_id
from engine.alerts.sinks import ConsoleSink, JsonlSink, deliver_pending
from engine.store import open_store
from engine.store.base import RuleCheckpoint
from tests.store_fixtures import store  # noqa: F401 - fixture (SQLite and Elasticsearch)

ROOT = Path(__file__).resolve().parents[1]


def alert(rule: str, group: dict, first: str, *, level: str = "high", events: int = 1, revision: int = 1,
          last: str | None = None, tags: tuple[str, ...] = ()) -> Alert:
    key = orjson.dumps(group, option=orjson.OPT_SORT_KEYS).decode()
    evidence = [f"{rule}-{first}-{i}" for i in range(events)]
    return Alert(id=alert_id(rule, key, first), rule_id=rule, rule_title=f"Rule {rule}", rule_level=level,
                 rule_tags=list(tags), kind="match", group=dict(group), group_key=key, window_start=first,
                 window_end=last or first, first_trigger=first, last_trigger=last or first, evidence=evidence,
                 evidence_total=events, revision=revision, rule_description=f"{rule} happened. More text.")


def at(hour: int, minute: int = 0, day: int = 2) -> str:
    return f"2026-11-{day:02d}T{hour:02d}:{minute:02d}:00.000Z"


def commit(store, alerts):  # noqa: F811 - the fixture's name
    store.commit_rule_run(RuleCheckpoint("r", None), alerts)


SETTINGS = case_settings({})


# --- membership and score --------------------------------------------------------------------------
def test_alerts_about_one_user_on_one_day_are_one_case_and_another_day_is_another():
    a = alert("a", {"user.name": "jdoe"}, at(9))
    b = alert("b", {"user.name": "jdoe", "source.ip": "10.0.0.1"}, at(17))
    c = alert("a", {"user.name": "jdoe"}, at(9, day=3))
    ids = {m[3] for x in (a, b) for m in memberships(x, SETTINGS)}
    assert len(ids) == 1
    assert memberships(c, SETTINGS)[0][3] not in ids


def test_an_alert_naming_user_and_patient_is_in_both_cases_and_identity_meets_user_name():
    a = alert("a", {"user.name": "jdoe", "ehr.patient.id": "P1"}, at(9))
    kinds = {(m[0], m[1], m[4]) for m in memberships(a, SETTINGS)}
    assert kinds == {("user", "jdoe", "user.name"), ("patient", "P1", "ehr.patient.id")}
    chain = alert("x", {"wardwatch.identity": "jdoe"}, at(11))
    assert memberships(chain, SETTINGS)[0][3] in {m[3] for m in memberships(a, SETTINGS)}


def test_an_alert_without_subject_gets_a_case_of_its_own_rule_and_group():
    spray = alert("spray", {"source.ip": "203.0.113.9"}, at(2))
    [(kind, subject, _, cid, _)] = memberships(spray, SETTINGS)
    assert kind == "group" and subject == '{"source.ip":"203.0.113.9"}'
    other_rule = alert("other", {"source.ip": "203.0.113.9"}, at(2))
    assert memberships(other_rule, SETTINGS)[0][3] != cid


def test_the_score_is_the_sum_of_its_named_parts_and_weights_change_it(tmp_path):
    store = open_store("sqlite", path=tmp_path / "w.db")  # noqa: F811
    alerts = [alert("a", {"user.name": "jdoe"}, at(9), level="high", events=5),
              alert("a", {"user.name": "jdoe"}, at(10), level="high", events=5),
              alert("b", {"user.name": "jdoe"}, at(11), level="critical", events=1, tags=("attack.t1213",))]
    [case] = CaseBuilder(store, SETTINGS).update(alerts)
    signals = [p["signal"] for p in case.score_parts]
    assert signals.count("level") == 2 and "repeat" in signals and "breadth" in signals and "evidence" in signals
    assert case.score == round(sum(p["points"] for p in case.score_parts), 2)
    assert case.level == "critical" and case.rules[0]["id"] == "b"  # highest level first
    assert [r["alerts"] for r in case.rules] == [1, 2] and case.evidence_total == 11
    assert any("Rule a [high]: 2 alert(s), 10 event(s) (a happened.)" == r for r in case.reasons)
    heavier = case_settings({"weights": {"levels": {"critical": 50}, "tags": {"attack.t1213": 5},
                                         "rules": {"a": 1}}})
    [weighted] = CaseBuilder(store, heavier).update(alerts)
    assert weighted.score == pytest.approx(case.score + 40 + 5 + 1)
    assert {"signal": "tag", "detail": "Rule b: attack.t1213", "points": 5.0} in weighted.score_parts
    store.close()


@pytest.mark.parametrize("section, key", [
    ({"weights": {"repeat": -1}}, "alerts.cases.weights.repeat"),
    ({"weights": {"levels": {"severe": 3}}}, "alerts.cases.weights.levels"),
    ({"weights": {"tags": {"attack.t1": "high"}}}, "alerts.cases.weights.tags"),
    ({"by": {"user": []}}, "alerts.cases.by.user"),
    ({"by": [1, 2]}, "alerts.cases.by"),
    ({"by": {}}, "alerts.cases.by"),
    ({"period": "0s"}, "alerts.cases.period"),
    ({"period": "soon"}, "alerts.cases.period"),
])
def test_bad_case_settings_name_the_key(section, key):
    with pytest.raises(CaseConfigError, match=key.replace(".", r"\.")):
        case_settings(section)


def test_by_as_a_list_makes_each_field_its_own_subject():
    assert case_settings({"by": ["user.name", "host.name"]}).by == {"user.name": ("user.name",),
                                                                   "host.name": ("host.name",)}


def test_a_bad_cases_section_is_a_config_error_naming_file_and_key(tmp_path):
    from engine.config import ConfigError, load_config

    path = tmp_path / "c.yaml"
    path.write_text("alerts:\n  cases:\n    weights: {levels: {huge: 3}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "alerts.cases.weights.levels" in str(info.value) and str(path) in str(info.value)


# --- stores ----------------------------------------------------------------------------------------
def test_cases_are_stored_with_one_outbox_entry_per_revision(store):  # noqa: F811
    builder = CaseBuilder(store, SETTINGS)
    first = [alert("a", {"user.name": "jdoe"}, at(9))]
    commit(store, first)
    [case] = builder.update(first)
    store.put_cases([case])
    store.put_cases([case])  # a repeat after a crash: same revision, no second delivery
    assert store.get_case(case.id).to_dict() == case.to_dict()
    assert [c.id for c in store.pending_case_deliveries("s")] == [case.id]
    store.mark_cases_delivered("s", store.pending_case_deliveries("s"))
    assert store.pending_case_deliveries("s") == []
    later = [alert("b", {"user.name": "jdoe"}, at(15))]
    commit(store, later)
    [updated] = builder.update(later)
    assert updated.id == case.id and updated.revision == 2 and len(updated.alerts) == 2
    store.put_cases([updated])
    assert [(c.id, c.revision) for c in store.pending_case_deliveries("s")] == [(case.id, 2)]
    assert [c.revision for c in store.list_cases()] == [2]
    assert store.get_case("nope") is None


def test_get_cases_is_get_case_for_each_id(store):  # noqa: F811
    builder = CaseBuilder(store, SETTINGS)
    alerts = [alert("a", {"user.name": u}, at(9)) for u in ("u1", "u2", "u3")]
    commit(store, alerts)
    cases = builder.update(alerts)
    store.put_cases(cases[:2])
    asked = [cases[2].id, cases[1].id, "nope", cases[0].id, cases[1].id]
    got = store.get_cases(asked)
    assert {cid: c.to_dict() for cid, c in got.items()} == {
        cid: store.get_case(cid).to_dict() for cid in asked if store.get_case(cid) is not None}
    assert set(got) == {cases[0].id, cases[1].id}


def test_one_account_is_one_user_case_however_each_source_spells_it():
    """The VPN gateway logs PWagner, the domain controller KLINIKUM\\pwagner, the Kerberoasting correlation
    pwagner@KLINIKUM.EXAMPLE (its rule file names TargetUserName a user: ``case_by: {user: [...]}``): one
    person, one case. A plain lower-case name is itself, so the cases already stored keep their ids."""
    from engine.alerts.case_model import case_id

    settings_ = dataclasses.replace(SETTINGS, rule_by={"kerberoasting": ("TargetUserName",)},
                                    rule_kinds={"kerberoasting": {"TargetUserName": "user"}})
    spelled = [alert("vpn", {"user.name": "PWagner"}, at(8)),
               alert("gpo", {"SubjectUserName": "KLINIKUM\\pwagner"}, at(15)),
               alert("kerberoasting", {"TargetUserName": "pwagner@KLINIKUM.EXAMPLE"}, at(16))]
    found = [memberships(a, settings_) for a in spelled]
    assert {(m[0][0], m[0][1]) for m in found} == {("user", "pwagner")} and len({m[0][3] for m in found}) == 1
    assert [m[0][4] for m in found] == ["user.name", "SubjectUserName", "TargetUserName"]
    [(_, subject, _, cid, _)] = memberships(alert("vpn", {"user.name": "jdoe"}, at(8)), settings_)
    assert (subject, cid) == ("jdoe", case_id("user", "jdoe", "2026-11-02T00:00:00.000Z"))
    # without the rule's word, TargetUserName (a group, a target) names no user: a case of the rule's own
    assert memberships(spelled[2], SETTINGS)[0][0] == "group"


def test_a_rule_file_names_the_kind_of_its_fields(tmp_path):
    from engine.app import load_ruleset
    from engine.config import load_config

    rules = RULES.replace("case_by: [ehr.patient.id]", "case_by: {user: [TargetUserName], patient: ehr.patient.id}")
    ruleset = load_ruleset(load_config(cases_config(tmp_path, rules)))
    [rid] = ruleset.rules
    assert rule_defaults(ruleset)[rid]["case_kinds"] == {"TargetUserName": "user", "ehr.patient.id": "patient"}
    assert case_settings({}, ruleset).rule_kinds == {rid: {"TargetUserName": "user", "ehr.patient.id": "patient"}}


def test_a_case_about_a_rule_group_reads_as_its_fields_not_as_json():
    """A case with no user or patient (a spray from one address, a lockout storm) is about its rule's group.
    Its head line used to read ``group group={"source.ip":"203.0.113.250"}`` and ``group group=-``."""
    from engine.alerts.sinks import case_lines

    from engine.alerts.cases import build_case

    def case_of(a: Alert):
        [(kind, subject, anchor, cid, _field)] = memberships(a, SETTINGS)
        return build_case(cid, kind, subject, anchor, [a], SETTINGS)

    spray = case_of(alert("spray", {"source.ip": "203.0.113.250", "n": 2}, at(1)))
    storm = case_of(alert("storm", {}, at(2)))
    assert spray.subject == '{"n":2,"source.ip":"203.0.113.250"}'  # stored (and hashed into the id) as before
    assert "| group n=2, source.ip=203.0.113.250 |" in case_lines(spray)[0]
    assert "| group (the whole rule) |" in case_lines(storm)[0]
    assert "| user user.name=jdoe |" in case_lines(case_of(alert("a", {"user.name": "jdoe"}, at(9))))[0]
    # the Slack and Teams card shows the same
    from engine.alerts.sinks.chat import message

    assert ("group", "n=2, source.ip=203.0.113.250") in message("case", spray.to_dict()).facts


def test_delivery_builds_cases_first_and_writes_each_case_revision_once(store, tmp_path):  # noqa: F811
    sink = JsonlSink(tmp_path / "alerts.jsonl")
    console = io.StringIO()
    sinks = [CaseBuilder(store, SETTINGS), sink, ConsoleSink(console)]
    commit(store, [alert("a", {"user.name": "jdoe", "ehr.patient.id": "P7"}, at(9)),
                   alert("b", {"user.name": "jdoe"}, at(10))])
    deliver_pending(store, sinks)
    cases = [orjson.loads(line) for line in (tmp_path / "alerts.cases.jsonl").read_bytes().splitlines()]
    assert sorted((c["subject_kind"], c["subject"], len(c["alerts"])) for c in cases) == [
        ("patient", "P7", 1), ("user", "jdoe", 2)]
    assert len((tmp_path / "alerts.jsonl").read_bytes().splitlines()) == 2  # the raw alerts, as before
    assert "CASE [high] risk" in console.getvalue() and "user user.name=jdoe" in console.getvalue()
    assert "  ALERT [high] Rule a x1" in console.getvalue()
    deliver_pending(store, sinks)  # nothing new: nothing written
    assert len((tmp_path / "alerts.cases.jsonl").read_bytes().splitlines()) == 2
    commit(store, [alert("a", {"user.name": "jdoe"}, at(20))])
    deliver_pending(store, sinks)
    lines = [orjson.loads(line) for line in (tmp_path / "alerts.cases.jsonl").read_bytes().splitlines()]
    assert [(c["subject"], c["revision"]) for c in lines[2:]] == [("jdoe", 2)]


def test_one_delivery_round_makes_one_revision_of_a_case_however_many_alerts_it_has(tmp_path):
    """1,500 alerts about one user in one round: one case revision, not one per 1,000 alerts fetched (the
    intermediate revision was never the case's state at the end of a round, only a batch boundary's)."""
    store = open_store("sqlite", path=tmp_path / "w.db")  # noqa: F811
    commit(store, [alert(f"r{i}", {"user.name": "jdoe"}, at(9, i % 60)) for i in range(1500)])
    sink = JsonlSink(tmp_path / "a.jsonl")
    deliver_pending(store, [CaseBuilder(store, SETTINGS), sink])
    lines = [orjson.loads(line) for line in (tmp_path / "a.cases.jsonl").read_bytes().splitlines()]
    assert [(c["subject"], c["revision"], len(c["alerts"])) for c in lines] == [("jdoe", 1, 1500)]
    assert len((tmp_path / "a.jsonl").read_bytes().splitlines()) == 1500  # every alert still delivered
    assert store.pending_deliveries(CASE_BUILDER) == []
    store.close()


def test_a_case_does_not_depend_on_its_members_triage_state():
    """The case builder is handed revisions without the triage overlay (TRIAGE_BLIND_CONSUMERS): that is
    only right while a case reads nothing of its members' status and assignee."""
    from dataclasses import replace

    from engine.alerts.exceptions import TRIAGE_BLIND_CONSUMERS

    assert CASE_BUILDER in TRIAGE_BLIND_CONSUMERS
    members = [alert("a", {"user.name": "jdoe"}, at(9)), alert("b", {"user.name": "jdoe"}, at(11), events=3)]
    triaged = [replace(members[0], status="closed", assignee="ann"), replace(members[1], status="acknowledged")]

    class NoStore:
        def get_cases(self, case_ids):
            return {}

        def get_alerts(self, ids):
            return {}

    plain = [c.to_dict() for c in CaseBuilder(NoStore(), SETTINGS).update(members)]
    assert plain == [c.to_dict() for c in CaseBuilder(NoStore(), SETTINGS).update(triaged)]


def test_a_crash_before_acknowledging_repeats_nothing(tmp_path, monkeypatch):
    store = open_store("sqlite", path=tmp_path / "w.db")  # noqa: F811
    commit(store, [alert("a", {"user.name": "jdoe"}, at(9))])
    original = store.mark_delivered

    def crash(sink, alerts):
        if sink == CASE_BUILDER:
            raise KeyboardInterrupt("killed")  # the process dies after the cases were stored
        original(sink, alerts)

    monkeypatch.setattr(store, "mark_delivered", crash)
    with pytest.raises(KeyboardInterrupt):
        deliver_pending(store, [CaseBuilder(store, SETTINGS), JsonlSink(tmp_path / "a.jsonl")])
    monkeypatch.setattr(store, "mark_delivered", original)
    sink = JsonlSink(tmp_path / "a.jsonl")  # a restarted process
    deliver_pending(store, [CaseBuilder(store, SETTINGS), sink])
    deliver_pending(store, [CaseBuilder(store, SETTINGS), sink])
    lines = [orjson.loads(line) for line in (tmp_path / "a.cases.jsonl").read_bytes().splitlines()]
    assert [(c["subject"], c["revision"]) for c in lines] == [("jdoe", 1)]
    store.close()


def test_without_cases_every_sink_gets_alerts(tmp_path):
    store = open_store("sqlite", path=tmp_path / "w.db")  # noqa: F811
    commit(store, [alert("a", {"user.name": "jdoe"}, at(9))])
    out = io.StringIO()
    deliver_pending(store, [ConsoleSink(out)])  # no case builder (alerts.cases.enabled: false)
    assert out.getvalue().startswith("ALERT [high] Rule a | user.name=jdoe")
    store.close()


@settings(max_examples=25, deadline=None)
@given(st.permutations(range(8)), st.integers(1, 4))
def test_cases_do_not_depend_on_arrival_order_or_batching(tmp_path_factory, order, batch):
    """Late alerts, other batch sizes, another order: the same cases with the same content."""
    pool = [alert(rule, {"user.name": user}, at(hour, day=day), events=hour % 3 + 1)
            for rule, user, hour, day in [("a", "u1", 9, 2), ("b", "u1", 13, 2), ("a", "u2", 9, 2),
                                          ("c", "u1", 23, 2), ("a", "u1", 1, 3), ("b", "u2", 4, 2),
                                          ("c", "u2", 8, 3), ("a", "u1", 10, 2)]]

    def run(sequence, size):
        path = tmp_path_factory.mktemp("cases") / "w.db"
        store = open_store("sqlite", path=path)  # noqa: F811
        builder = CaseBuilder(store, SETTINGS)
        for i in range(0, len(sequence), size):
            part = [pool[j] for j in sequence[i:i + size]]
            commit(store, part)
            store.put_cases(builder.update(part))
        result = {c.id: {k: v for k, v in c.to_dict().items() if k != "revision"} for c in store.list_cases()}
        store.close()
        return result

    assert run(list(order), batch) == run(list(range(8)), 8)


# --- rule files ------------------------------------------------------------------------------------
RULES = """\
title: Record read (cases test)
id: 0b5f0f1e-2222-4222-8333-900000000001
name: cases_test_read
logsource:
    product: ehr
detection:
    selection:
        event.action: read
    condition: selection
level: medium
wardwatch:
    case_by: [ehr.patient.id]
    suppress: {by: [user.name, ehr.patient.id], for: 1h}
"""


def cases_config(tmp_path: Path, rules: str = RULES, extra: dict | None = None) -> Path:
    (tmp_path / "rules.yml").write_text(rules)
    events = [{"@timestamp": f"2026-11-02T10:{i:02d}:00Z", "event.dataset": "ehr.audit", "event.action": "read",
               "ehr.patient.id": "P1" if i < 3 else "P2", "user.name": "akrause"} for i in range(5)]
    (tmp_path / "ehr.ndjson").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    path = tmp_path / "wardwatch.yaml"
    path.write_text(yaml.safe_dump({
        "store": {"sqlite": {"path": str(tmp_path / "data" / "w.db")}},
        "rules": {"paths": [str(tmp_path / "rules.yml")]},
        "connectors": [{"name": "ehr", "type": "ndjson", "path": str(tmp_path / "ehr.ndjson")}],
        "alerts": {"sinks": [{"type": "jsonl", "path": str(tmp_path / "data" / "alerts.jsonl")}], **(extra or {})},
        "logging": {"level": "warning"},
    }))
    return path


def test_a_rule_file_declares_its_suppression_and_case_grouping(tmp_path):
    from engine.app import load_ruleset
    from engine.config import load_config

    config = load_config(cases_config(tmp_path))
    ruleset = load_ruleset(config)
    [rid] = ruleset.rules
    assert rule_defaults(ruleset)[rid] == {"case_by": ("ehr.patient.id",),
                                           "suppress": {"by": ["user.name", "ehr.patient.id"], "for": "1h"}}
    assert merged_suppression(ruleset, {})[rid]["for"] == "1h"
    site = {"cases_test_read": {"by": ["user.name"], "for": "1d"}}  # the site config wins (by name)
    assert merged_suppression(ruleset, site) == site


def test_run_once_makes_one_alert_per_patient_and_hour_and_one_case_per_patient(tmp_path, capsys):
    from engine.cli import main

    config = cases_config(tmp_path)
    assert main(["--config", str(config), "run", "--once"]) == 0
    out = capsys.readouterr().out
    assert "2 new or updated alert(s)" in out  # suppression from the rule file: 5 reads -> 2 alerts
    assert "2 case(s) in the store" in out and "patient ehr.patient.id=P1" in out
    assert "why: Record read (cases test) [medium]: 1 alert(s), 3 event(s)" in out
    cases = [orjson.loads(line) for line in (tmp_path / "data" / "alerts.cases.jsonl").read_bytes().splitlines()]
    assert sorted(c["subject"] for c in cases) == ["P1", "P2"]  # case_by: no user case for these alerts

    assert main(["--config", str(config), "alerts", "list", "--format", "json"]) == 0
    listed = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [c["subject"] for c in listed] == ["P1", "P2"] and all(c["record"] == "case" for c in listed)
    assert main(["--config", str(config), "alerts", "list", "--alerts", "--format", "json"]) == 0
    raw = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["evidence_total"] for a in raw] == [3, 2] and "record" not in raw[0]
    assert main(["--config", str(config), "alerts", "list"]) == 0
    assert "2 case(s), highest risk first" in capsys.readouterr().out

    p1 = next(c for c in listed if c["subject"] == "P1")
    assert main(["--config", str(config), "cases", "show", p1["id"][:8]]) == 0
    shown = capsys.readouterr().out
    assert "why:" in shown and "Record read (cases test) [medium]: 1 alert(s), 3 event(s)" in shown
    assert f"risk {p1['score']:g} =" in shown and "+3  level: Record read (cases test) [medium]" in shown
    assert "user.name=akrause, ehr.patient.id=P1" in shown  # the member alert
    assert main(["--config", str(config), "cases", "show", "0000000000"]) == 2
    assert "no case '0000000000'" in capsys.readouterr().err


def test_a_malformed_wardwatch_field_names_the_rule_file(tmp_path, capsys):
    from engine.cli import main

    config = cases_config(tmp_path, RULES.replace("case_by: [ehr.patient.id]", "case_by: {user: [7]}"))
    assert main(["--config", str(config), "run", "--once"]) != 0
    err = capsys.readouterr().err
    assert "rules.yml" in err and "wardwatch.case_by" in err and "Traceback" not in err


def test_cases_can_be_switched_off(tmp_path, capsys):
    from engine.cli import main

    config = cases_config(tmp_path, extra={"cases": {"enabled": False}})
    assert main(["--config", str(config), "run", "--once"]) == 0
    assert "case(s)" not in capsys.readouterr().out
    assert not (tmp_path / "data" / "alerts.cases.jsonl").exists()
    assert main(["--config", str(config), "alerts", "list", "--format", "json"]) == 0
    assert all("rule_id" in orjson.loads(line) for line in capsys.readouterr().out.splitlines())


@pytest.mark.slow
def test_the_demo_shows_cases_with_reasons(tmp_path):
    """`make run` (no config file): the demo's alerts about jarnold (VPN, AD, EHR export) are one case."""
    import os
    import subprocess
    import sys

    for name in ("fixtures", "rules"):
        os.symlink(ROOT / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDWATCH_")}
    result = subprocess.run([sys.executable, "-m", "engine.cli", "run", "--once"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    blocks = result.stdout.split("\nCASE ")
    jarnold = next(b for b in blocks if b.split("\n")[0].count("=jarnold ") and "Cross-source chain" in b)
    head = jarnold.split("\n")[0]
    assert "[critical]" in head and int(head.split(" alert(s)")[0].rsplit(" ", 1)[1]) >= 2  # the chain + more
    assert "\n    why: Cross-source chain" in jarnold


def test_a_sink_asking_for_something_else_is_a_config_error(tmp_path):
    from engine.config import ConfigError, load_config

    path = tmp_path / "c.yaml"
    path.write_text("alerts:\n  sinks:\n    - {type: console, deliver: sometimes}\n")
    with pytest.raises(ConfigError, match=r"alerts\.sinks\[0\]\.deliver: expected one of cases, alerts, both"):
        load_config(path)


def test_retention_removes_cases_with_their_alerts(store):  # noqa: F811
    old = [alert("a", {"user.name": "jdoe"}, at(9, day=2))]
    new = [alert("a", {"user.name": "jdoe"}, at(9, day=20))]
    commit(store, old + new)
    deliver_pending(store, [CaseBuilder(store, SETTINGS)])
    assert len(store.list_cases()) == 2
    store.purge_alerts(at(0, day=10))
    [kept] = store.list_cases()
    assert kept.period_start.startswith("2026-11-20")
    assert [c.id for c in store.pending_case_deliveries("s")] == [kept.id]


def _memberships_reference(a: Alert, s) -> list:
    """memberships() as first written (one generator per kind, no cached case ids): the plain path."""
    from engine.alerts.case_model import case_id
    from engine.alerts.cases import GROUP_SUBJECT, _period, _subject, account_name
    from engine.alerts.model import canonical_json

    anchor, start = _period(a.first_trigger, s.period_ms)
    kinds = s.by
    if a.rule_id in s.rule_by:
        kind_of = {f: kind for kind, fields in s.by.items() for f in fields} | dict(s.rule_kinds.get(a.rule_id, {}))
        kinds = {}
        for f in s.rule_by[a.rule_id]:
            kinds.setdefault(kind_of.get(f, f), ())
            kinds[kind_of.get(f, f)] += (f,)
    found = []
    for kind, fields in kinds.items():
        name = next((f for f in fields if a.group.get(f) not in (None, "")), None)
        if name is not None:
            value = a.group[name]
            subject = account_name(value) if kind == "user" and isinstance(value, str) else _subject(value)
            found.append((kind, subject, anchor, case_id(kind, subject, start), name))
    if not found:
        subject = canonical_json(a.group) if a.group else "-"
        found = [(GROUP_SUBJECT, subject, anchor, case_id(f"{GROUP_SUBJECT}:{a.rule_id}", subject, start),
                  GROUP_SUBJECT)]
    return found


_values = st.one_of(st.none(), st.just(""), st.just(0), st.booleans(), st.text(max_size=4),
                    st.lists(st.integers(0, 3), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(-2**53, 2**53), max_size=2))


@settings(max_examples=200, deadline=None)
@given(group=st.dictionaries(st.sampled_from(["user.name", "wardwatch.identity", "SubjectUserName", "ehr.patient.id",
                                              "source.ip", "TargetUserName"]), _values, max_size=5),
       rule=st.sampled_from(["a", "b"]), hour=st.integers(0, 23), by_rule=st.booleans())
def test_memberships_equal_the_plain_path_for_any_group(group, rule, hour, by_rule):
    settings_ = SETTINGS if not by_rule else case_settings({})
    if by_rule:
        settings_ = dataclasses.replace(SETTINGS, rule_by={"a": ("source.ip", "ehr.patient.id", "TargetUserName")},
                                        rule_kinds={"a": {"TargetUserName": "user"}})
    a = alert(rule, group, at(hour))
    assert memberships(a, settings_) == _memberships_reference(a, settings_)


def test_rules_test_applies_the_rule_files_suppression_as_the_service_does(tmp_path, capsys):
    """An analyst's `rules test` shows the alerts the service would raise: 5 reads -> 2 alerts (one per user,
    patient and hour, the rule file's `wardwatch.suppress`), and the site's `alerts.suppression` still wins."""
    from engine.cli import main

    config = cases_config(tmp_path)
    argv = ["--config", str(config), "rules", "test", str(tmp_path / "rules.yml"),
            "--events", str(tmp_path / "ehr.ndjson"), "--format", "json"]
    assert main(argv) == 0
    alerts = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(alerts) == 2
    assert main(["--config", str(config), "run", "--once"]) == 0
    assert "2 new or updated alert(s)" in capsys.readouterr().out  # the same number as the service

    (tmp_path / "site").mkdir()
    site = cases_config(tmp_path / "site", extra={"suppression": {"cases_test_read": {"by": ["user.name"],
                                                                                      "for": "1d"}}})
    assert main(["--config", str(site), "rules", "test", str(tmp_path / "site" / "rules.yml"),
                 "--events", str(tmp_path / "site" / "ehr.ndjson"), "--format", "json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
