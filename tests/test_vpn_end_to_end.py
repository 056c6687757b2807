"""Each VPN connector type end to end, as an operator runs it: a vendor fixture from a file through the real
CLI into a SQLite store and the rule pack, the same lines over a real TLS syslog socket (RFC 5425), and
`wardwatch parse` on every fixture line.

The scenario users and addresses come from each fixture's generator (fixtures/vpn-<vendor>/generate*.py).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.base import connector_class
from engine.cli import main
from tests.net_helpers import read_until, send_tls_lines, server_cert_files

ROOT = Path(__file__).resolve().parent.parent

FIXTURES = {
    "cisco-asa": ROOT / "fixtures/vpn-cisco_asa/cisco_asa.log",
    "fortigate": ROOT / "fixtures/vpn-fortigate/fortigate.log",
    "globalprotect": ROOT / "fixtures/vpn-globalprotect/globalprotect.log",
    "openvpn": ROOT / "fixtures/vpn-openvpn/openvpn.log",
}
TYPES = list(FIXTURES)

SPRAY = "0c6f1f4e-6a43-4b43-9d0e-6a1d1b7e2a02"          # rules/vpn/vpn_password_spray.yml
CONCURRENT = "0c6f1f4e-6a43-4b43-9d0e-6a1d1b7e2a05"     # rules/vpn/vpn_concurrent_sessions.yml
FAILED_BURST = "0c6f1f4e-6a43-4b43-9d0e-6a1d1b7e2a0b"   # rules/vpn/vpn_failed_login_burst.yml
BRUTE_THEN_OK = "590d4d5a-d426-4ccd-bfed-1c8f896d60f4"  # rules/healthcare/vpn_bruteforce_then_success.yml

# The alert groups each fixture gives for the scenario rules (a list: one entry per alert, sorted).
# Brute force then success needs >= 10 failures in 10 minutes: every fixture has 12 failures for admin.huber
# within about 3 minutes, then a success (GlobalProtect also 7 more on the legacy gateway 20 minutes later;
# FortiGate also failed admin GUI logins 50 minutes later, hence its three failed-login bursts).
# Concurrent sessions: VPN session starts (event.category session) from two addresses within 30 minutes.
# Firewall admin logins (FortiGate admin.roth on the GUI) are authentication only and not counted, and the
# ordinary traffic never has one user's sessions overlap, so only the scenario users alert.
HUBER = {"user.name": "admin.huber"}
EXPECTED: dict[str, dict[str, list[dict[str, str]]]] = {
    "cisco-asa": {
        SPRAY: [{"source.ip": "203.0.113.250"}],
        CONCURRENT: [{"user.name": "dr.lindner"}],
        FAILED_BURST: [HUBER],
        BRUTE_THEN_OK: [HUBER],
    },
    "fortigate": {
        SPRAY: [{"source.ip": "203.0.113.166"}],
        CONCURRENT: [{"user.name": "kmarx"}],
        FAILED_BURST: [HUBER] * 3,
        BRUTE_THEN_OK: [HUBER],
    },
    "globalprotect": {
        SPRAY: [{"source.ip": "203.0.113.23"}] * 2,
        CONCURRENT: [{"user.name": "mpeters"}],
        FAILED_BURST: [HUBER] * 2,
        BRUTE_THEN_OK: [HUBER],
    },
    "openvpn": {
        SPRAY: [{"source.ip": "203.0.113.99"}],
        CONCURRENT: [{"user.name": "dr.lindner"}],
        FAILED_BURST: [HUBER],
        BRUTE_THEN_OK: [HUBER],
    },
}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def fixture_lines(type_name: str) -> list[str]:
    return FIXTURES[type_name].read_text(encoding="utf-8").splitlines()


def file_events(type_name: str) -> list[dict[str, Any]]:
    """The fixture read by the connector from its file, every line (checked: one event per line)."""
    conn = connector_class(type_name)(f"file-{type_name}", {"path": str(FIXTURES[type_name]),
                                                            "timezone": "Europe/Berlin"})
    batch = conn.read(None, 100_000)
    conn.close()
    assert batch.dead_letters == []
    return batch.events


def comparable(event: dict[str, Any]) -> dict[str, Any]:
    """ECS fields that must not depend on the transport (file or TLS socket): all but the event's id (from
    the position) and log.* (syslog header, sender)."""
    return {k: v for k, v in event.items() if k != "event.id" and not k.startswith("log.")}


@pytest.mark.parametrize("type_name", TYPES)
def test_file_ingest_and_rules_through_the_cli(type_name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wardwatch.yaml").write_text(f"store:\n  sqlite:\n    path: {tmp_path}/w.db\n"
                                             f"rules:\n  paths: [{ROOT}/rules]\nconnectors: []\n"
                                             f"alerts:\n  sinks: []\nlogging:\n  level: warning\n")
    lines = len(fixture_lines(type_name))
    fixture = str(FIXTURES[type_name])
    code, out, _ = run_cli(capsys, "ingest", type_name, fixture, "-o", "timezone=Europe/Berlin")
    assert code == 0
    assert f": {lines} events read, {lines} stored, 0 duplicates, 0 dead letters" in out
    code, out, _ = run_cli(capsys, "ingest", type_name, fixture, "-o", "timezone=Europe/Berlin")
    assert code == 0 and "0 events read, 0 stored" in out

    code, out, _ = run_cli(capsys, "status")
    assert code == 0 and orjson.loads(out)["dead_letters"] == []
    with closing(sqlite3.connect(tmp_path / "w.db")) as db:
        assert db.execute("SELECT count(*) FROM events").fetchone() == (lines,)
        assert db.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)

    code, out, _ = run_cli(capsys, "run", "--once")
    assert code == 0
    code, out, _ = run_cli(capsys, "alerts", "list", "--alerts", "--format", "json")
    assert code == 0
    alerts = [orjson.loads(line) for line in out.splitlines()]
    key = lambda g: sorted(g.items())  # noqa: E731
    got = {rule: sorted((a["group"] for a in alerts if a["rule_id"] == rule), key=key)
           for rule in EXPECTED[type_name]}
    assert got == {rule: sorted(groups, key=key) for rule, groups in EXPECTED[type_name].items()}


@pytest.mark.parametrize("type_name", TYPES)
def test_tls_listener_gives_the_same_events_as_the_file(type_name, tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    certfile, keyfile = server_cert_files(ca, tmp_path, split_key=True)

    lines = fixture_lines(type_name)
    by_file = file_events(type_name)
    assert len(by_file) == len(lines)
    step = len(lines) // 50
    picked = list(range(0, step * 50, step))  # 50 lines spread over the whole fixture
    assert len(picked) == 50

    conn = connector_class(type_name)(f"tls-{type_name}", {
        "spool_dir": str(tmp_path / "spool"), "timezone": "Europe/Berlin",
        "listen": [{"host": "127.0.0.1", "port": 0, "certfile": certfile, "keyfile": keyfile}]})
    conn.start()
    try:
        (protocol, _, port), = conn.addresses
        assert protocol == "tls"
        send_tls_lines("127.0.0.1", port, [lines[i].encode("utf-8") for i in picked], ca, framing="octet")
        batch = read_until(lambda: conn.read(None, 1000), 50)
    finally:
        conn.close()
    assert batch.dead_letters == []
    assert len(batch.events) == 50
    # network.transport/protocol describe the VPN session where the vendor logs them (ASA 722022: a UDP/DTLS
    # tunnel; 605004: an SSH management login); only where the parser set none do they say how the frame
    # arrived.
    expected = [{"network.transport": "tcp", "network.protocol": "syslog-tls", **comparable(by_file[i])}
                for i in picked]
    assert [comparable(e) for e in batch.events] == expected


@pytest.mark.parametrize("type_name", TYPES)
def test_parse_json_gives_an_event_with_a_code_per_line(type_name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./wardwatch.yaml: the built-in defaults
    code, out, _ = run_cli(capsys, "parse", type_name, str(FIXTURES[type_name]), "--format", "json")
    assert code == 0
    events = [orjson.loads(line) for line in out.splitlines()]
    assert len(events) == len(fixture_lines(type_name))
    assert all(e.get("event.code") for e in events)
    assert [e["event.original"] for e in events] == fixture_lines(type_name)


def test_a_store_with_old_ids_is_refused_for_ingest_but_status_and_alerts_list_read_it(tmp_path, capsys,
                                                                                        monkeypatch):
    """A store from before event-id scheme 2: ingest (a write) is refused as before; `status` and `alerts
    list` only read, so they work and print the refusal as one warning line on stderr."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wardwatch.yaml").write_text(f"store:\n  sqlite:\n    path: {tmp_path}/w.db\n"
                                             f"rules:\n  paths: [{ROOT}/rules]\nconnectors: []\n"
                                             f"alerts:\n  sinks: []\nlogging:\n  level: warning\n")
    fixture = str(FIXTURES["openvpn"])
    assert run_cli(capsys, "ingest", "openvpn", fixture, "-o", "timezone=Europe/Berlin")[0] == 0
    assert run_cli(capsys, "run", "--once")[0] == 0
    _, listed, _ = run_cli(capsys, "alerts", "list", "--alerts", "--format", "json")
    with closing(sqlite3.connect(tmp_path / "w.db")) as db, db:  # what a store written before scheme 2 looks like
        db.execute("DELETE FROM meta WHERE key = 'event_id_scheme'")
    refusal = (f"{tmp_path}/w.db: events were written with connector-named ids (scheme 1); "
               "delete the store and ingest again (see docs/sqlite.md)")

    code, out, err = run_cli(capsys, "ingest", "openvpn", fixture, "-o", "timezone=Europe/Berlin")
    assert code == 1 and err.strip().splitlines()[-1].endswith(refusal)

    code, out, err = run_cli(capsys, "alerts", "list", "--alerts", "--format", "json")
    assert code == 0 and out == listed and len(out.splitlines()) >= 4
    assert err.strip().splitlines() == [f"warning: {refusal}"]

    code, out, err = run_cli(capsys, "status")
    assert code == 0 and orjson.loads(out)["store"]["ok"] is not None
    assert err.strip().splitlines() == [f"warning: {refusal}"]
    with closing(sqlite3.connect(tmp_path / "w.db")) as db:  # reading did not "fix" (or touch) the store
        assert db.execute("SELECT value FROM meta WHERE key = 'event_id_scheme'").fetchone() is None
