"""The command line as an analyst and an operator use it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from engine.cli import main

ROOT = Path(__file__).resolve().parent.parent
BTG_RULE = ROOT / "rules/healthcare/ehr_break_the_glass.yml"
VPN_RULES = ROOT / "rules/healthcare/vpn_bruteforce_then_success.yml"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_events(path: Path, events: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def test_help_lists_every_command():
    result = subprocess.run([sys.executable, "-m", "engine.cli", "--help"], capture_output=True, text=True)
    for command in ("run", "ingest", "rules", "alerts", "connectors", "status"):
        assert command in result.stdout


def test_rules_validate_ok_and_errors_name_file_and_key(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "rules", "validate", str(ROOT / "rules"))
    assert code == 0 and "0 error(s)" in out
    bad = tmp_path / "bad.yml"
    bad.write_text("title: Broken\nid: 11111111-2222-3333-4444-555555555555\nlogsource:\n  product: ehr\n"
                   "detection:\n  sel:\n    user.name|nosuchmodifier: x\n  condition: sel\nlevel: high\n")
    code, out, err = run_cli(capsys, "rules", "validate", str(tmp_path))
    assert code == 2
    assert str(bad) in err and "nosuchmodifier" in err


def test_rules_test_json_contract_for_matches(tmp_path, capsys):
    events = write_events(tmp_path / "e.jsonl", [
        {"@timestamp": "2026-11-02T10:00:00Z", "event.dataset": "ehr.audit", "ehr.break_the_glass": True,
         "user.name": "tbauer"},
        {"@timestamp": "2026-11-02T10:01:00Z", "event.dataset": "ehr.audit", "ehr.break_the_glass": False},
        {"@timestamp": "2026-11-02T10:02:00Z", "event": {"dataset": "ehr.audit", "id": "x-3"},
         "ehr": {"break_the_glass": True}},
    ])
    code, out, _ = run_cli(capsys, "rules", "test", str(BTG_RULE), "--events", str(events), "--format", "json")
    assert code == 0
    results = [orjson.loads(line) for line in out.splitlines()]
    assert [r["event_ids"] for r in results] == [["1"], ["x-3"]]
    first = results[0]
    assert set(first) == {"rule_id", "title", "kind", "event_ids", "group", "window"}
    assert first["kind"] == "match" and first["rule_id"] == "e01e3184-6e67-49af-bdce-e5811c4ed705"
    assert first["window"] == {"start": "2026-11-02T10:00:00.000Z", "end": "2026-11-02T10:00:00.000Z"}


def test_rules_test_runs_chained_correlations(tmp_path, capsys):
    events = [{"@timestamp": f"2026-11-02T20:30:{i:02d}Z", "event.dataset": "vpn.auth",
               "event.outcome": "failure", "user.name": "admin.huber", "event.id": f"f{i}",
               "event.category": ["authentication"], "event.action": "vpn-login"} for i in range(12)]
    events.append({"@timestamp": "2026-11-02T20:35:00Z", "event.dataset": "vpn.auth", "event.outcome": "success",
                   "user.name": "admin.huber", "event.id": "ok", "event.category": ["authentication"],
                   "event.action": "vpn-login"})
    # Another user: success first, failures after -> the order is wrong, no alert.
    events += [{**e, "user.name": "other", "event.id": "o" + e["event.id"],
                "@timestamp": e["@timestamp"].replace("20:3", "21:3")} for e in events[:12]]
    events.append({**events[12], "user.name": "other", "event.id": "o-ok", "@timestamp": "2026-11-02T21:20:00Z"})
    path = write_events(tmp_path / "vpn.jsonl", events)
    code, out, _ = run_cli(capsys, "rules", "test", str(VPN_RULES), "--events", str(path), "--format", "json")
    results = [orjson.loads(line) for line in out.splitlines()]
    assert code == 0 and len(results) == 1
    assert results[0]["kind"] == "correlation" and results[0]["group"] == {"user.name": "admin.huber"}
    assert "ok" in results[0]["event_ids"] and "f0" in results[0]["event_ids"]


def test_rules_test_reports_bad_event_lines(tmp_path, capsys):
    path = tmp_path / "e.jsonl"
    path.write_text('{"event.dataset": "ehr.audit"}\nnot json\n')
    code, _, err = run_cli(capsys, "rules", "test", str(BTG_RULE), "--events", str(path))
    assert code == 2 and f"{path}:2: invalid JSON" in err


def test_rules_explain_says_why(capsys):
    event = '{"event.dataset": "ehr.audit", "ehr.break_the_glass": false}'
    code, out, _ = run_cli(capsys, "rules", "explain", str(BTG_RULE), "--event", event)
    assert code == 1 and "ehr.break_the_glass" in out
    code, out, _ = run_cli(capsys, "rules", "explain", "ehr_break_the_glass", "--event",
                           '{"event": {"dataset": "ehr.audit"}, "ehr.break_the_glass": true}', "--format", "json")
    assert code == 0 and orjson.loads(out)


def test_rules_convert_shows_the_store_query(capsys):
    code, out, _ = run_cli(capsys, "rules", "convert", str(BTG_RULE), "--store", "elasticsearch")
    assert code == 0 and "break_the_glass" in out and "ehr.audit" in out
    code, out, _ = run_cli(capsys, "rules", "convert", "EHR break-the-glass access", "--store", "sqlite")
    assert code == 0 and "break_the_glass" in out


def test_unknown_rule_is_a_clear_error(capsys):
    code, _, err = run_cli(capsys, "rules", "convert", "no-such-rule", "--store", "sqlite")
    assert code == 2 and "no rule with id, name or title 'no-such-rule'" in err


def test_ingest_alerts_list_and_status(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wardwatch.yaml").write_text(f"store:\n  sqlite:\n    path: {tmp_path}/w.db\n"
                                             f"rules:\n  paths: [{ROOT}/rules/healthcare]\nconnectors: []\n"
                                             f"alerts:\n  sinks: []\n")
    code, out, _ = run_cli(capsys, "ingest", "ndjson", str(ROOT / "fixtures/vpn"), "-o", "dataset=vpn.auth")
    assert code == 0 and "66 events read, 66 stored, 0 duplicates" in out
    code, out, _ = run_cli(capsys, "ingest", "ndjson", str(ROOT / "fixtures/vpn"), "-o", "dataset=vpn.auth")
    assert "0 events read" in out  # the cursor remembers
    code, out, _ = run_cli(capsys, "run", "--once")
    assert code == 0 and "1 new or updated alert(s)" in out
    code, out, _ = run_cli(capsys, "alerts", "list", "--alerts", "--format", "json")
    alerts = [orjson.loads(line) for line in out.splitlines()]
    assert [a["group"] for a in alerts] == [{"user.name": "admin.huber"}]
    code, out, _ = run_cli(capsys, "status")
    status = orjson.loads(out)
    assert status["watermark"] is not None and status["dead_letters"] == []


def test_bad_config_exits_2_with_key(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("scheduler:\n  rule_interval: often\n")
    code, _, err = run_cli(capsys, "--config", str(config), "alerts", "list")
    assert code == 2 and "scheduler.rule_interval" in err and str(config) in err


def test_connectors_list_shows_builtins(capsys):
    code, out, _ = run_cli(capsys, "connectors", "list")
    assert code == 0
    for name in ("ndjson", "fhir-auditevent-file"):
        assert name in out


GENERATE_RULES = """title: Failed login
id: 5f0e6a51-1c2b-4c55-9d0e-2a1b3c4d5e6f
name: failed_login
logsource:
    product: vpn
detection:
    sel:
        event.outcome: failure
    condition: sel
level: low
---
title: Many failed logins
id: 6a1f7b62-2d3c-4d66-8e1f-3b2c4d5e6f70
correlation:
    type: event_count
    rules:
        - failed_login
    group-by:
        - user.name
    timespan: 5m
    condition:
        gte: 3
    generate: {generate}
level: high
"""


@pytest.mark.parametrize("generate", [True, False])
def test_generate_true_also_emits_the_referenced_rules_matches(tmp_path, capsys, generate):
    rules = tmp_path / "rules.yml"
    rules.write_text(GENERATE_RULES.replace("{generate}", str(generate).lower()))
    events = write_events(tmp_path / "e.jsonl", [
        {"@timestamp": f"2026-11-02T10:00:0{i}Z", "event.dataset": "vpn.auth", "event.outcome": "failure",
         "user.name": "u1", "event.id": f"f{i}"} for i in range(3)])
    code, out, _ = run_cli(capsys, "rules", "test", str(rules), "--events", str(events), "--format", "json")
    results = [orjson.loads(line) for line in out.splitlines()]
    kinds = sorted(r["kind"] for r in results)
    assert code == 0
    assert kinds == (["correlation", "match", "match", "match"] if generate else ["correlation"])


def test_ingest_fills_each_connectors_source_option(tmp_path, capsys, monkeypatch):
    """`wardwatch ingest TYPE SOURCE`: SOURCE is a path, a base URL or a spool dir, as the type needs."""
    from connectors.base import connector_class

    assert connector_class("fhir-auditevent").source_option == "base_url"
    assert connector_class("atna-syslog").source_option == "spool_dir"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wardwatch.yaml").write_text(f"store:\n  sqlite:\n    path: {tmp_path}/w.db\nconnectors: []\n"
                                             f"alerts:\n  sinks: []\n")
    code, out, _ = run_cli(capsys, "ingest", "atna-syslog", "spool")  # relative: made absolute (a path option)
    assert code == 0 and "0 events read" in out and (tmp_path / "spool").is_dir()
    # an index pattern is not a path: it reaches the connector as typed (here: no cluster listens)
    code, out, err = run_cli(capsys, "ingest", "elasticsearch-source", "logs-system.security-*",
                             "-o", "hosts=[http://127.0.0.1:9]", "-o", "request_timeout=1")
    assert code == 1 and "logs-system.security-*" not in out + err.replace("'logs-system.security-*'", "")
    assert "index name or pattern" not in err and "Traceback" not in err


def test_unreachable_elasticsearch_is_one_clear_line_and_exit_1(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "c.yaml"
    config.write_text(f"store:\n  kind: elasticsearch\n  elasticsearch:\n    hosts: [http://127.0.0.1:{port}]\n"
                      f"    max_retries: 0\n    request_timeout: 2\nconnectors: []\n")
    code, out, err = run_cli(capsys, "--config", str(config), "run", "--once")
    assert code == 1
    assert err.startswith("error: StoreUnavailable: cannot reach Elasticsearch") and "Traceback" not in err


# --- expected failures: one line, no traceback, a documented exit code --------------------------------

def _cli(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    """The real CLI in a fresh process (so a traceback would really reach stderr), run in ``tmp_path``."""
    return subprocess.run([sys.executable, "-m", "engine.cli", *argv], capture_output=True, text=True,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}, timeout=60)


def _config_file(tmp_path: Path, body: str = "", store: str = "", connectors: str = " []") -> str:
    path = tmp_path / "c.yaml"
    path.write_text(f"rules:\n  paths: [{ROOT}/rules]\nstore:\n{store}  sqlite:\n    path: {tmp_path}/w.db\n"
                    f"connectors:{connectors}\nalerts:\n  sinks: []\n{body}")
    return str(path)


def _es(**options: str) -> str:
    return "  kind: elasticsearch\n  elasticsearch:\n" + "".join(f"    {k}: {v}\n" for k, v in options.items())


# case -> (argv in a tmp dir, exit code, what the one stderr line must name)
EXPECTED_FAILURES = {
    "missing --events file": (lambda t, _busy: ["rules", "test", str(BTG_RULE), "--events", f"{t}/missing.jsonl"],
                              2, "missing.jsonl"),
    "--events is a directory": (lambda t, _busy: ["rules", "test", str(BTG_RULE), "--events", str(t)], 2,
                                "is a directory"),
    "--event @missing.json": (lambda t, _busy: ["rules", "explain", str(BTG_RULE), "--event", f"@{t}/missing.json"],
                              2, "missing.json"),
    "unreadable rules path (a symlink loop)": (lambda t, _busy: ["rules", "validate", f"{t}/loop"], 2, "loop"),
    "unreadable connector path on the CLI": (lambda t, _busy: ["--config", _config_file(t), "ingest", "ndjson",
                                                               f"{t}/loop", "-o", "dataset=x"], 1, "loop"),
    "missing secret file": (lambda t, _busy: ["--config", _config_file(t, store=_es(
        username="elastic", password_file=f"{t}/no-password")), "run", "--once"], 2, "no-password"),
    "missing CA file (Elasticsearch)": (lambda t, _busy: ["--config", _config_file(t, store=_es(
        ca_certs=f"{t}/no-ca.pem")), "run", "--once"], 2, "no-ca.pem"),
    "missing CA file (FHIR connector)": (lambda t, _busy: ["--config", _config_file(t, connectors=(
        "\n  - name: fhir\n    type: fhir-auditevent\n    base_url: https://fhir.example.org/fhir\n"
        f"    ca_certs: {t}/no-ca.pem")), "run", "--once"], 2, "no-ca.pem"),
    "HTTP port out of range": (lambda t, _busy: ["--config", _config_file(t, "service:\n  http:\n    port: 70000\n"),
                                          "run", "--once"], 2, "port"),
    "HTTP port in use": (lambda t, busy: ["--config", _config_file(t, f"service:\n  http:\n    port: {busy}\n"
                                                                "logging:\n  level: warning\n"),
                                          "run"], 1, "127.0.0.1:{busy}"),
}


@pytest.mark.parametrize("case", list(EXPECTED_FAILURES))
def test_expected_failures_are_one_line_without_traceback(tmp_path, case):
    argv, code, names = EXPECTED_FAILURES[case]
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with socket.socket() as busy:  # a port something else listens on
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _cli(tmp_path, *argv(tmp_path, port))
    names = names.replace("{busy}", str(port))
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert names in lines[0] and result.returncode == code, (result.returncode, result.stderr)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod-000 directory anyway")
def test_unreadable_rules_directory_is_named_not_skipped(tmp_path):
    locked = tmp_path / "rules" / "locked"
    locked.mkdir(parents=True)
    (locked / "r.yml").write_text(BTG_RULE.read_text())
    locked.chmod(0)
    try:
        result = _cli(tmp_path, "rules", "validate", str(tmp_path / "rules"))
    finally:
        locked.chmod(0o700)
    assert result.returncode == 2 and str(locked) in result.stderr and "Traceback" not in result.stderr


def test_an_unexpected_error_is_one_line_and_its_traceback_only_with_verbose(tmp_path, capsys, monkeypatch):
    import engine.cli as cli

    def broken(_args):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(cli, "cmd_connectors_list", broken)
    code, _, err = run_cli(capsys, "connectors", "list")
    assert code == 1 and err.strip().splitlines() == [
        "error: unexpected ZeroDivisionError: boom (run with -v for the traceback)"]
    code, _, err = run_cli(capsys, "connectors", "list", "-v")
    assert code == 1 and "Traceback" in err and "ZeroDivisionError: boom" in err


# --- what the docs promise -------------------------------------------------------------------------

def test_rules_check_is_validate(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "rules", "check", str(ROOT / "rules"))
    assert code == 0 and "0 error(s)" in out


def test_rules_test_takes_several_event_files(tmp_path, capsys):
    """docs/rules-pack.md: one run over the VPN and the Windows fixtures finds both correlations."""
    vpn, windows = ROOT / "fixtures/vpn/vpn-auth.ndjson", ROOT / "fixtures/windows/security.ndjson"
    code, out, _ = run_cli(capsys, "rules", "test", str(ROOT / "rules"),
                           "--events", str(vpn), str(windows), "--format", "json")
    assert code == 0
    titles = sorted(orjson.loads(line)["title"] for line in out.splitlines())
    assert titles == ["Kerberoasting: RC4 service tickets for many SPNs",
                      "Many failed VPN logins for one user (account lockout precursor)",
                      "VPN brute force followed by successful login",
                      "VPN login from a watched country"]
    code, repeated, _ = run_cli(capsys, "rules", "test", str(ROOT / "rules"),
                                "--events", str(vpn), "--events", str(windows), "--format", "json")
    assert code == 0 and repeated == out


def test_rules_test_ids_do_not_collide_across_event_files(tmp_path, capsys):
    event = {"@timestamp": "2026-11-02T10:00:00Z", "event.dataset": "ehr.audit", "ehr.break_the_glass": True}
    first, second = write_events(tmp_path / "a.jsonl", [event]), write_events(tmp_path / "b.jsonl", [event])
    code, out, _ = run_cli(capsys, "rules", "test", str(BTG_RULE), "--events", str(first), str(second),
                           "--format", "json")
    assert code == 0
    assert [orjson.loads(line)["event_ids"] for line in out.splitlines()] == [[f"{first}:1"], [f"{second}:1"]]


@pytest.mark.parametrize("position", ["before", "after"])
def test_config_and_verbose_work_before_and_after_the_subcommand(tmp_path, capsys, position):
    config = tmp_path / "c.yaml"
    config.write_text("scheduler:\n  rule_interval: often\n")
    options = ["--config", str(config), "-v"]
    argv = [*options, "alerts", "list"] if position == "before" else ["alerts", "list", *options]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and str(config) in err and "scheduler.rule_interval" in err
    from engine.cli import build_parser

    args = build_parser().parse_args(argv)
    assert args.config == str(config) and args.verbose is True
    defaults = build_parser().parse_args(["alerts", "list"])
    assert defaults.config is None and defaults.verbose is False


def test_alerts_list_rule_accepts_id_name_title_or_file_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wardwatch.yaml").write_text(f"store:\n  sqlite:\n    path: {tmp_path}/w.db\n"
                                             f"rules:\n  paths: [{ROOT}/rules/healthcare]\nconnectors: []\n"
                                             f"alerts:\n  sinks: []\nlogging:\n  level: warning\n")
    run_cli(capsys, "ingest", "ndjson", str(ROOT / "fixtures/vpn"), "-o", "dataset=vpn.auth")
    run_cli(capsys, "run", "--once")
    code, out, _ = run_cli(capsys, "alerts", "list", "--alerts", "--format", "json")
    [alert] = [orjson.loads(line) for line in out.splitlines()]
    for ref in (alert["rule_id"], "vpn_bruteforce_then_success", "VPN brute force followed by successful login",
                "vpn_bruteforce_then_success.yml"):
        code, out, _ = run_cli(capsys, "alerts", "list", "--alerts", "--rule", ref, "--format", "json")
        assert code == 0 and [orjson.loads(line)["id"] for line in out.splitlines()] == [alert["id"]], ref
    code, out, _ = run_cli(capsys, "alerts", "list", "--alerts", "--rule", "ehr_break_the_glass", "--format", "json")
    assert code == 0 and out == ""


def test_rules_explain_a_correlation_shows_it_and_its_base_rules(capsys):
    failure = {"event.dataset": "vpn.auth", "event.action": "vpn-login", "event.category": ["authentication"],
               "event.outcome": "failure",
               "user.name": "admin.huber"}
    code, out, _ = run_cli(capsys, "rules", "explain", str(VPN_RULES), "--event", orjson.dumps(failure).decode())
    assert code == 0  # the event counts towards the correlation (it matches a base rule)
    assert "correlation temporal_ordered" in out and "group-by: user.name" in out and "timespan: 30m" in out
    assert "condition: event_count >= 10" in out  # the chained vpn_bruteforce, explained in turn
    assert "VPN login failure [937494b0-f415-4c4b-8612-6fb63c25bd25]: MATCH" in out
    assert "VPN login success [bd96474f-0597-4269-b0f4-ccccaf41250e]: no match" in out
    code, out, _ = run_cli(capsys, "rules", "explain", "vpn_bruteforce", "--event", "{}", "--format", "json")
    explanation = orjson.loads(out)
    assert code == 1 and explanation["kind"] == "correlation" and explanation["condition"] == {"gte": 10}
    assert [base["title"] for base in explanation["base"]] == ["VPN login failure"]


def test_rules_convert_a_correlation_converts_each_base_rule(capsys):
    code, out, _ = run_cli(capsys, "rules", "convert", "vpn_bruteforce_then_success", "--store", "sqlite")
    assert code == 0
    assert "# VPN brute force followed by successful login [590d4d5a" in out
    assert "`event.outcome`='failure'" in out and "`event.outcome`='success'" in out
    code, out, _ = run_cli(capsys, "rules", "convert", str(ROOT / "rules/windows/windows_kerberoasting.yml"),
                           "--store", "elasticsearch")
    assert code == 0 and "value_count(ServiceName) >= 5" in out and "-> elasticsearch" in out


def test_run_once_shows_the_most_severe_alerts_first_when_there_are_many(tmp_path, capsys, monkeypatch):
    """A first run over a backlog can raise thousands of alerts: the terminal table keeps the 50 most
    severe (a critical one is never pushed out by a flood of low ones); `alerts list --alerts` has all."""
    from engine.cli import RUN_ONCE_TABLE_ROWS

    monkeypatch.chdir(tmp_path)
    events = [{"@timestamp": f"2026-11-02T10:{i // 60:02d}:{i % 60:02d}Z", "event.dataset": "ehr.audit",
               "user.name": f"user{i:03d}", "event.action": "read"} for i in range(RUN_ONCE_TABLE_ROWS + 20)]
    events[-1]["event.action"] = "delete"
    write_events(tmp_path / "events.ndjson", events)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yml").write_text(
        "title: Every read\nid: 0f0c1e2a-5b7d-4c8e-9a10-000000000001\nlevel: low\nlogsource:\n  product: ehr\n"
        "detection:\n  sel:\n    event.action: read\n  condition: sel\n---\n"
        "title: A delete\nid: 0f0c1e2a-5b7d-4c8e-9a10-000000000002\nlevel: critical\nlogsource:\n  product: ehr\n"
        "detection:\n  sel:\n    event.action: delete\n  condition: sel\n")
    (tmp_path / "wardwatch.yaml").write_text(
        f"store:\n  sqlite:\n    path: {tmp_path}/w.db\nrules:\n  paths: [{rules}]\n"
        f"connectors:\n  - {{name: e, type: ndjson, path: {tmp_path}/events.ndjson}}\nalerts:\n  sinks: []\n")
    code, out, _ = run_cli(capsys, "run", "--once")
    assert code == 0
    table = out.split("case(s) in the store")[0]
    assert f"{RUN_ONCE_TABLE_ROWS + 20} new or updated alert(s) in this run, the {RUN_ONCE_TABLE_ROWS} most severe" \
        in " ".join(table.split())
    assert "A delete" in table and table.count("Every read") == RUN_ONCE_TABLE_ROWS - 1
    code, out, _ = run_cli(capsys, "alerts", "list", "--alerts", "--format", "json")
    assert code == 0 and len(out.splitlines()) == RUN_ONCE_TABLE_ROWS + 20


def test_status_shows_the_newest_dead_letters_first(tmp_path, capsys, monkeypatch):
    """A SOC runs ``wardwatch status`` when alerts look wrong: the dead letters it shows must be today's
    failure, not the first twenty ever kept (it once listed the oldest)."""
    from engine.store import open_store
    from engine.store.base import DeadLetter

    monkeypatch.chdir(tmp_path)
    (tmp_path / "wardwatch.yaml").write_text(f"store:\n  sqlite:\n    path: {tmp_path}/w.db\n"
                                             f"rules:\n  paths: [{ROOT}/rules/healthcare]\nconnectors: []\n"
                                             f"alerts:\n  sinks: []\n")
    store = open_store("sqlite", path=tmp_path / "w.db")
    for n in range(30):
        store.dead_letter([DeadLetter(source="ehr-csv:ehr", reason="no timestamp", location=f"ehr.csv:{n + 2}",
                                      raw=f"row {n}")])
    store.close()
    code, out, _ = run_cli(capsys, "status")
    shown = orjson.loads(out)["dead_letters"]
    assert code == 0 and [d["location"] for d in shown] == [f"ehr.csv:{n + 2}" for n in range(29, 9, -1)]
