"""The shared VPN layer (connectors/vpn/base.py) as a user sees it: syslog files and a TLS listener in,
ECS events out, bad lines dead-lettered with their position. Uses a tiny parser (tests/vpn_fake_parser.py)
so it does not depend on any vendor module."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import pytest

from connectors.base import Batch, ConnectorConfigError, connector_class
from connectors.vpn.base import VpnConnector, header_time, parse_timezone
from engine.errors import SourceUnavailable
from tests.net_helpers import read_until, send_tls_lines, server_cert_files


class FakeVpnConnector(VpnConnector):
    type_name: ClassVar[str] = "fake-vpn"
    parser_module: ClassVar[str] = "tests.vpn_fake_parser"


def make(tmp_path: Path, **options: Any) -> FakeVpnConnector:
    options.setdefault("path", str(tmp_path / "vpn.log"))
    return FakeVpnConnector("vpn1", options)


def read(conn: VpnConnector, cursor: dict | None = None, max_events: int = 10000) -> Batch:
    return conn.read(cursor, max_events)


def test_vendor_types_are_registered_and_import_their_parser_lazily() -> None:
    for name in ("cisco-asa", "fortigate", "globalprotect", "openvpn"):
        cls = connector_class(name)
        assert issubclass(cls, VpnConnector) and cls.type_name == name
        assert cls.parser_module.startswith("connectors.vpn.")


def test_connectors_list_shows_each_vendor_summary_and_class_names_stay(capsys) -> None:
    """The four types are built from one table (connectors/vpn/connectors.py): the entry-point targets in
    pyproject.toml name these classes, and `wardwatch connectors list` shows each one's own line."""
    import pickle

    from connectors.vpn import connectors as vpn
    from engine.cli import main

    assert main(["connectors", "list"]) == 0
    listed = {line.split()[0]: line.split(None, 1)[1] for line in capsys.readouterr().out.splitlines()
              if line.strip()}
    for class_name, type_name, vendor in (("CiscoAsaConnector", "cisco-asa", "Cisco ASA/FTD"),
                                          ("FortiGateConnector", "fortigate", "FortiGate"),
                                          ("GlobalProtectConnector", "globalprotect", "GlobalProtect"),
                                          ("OpenVpnConnector", "openvpn", "OpenVPN")):
        cls = getattr(vpn, class_name)
        assert connector_class(type_name) is cls and cls.__name__ == class_name
        assert pickle.loads(pickle.dumps(cls)) is cls
        assert vendor in listed[type_name] and listed[type_name] == cls.summary


def test_missing_parser_module_fails_only_that_type(tmp_path: Path) -> None:
    class Missing(VpnConnector):
        type_name: ClassVar[str] = "missing-vpn"
        parser_module: ClassVar[str] = "connectors.vpn.no_such_vendor"

    with pytest.raises(ConnectorConfigError, match="no_such_vendor"):
        Missing("m", {"path": str(tmp_path)})


@pytest.mark.parametrize("options, key", [
    ({}, "path"),
    ({"path": "/x", "spool_dir": "/y"}, "path"),
    ({"path": "/x", "timezone": "Mars/Olympus"}, "timezone"),
    ({"path": "/x", "listen": [{"protocol": "tcp", "port": 0}]}, "spool_dir"),
    ({"spool_dir": "/y", "listen": [{"port": 6514}]}, "listen"),  # TLS by default: needs a certfile
    ({"path": "/x", "datasett": "vpn"}, "datasett"),
])
def test_bad_options_name_the_key(options: dict, key: str) -> None:
    with pytest.raises(ConnectorConfigError, match=key):
        FakeVpnConnector("vpn1", options)


def test_time_zones_and_header_times() -> None:
    berlin = parse_timezone("Europe/Berlin")
    assert header_time("Dec  1 10:00:00", berlin, 2026).isoformat() == "2026-12-01T09:00:00+00:00"
    assert header_time("Jul  1 10:00:00", parse_timezone("-05:00"), 2026).isoformat() == "2026-07-01T15:00:00+00:00"
    assert header_time("Mar 05 2025 10:00:00", berlin, 2026).year == 2025  # Cisco's stamp keeps its year
    assert header_time("2026-03-01T12:00:00.5+01:00", berlin, 1999).isoformat() == "2026-03-01T11:00:00.500000+00:00"
    assert header_time("garbage", berlin, 2026) is None
    from datetime import datetime, timezone
    january = datetime(2027, 1, 2, tzinfo=timezone.utc)
    assert header_time("Dec 31 23:00:00", timezone.utc, 2027, now=january).year == 2026


def test_file_lines_of_every_shape_become_events(tmp_path: Path) -> None:
    log = tmp_path / "vpn.log"
    log.write_text(
        "<166>Dec  1 08:15:00 gw01 fakevpn[42]: FAKEVPN user=HOSPITAL\\JDoe action=login src=10.0.0.5\n"
        "<166>1 2026-12-01T08:16:00.000+01:00 gw02 fakevpn - - - FAKEVPN user=asmith action=logout\n"
        "Dec  1 08:17:00 gw03 fakevpn: FAKEVPN user=bob@hospital.example action=login\n"
        "<166>Dec 01 2026 08:18:00 asa01 : FAKEVPN user=carol action=login\n"
        "FAKEVPN user=dave action=login time=2026-12-01T08:19:00\n"
        "\n")
    os.utime(log, (0, 1_796_000_000))  # mtime in 2026: the year of the 3164 lines
    conn = make(tmp_path, timezone="Europe/Berlin", default_domain="hospital")
    batch = read(conn)
    assert batch.dead_letters == []
    events = batch.events
    assert [e["@timestamp"] for e in events] == [
        "2026-12-01T07:15:00.000Z", "2026-12-01T07:16:00.000Z", "2026-12-01T07:17:00.000Z",
        "2026-12-01T07:18:00.000Z", "2026-12-01T07:19:00.000Z"]
    assert [(e["user.name"], e["user.domain"]) for e in events] == [
        ("jdoe", "hospital"), ("asmith", "hospital"), ("bob", "hospital.example"), ("carol", "hospital"),
        ("dave", "hospital")]
    assert [e.get("observer.hostname") for e in events] == ["gw01", "gw02", "gw03", "asa01", None]
    first = events[0]
    assert first["event.dataset"] == "vpn.auth"
    assert first["event.original"].startswith("<166>Dec  1 08:15:00 gw01")
    assert (first["observer.vendor"], first["observer.product"]) == ("Example", "FakeVPN")
    assert first["log.syslog.priority"] == 166 and first["test.appname"] == "fakevpn"
    assert "log.syslog.priority" not in events[2]  # a file line written by a syslog daemon has no PRI
    assert len({e["event.id"] for e in events}) == 5


def test_dead_letters_name_file_and_line(tmp_path: Path) -> None:
    log = tmp_path / "vpn.log"
    log.write_bytes(b"FAKEVPN user=a action=login time=2026-12-01T08:00:00\n"
                    b"%ASA-6-113039: something else entirely\n"
                    b"FAKEVPN user=\xff\xfe action=login\n"
                    b"FAKEVPN user=b action=login\n")  # no time anywhere
    batch = read(make(tmp_path))
    assert len(batch.events) == 1
    assert [(d.location, d.reason.split(":")[0]) for d in batch.dead_letters] == [
        (f"{log}:2", "fake-vpn"), (f"{log}:3", "invalid UTF-8 at byte 13"), (f"{log}:4", "no time in the line (no syslog header time, none in the message)")]
    assert "no FAKEVPN marker" in batch.dead_letters[0].reason


def test_missing_path_is_source_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="vpn1"):
        read(make(tmp_path, path=str(tmp_path / "nowhere.log")))


def line(n: int) -> str:
    return f"<166>Dec  1 08:{n // 60:02d}:{n % 60:02d} gw01 fakevpn: FAKEVPN user=u{n} action=login\n"


def test_tail_rotation_and_resume_give_the_same_ids(tmp_path: Path) -> None:
    log = tmp_path / "vpn.log"
    log.write_text("".join(line(i) for i in range(300)))
    conn = make(tmp_path)
    first = read(conn, None, 120)
    assert len(first.events) == 120 and not first.exhausted
    rest = read(conn, first.cursor)
    assert len(rest.events) == 180 and rest.exhausted
    with log.open("a") as fh:  # tail: an append, and a partial line that waits for its newline
        fh.write(line(300) + line(301)[:20])
    appended = read(conn, rest.cursor)
    assert [e["user.name"] for e in appended.events] == ["u300"]
    with log.open("a") as fh:
        fh.write(line(301)[20:])
    appended2 = read(conn, appended.cursor)
    assert [e["user.name"] for e in appended2.events] == ["u301"]
    os.rename(log, tmp_path / "vpn.log.1")  # rotation: renamed away, a new file at the path
    log.write_text(line(302))
    rotated = read(conn, appended2.cursor)
    assert [e["user.name"] for e in rotated.events] == ["u302"]
    conn.close()
    # resume: a fresh connector (another process) from the same cursor reads nothing twice, and a
    # re-read from scratch gives the very same ids (the store drops the copies)
    assert read(make(tmp_path), rotated.cursor).events == []
    ids_before = {e["event.id"] for b in (first, rest, appended, appended2, rotated) for e in b.events}
    reread = read(make(tmp_path, path=str(tmp_path / "vpn.log*")))
    assert {e["event.id"] for e in reread.events} == ids_before


def test_one_shot_read_takes_a_last_line_without_newline(tmp_path: Path) -> None:
    (tmp_path / "vpn.log").write_text(line(1) + line(2).rstrip("\n"))
    conn = make(tmp_path)
    assert len(read(conn).events) == 1  # the service waits for the writer's newline
    conn2 = make(tmp_path)
    conn2.read_to_end()
    assert len(read(conn2).events) == 2


def test_tls_listener_message_to_event(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    certfile, _ = server_cert_files(ca, tmp_path)
    conn = FakeVpnConnector("vpn-tls", {"spool_dir": str(tmp_path / "spool"), "timezone": "-05:00",
                                        "listen": [{"port": 0, "certfile": certfile}]})  # TLS: default
    conn.start()
    try:
        (protocol, _, port), = conn.addresses
        assert protocol == "tls"
        send_tls_lines("127.0.0.1", port, [b"<166>Dec  1 08:15:00 gw01 fakevpn: FAKEVPN user=jdoe action=login",
                                           b"<166>Dec  1 08:16:00 gw01 fakevpn: not ours"], ca, framing="octet")
        batch = read_until(lambda: conn.read(None, 100), 2)
        (event,) = batch.events
        assert event["user.name"] == "jdoe" and event["@timestamp"].endswith("T13:15:00.000Z")
        assert event["network.protocol"] == "syslog-tls" and event["observer.hostname"] == "gw01"
        (dead,) = batch.dead_letters
        assert dead.location.startswith("spool:") and "no FAKEVPN marker" in dead.reason
        # a re-drain of the spool (restart, `wardwatch ingest`) gives the same id
        assert conn.read(None, 100).events[0]["event.id"] == event["event.id"]
    finally:
        conn.close()


def test_fuzz_any_bytes_become_an_event_or_a_dead_letter(tmp_path: Path) -> None:
    from hypothesis import given, settings, strategies as st

    from engine.store.base import DeadLetter

    conn = make(tmp_path, timezone="Europe/Berlin")
    prefixes = st.sampled_from([b"", b"<166>", b"<13>1 ", b"<166>Dec  1 08:15:00 gw ", b"Dec 01 2026 08:00:00 ",
                                b"FAKEVPN ", b"<166>Feb 30 10:00:00 h t: FAKEVPN "])

    @settings(max_examples=300, deadline=None)
    @given(prefixes, st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
    def check(prefix: bytes, body: bytes) -> None:
        data = (prefix + body).replace(b"\n", b" ")
        outcome = conn.message_to_event(data, "line:1", "f:1", 2026)
        assert isinstance(outcome, (dict, DeadLetter))
        if isinstance(outcome, dict):
            assert outcome["event.id"] and outcome["@timestamp"].endswith("Z")
        else:
            assert outcome.location == "f:1" and not outcome.reason.startswith("internal error")

    check()


def test_service_names_a_listener_that_cannot_bind_once(tmp_path: Path) -> None:
    """A VPN listener on a port in use: the service's health entry and log line say connector, listen entry
    and port in one line, the connector's name once (it was "connector 'x': cannot start its listener:
    cisco-asa 'x': ...")."""
    import socket

    import yaml
    from structlog.testing import capture_logs

    from engine.app import build_app
    from engine.config import load_config
    from engine.scheduler import Service

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        (tmp_path / "w.yaml").write_text(yaml.safe_dump({
            "store": {"sqlite": {"path": str(tmp_path / "w.db")}}, "rules": {"paths": []}, "alerts": {"sinks": []},
            "connectors": [{"name": "asa-edge", "type": "cisco-asa", "spool_dir": str(tmp_path / "spool"),
                            "listen": [{"protocol": "tcp", "host": "127.0.0.1", "port": port}]}]}))
        service = Service(build_app(load_config(tmp_path / "w.yaml", environ={}), console=False))
        with capture_logs() as logs:
            service.start()
            service.stop()
    reason = service.connector_health.entries["asa-edge"].reason
    (line,) = [entry["error"] for entry in logs if entry["event"].startswith("connector cannot start")]
    for text in (reason, line):
        assert text.count("asa-edge") == 1, text
        assert f"listen[0]: tcp port {port} on 127.0.0.1 is already in use" in text and "\n" not in text
