"""``wardwatch alerts list|show|ack|assign|comment|close`` and ``exceptions list|remove`` through ``main``.

The analyst's view: the table shows id, status and assignee; every action takes an id prefix; a bad id,
reason or transition is one line and an exit code, never a traceback; ``alerts show`` has the history.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import audit
from engine.cli import main
from engine.commands.triage import time_arg
from engine.store import open_store
from engine.store.base import RuleCheckpoint
from tests.conftest import require_elasticsearch
from tests.store_fixtures import make_alert, ts


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sqlite_config(tmp_path: Path) -> tuple[Path, Path]:
    db = tmp_path / "w.db"
    config = tmp_path / "wardwatch.yaml"
    config.write_text(f"store:\n  sqlite:\n    path: {db}\nrules:\n  paths: []\nconnectors: []\n"
                      "alerts:\n  sinks: []\n  cases:\n    enabled: false\nlogging:\n  level: warning\n")
    return config, db


@pytest.fixture
def two_alerts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[Any]]:
    config, db = sqlite_config(tmp_path)
    alerts = [make_alert("r1", "user.name=kim", first=ts(0)), make_alert("r2", "user.name=lee", first=ts(0, hour=11))]
    with open_store("sqlite", path=db) as store:
        for alert in alerts:
            store.commit_rule_run(RuleCheckpoint(alert.rule_id), [alert])
    monkeypatch.setenv("WARDWATCH_ACTOR", "kim")
    return config, alerts


def test_triage_round_trip_on_the_command_line(two_alerts, capsys):
    config, (a, b) = two_alerts
    c = ["--config", str(config)]
    code, out, _ = run(capsys, *c, "alerts", "list", "--alerts")
    assert code == 0 and "status" in out and "assignee" in out and a.id[:12] in out and "new" in out
    assert run(capsys, *c, "alerts", "ack", a.id[:8])[1].startswith(f"alert {a.id}: acknowledged")
    assert run(capsys, *c, "alerts", "assign", a.id[:8], "lee", "--actor", "boss")[0] == 0
    assert run(capsys, *c, "alerts", "comment", a.id[:8], "VPN test account")[0] == 0
    code, out, _ = run(capsys, *c, "alerts", "list", "--alerts", "--status", "acknowledged", "--format", "json")
    [listed] = [orjson.loads(line) for line in out.splitlines()]
    assert (listed["id"], listed["status"], listed["assignee"]) == (a.id, "acknowledged", "lee")
    code, out, _ = run(capsys, *c, "alerts", "list", "--alerts", "--user", "lee", "--format", "json")
    assert [orjson.loads(line)["id"] for line in out.splitlines()] == [b.id]

    code, out, _ = run(capsys, *c, "alerts", "close", a.id[:8], "--reason", "benign", "--suppress", "30d",
                       "--justification", "kim tests the VPN daily")
    assert code == 0 and "closed" in out and "exception " in out and "user.name=kim" in out
    code, out, _ = run(capsys, *c, "alerts", "show", a.id[:8])
    assert code == 0
    assert "status: closed, assignee: lee, close reason benign" in out
    assert "kim: VPN test account" in out and "boss triage.assign assignee=lee" in out
    assert out.index("triage.acknowledge") < out.index("triage.assign") < out.index("triage.close")
    code, out, _ = run(capsys, *c, "alerts", "show", a.id, "--format", "json")
    view = orjson.loads(out)
    assert view["alert"]["status"] == "closed" and view["rule"]["id"] == "r1"
    assert [h["kind"] for h in view["history"]] == ["triage.acknowledge", "triage.assign", "triage.comment",
                                                    "triage.close"]

    code, out, _ = run(capsys, *c, "exceptions", "list", "--format", "json")
    [exc] = [orjson.loads(line) for line in out.splitlines()]
    assert (exc["rule_id"], exc["field"], exc["value"], exc["author"]) == ("r1", "user.name", "kim", "kim")
    assert "1 exception(s) in force" in run(capsys, *c, "exceptions", "list")[1]
    code, out, _ = run(capsys, *c, "exceptions", "remove", exc["id"][:8])
    assert code == 0 and "removed" in out
    assert run(capsys, *c, "exceptions", "list", "--all", "--format", "json")[1] == ""


@pytest.mark.parametrize("argv,code,message", [
    (["alerts", "ack", "ffffffffffff"], 1, "error: NotFound: no alert or case with id 'ffffffffffff'"),
    (["alerts", "close", "{a}", "--reason", "boring"], 2, "error: --reason 'boring' is not a close reason"),
    (["alerts", "close", "{a}", "--reason", "benign", "--suppress", "soon", "--justification", "j"], 2,
     "error: --suppress 'soon'"),
    (["alerts", "close", "{a}", "--reason", "benign", "--justification", "j"], 2, "error: --justification and --field only go with --suppress"),
    (["alerts", "list", "--alerts", "--status", "open"], 2, "error: --status 'open'"),
    (["alerts", "list", "--alerts", "--since", "yesterday-ish"], 2, "error: --since 'yesterday-ish'"),
    (["exceptions", "remove", "0123456789"], 1, "error: NotFound: no exception with id '0123456789'"),
])
def test_bad_input_is_one_line(two_alerts, capsys, argv, code, message):
    config, (a, _) = two_alerts
    argv = [word.replace("{a}", a.id) for word in argv]
    got, out, err = run(capsys, "--config", str(config), *argv)
    assert got == code and err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err, err


def test_a_closed_alert_refuses_more_in_one_line(two_alerts, capsys):
    config, (a, _) = two_alerts
    c = ["--config", str(config)]
    assert run(capsys, *c, "alerts", "close", a.id, "--reason", "duplicate")[0] == 0
    code, _, err = run(capsys, *c, "alerts", "ack", a.id)
    assert code == 2 and err == f"error: alert {a.id} is closed; acknowledging is not possible and reopen is not supported\n"


def test_case_ids_take_the_same_actions(tmp_path, capsys, monkeypatch):
    from engine.alerts.cases import CaseBuilder, case_settings

    config, db = sqlite_config(tmp_path)
    alert = make_alert("r1", "user.name=kim", first=ts(0))
    with open_store("sqlite", path=db) as store:
        store.commit_rule_run(RuleCheckpoint("r1"), [alert])
        CaseBuilder(store, case_settings({})).deliver([alert])
        [case] = store.list_cases()
    c = ["--config", str(config)]
    monkeypatch.setenv("WARDWATCH_ACTOR", "kim")
    assert run(capsys, *c, "alerts", "assign", case.id[:8], "lee")[1].startswith(f"case {case.id}: new, assignee lee")
    code, out, _ = run(capsys, *c, "alerts", "show", case.id[:8])
    assert code == 0 and f"case {case.id}" in out and "assignee: lee" in out and alert.id in out
    code, _, err = run(capsys, *c, "alerts", "close", case.id, "--reason", "benign", "--suppress", "30d",
                       "--justification", "j")
    assert code == 2 and "--suppress works on alert ids" in err


def test_triage_commands_on_elasticsearch(tmp_path, capsys, monkeypatch):
    url = require_elasticsearch()
    prefix = f"wwtest-triage-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "wardwatch.yaml"
    config.write_text(f"store:\n  kind: elasticsearch\n  elasticsearch:\n    hosts: [{url}]\n"
                      f"    index_prefix: {prefix}\nrules:\n  paths: []\nconnectors: []\n"
                      "alerts:\n  sinks: []\n  cases:\n    enabled: false\n")
    alert = make_alert("r1", "user.name=kim", first=ts(0))
    store = open_store("elasticsearch", hosts=[url], index_prefix=prefix)
    try:
        store.commit_rule_run(RuleCheckpoint("r1"), [alert])
        c = ["--config", str(config)]
        assert run(capsys, *c, "alerts", "ack", alert.id[:8], "--actor", "kim")[0] == 0
        assert run(capsys, *c, "alerts", "close", alert.id[:8], "--reason", "benign", "--suppress", "7d",
                   "--justification", "j", "--actor", "kim")[0] == 0
        code, out, _ = run(capsys, *c, "alerts", "list", "--alerts", "--status", "closed", "--format", "json")
        assert [orjson.loads(line)["id"] for line in out.splitlines()] == [alert.id]
        code, out, _ = run(capsys, *c, "alerts", "show", alert.id, "--format", "json")
        assert [h["kind"] for h in orjson.loads(out)["history"]] == ["triage.acknowledge", "triage.close"]
        assert len(run(capsys, *c, "exceptions", "list", "--format", "json")[1].splitlines()) == 1
    finally:
        # the CLI made the triage and audit indices in its own process: let this store object know them
        store._triage_schema()
        list(audit.entries(store, limit=1))
        store.delete_all()
        store.close()


_instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31),
                         timezones=st.just(timezone.utc))


@settings(max_examples=200, deadline=None)
@given(moment=_instants, form=st.sampled_from(["canonical", "seconds", "offset"]))
def test_time_arg_reads_iso_times_as_the_same_instant(moment, form):
    from engine.events import format_timestamp

    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    text = {"canonical": format_timestamp(moment),
            "seconds": moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "offset": moment.astimezone(timezone(timedelta(hours=-5))).isoformat()}[form]
    assert time_arg(text, "--since") == format_timestamp(moment)


@settings(max_examples=100, deadline=None)
@given(amount=st.integers(min_value=0, max_value=10_000), unit=st.sampled_from(["s", "m", "h", "d"]))
def test_time_arg_reads_a_duration_as_that_long_ago(amount, unit):
    from engine.events import format_timestamp

    now = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
    seconds = amount * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert time_arg(f"{amount}{unit}", "--since", now=now) == format_timestamp(now - timedelta(seconds=seconds))


def test_alerts_show_has_the_incident_deadlines(two_alerts, capsys, tmp_path):
    from engine import incidents

    config, (a, _) = two_alerts
    with open_store("sqlite", path=tmp_path / "w.db") as store:
        incidents.declare(store, a.id, actor="kim")
    code, out, _ = run(capsys, "--config", str(config), "alerts", "show", a.id[:8])
    assert code == 0 and "incident deadlines:" in out and "gdpr" in out and "nis2" in out
    code, out, _ = run(capsys, "--config", str(config), "alerts", "show", a.id, "--format", "json")
    assert {d["regime"] for d in orjson.loads(out)["deadlines"]} == {"gdpr", "nis2"}
