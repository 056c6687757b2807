"""The atna-syslog connector end to end: sockets -> spool -> read(); options; FHIR; kill -9 recovery."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from connectors.atna_syslog import AtnaSyslogConnector
from connectors.base import Batch, ConnectorConfigError, connector_class
from connectors.syslog.spool import SpoolRecord
from tests.net_helpers import (client_context, octet, read_until, send_tcp_lines, send_tls_lines, send_udp,
                               server_cert_files)

ROOT = Path(__file__).resolve().parent.parent
ATNA_DIR = ROOT.parent / "shared" / "datasets" / "atna-ipf"
BOM = b"\xef\xbb\xbf"


def audit_xml(n: int, btg: bool = False) -> bytes:
    purpose = '<PurposeOfUse csd-code="BTG"/>' if btg else ""
    return (f'<AuditMessage><EventIdentification EventActionCode="R" EventDateTime="2024-03-01T12:00:{n % 60:02d}Z"'
            f' EventOutcomeIndicator="0"><EventID csd-code="110110" codeSystemName="DCM" '
            f'originalText="Patient Record"/>{purpose}</EventIdentification>'
            f'<ActiveParticipant UserID="u{n}" UserIsRequestor="true" NetworkAccessPointID="10.0.0.{n % 250}" '
            f'NetworkAccessPointTypeCode="2"/><AuditSourceIdentification AuditSourceID="ehr"/>'
            f'<ParticipantObjectIdentification ParticipantObjectID="P{n}^^^&amp;1.2.3&amp;ISO" '
            f'ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1"/></AuditMessage>').encode()


def syslog(payload: bytes, host: str = "ehr-host", bom: bool = True) -> bytes:
    return b"<110>1 2024-03-01T12:00:00.000Z %s ehr 4711 IHE+RFC-3881 - %s%s" % (
        host.encode(), BOM if bom else b"", payload)


def read_all(connector: AtnaSyslogConnector, expected: int, timeout: float = 10.0) -> Batch:
    return read_until(lambda: connector.read(None, 100000), expected, timeout)


@pytest.fixture
def connector(tmp_path: Path) -> Iterator[AtnaSyslogConnector]:
    conn = AtnaSyslogConnector("atna1", {"spool_dir": str(tmp_path / "spool"),
                                         "listen": [{"protocol": "tcp", "port": 0},
                                                    {"protocol": "udp", "port": 0}],
                                         "max_message_bytes": 8192})
    conn.start()
    yield conn
    conn.close()


def port_of(conn: AtnaSyslogConnector, protocol: str) -> int:
    return next(p for proto, _, p in conn.addresses if proto == protocol)


def test_registered_under_entry_point() -> None:
    assert connector_class("atna-syslog") is AtnaSyslogConnector


@pytest.mark.parametrize("options", [{}, {"spool_dir": "/tmp/x", "listen": "tcp"},
                                     {"spool_dir": "/tmp/x", "max_message_bytes": 0},
                                     {"spool_dir": "/tmp/x", "listen": [{"protocol": "smtp"}]},
                                     {"spool_dir": "/tmp/x", "listen": [{"port": 6514}]},  # TLS, no cert
                                     {"spool_dir": "/tmp/x", "listen": [{"protocol": "tcp", "port": 70000}]},
                                     {"spool_dir": "/tmp/x", "colour": "blue"}])
def test_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(ConnectorConfigError):
        AtnaSyslogConnector("bad", options)


def test_tcp_message_to_event_with_syslog_fields(connector: AtnaSyslogConnector) -> None:
    payload = audit_xml(7, btg=True)
    send_tcp_lines("127.0.0.1", port_of(connector, "tcp"), [syslog(payload)], framing="octet")
    batch = read_all(connector, 1)
    assert batch.dead_letters == [] and len(batch.events) == 1
    event = batch.events[0]
    redrain = AtnaSyslogConnector("another-name", {"spool_dir": connector.options["spool_dir"]})
    assert redrain.read(None, 10).events[0]["event.id"] == event["event.id"]  # the spool position, not the name
    assert event["event.original"] == payload.decode()
    assert event["@timestamp"] == "2024-03-01T12:00:07.000Z"
    assert event["ehr.patient.id"] == "P7" and event["ehr.break_the_glass"] is True
    assert event["user.id"] == "u7" and event["source.ip"] == "10.0.0.7"
    assert (event["log.syslog.hostname"], event["log.syslog.appname"], event["log.syslog.procid"],
            event["log.syslog.msgid"]) == ("ehr-host", "ehr", "4711", "IHE+RFC-3881")
    assert (event["log.syslog.priority"], event["log.syslog.facility.code"],
            event["log.syslog.severity.code"]) == (110, 13, 6)
    assert event["network.transport"] == "tcp" and event["log.source.address"].startswith("127.0.0.1:")


def test_same_payload_twice_is_two_events(connector: AtnaSyslogConnector) -> None:
    """Two identical messages are two events (two identical failed logins); docs/schema.md, Event identity."""
    send_tcp_lines("127.0.0.1", port_of(connector, "tcp"),
                   [octet(syslog(audit_xml(1))), syslog(audit_xml(1), host="relay", bom=False) + b"\n"],
                   framing="raw")
    batch = read_all(connector, 2)
    assert len({e["event.id"] for e in batch.events}) == 2 and len(batch.events) == 2


def test_udp_and_fhir_auditevent_json(connector: AtnaSyslogConnector) -> None:
    resource = {"resourceType": "AuditEvent", "id": "ae-1", "recorded": "2024-03-01T12:00:00Z",
                "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
                "action": "R", "outcome": "0",
                "agent": [{"requestor": True, "who": {"identifier": {"value": "dr.who"}}}],
                "source": {"observer": {"display": "fhir-server"}},
                "entity": [{"what": {"reference": "Patient/p-9"},
                            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role",
                                     "code": "1"}}]}
    send_udp("127.0.0.1", port_of(connector, "udp"), [syslog(json.dumps(resource).encode())])
    batch = read_all(connector, 1)
    event = batch.events[0]
    assert event["ehr.fhir.version"] == "R4" and event["ehr.patient.id"] == "p-9"
    assert event["user.id"] == "dr.who" and event["network.transport"] == "udp"
    assert event["log.syslog.msgid"] == "IHE+RFC-3881"


def test_bad_input_becomes_dead_letters_and_receiver_keeps_running(connector: AtnaSyslogConnector) -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
            b"<AuditMessage>&b;</AuditMessage>")
    bad = [
        syslog(b"\xff\xfe not utf-8"),
        syslog(b"plain text, not an audit message"),
        syslog(bomb),
        syslog(b"<AuditMessage><broken>"),
        syslog(b'{"resourceType": "Patient"}'),
        syslog(b"{not json"),
        b"no syslog header at all",
        syslog(b"<x/>" + b" " * 9000),  # over max_message_bytes=8192
    ]
    port = port_of(connector, "tcp")
    send_tcp_lines("127.0.0.1", port, [*bad, syslog(audit_xml(3))], framing="octet")
    send_tcp_lines("127.0.0.1", port, [b"007 malformed"], framing="raw")
    send_tcp_lines("127.0.0.1", port, [syslog(audit_xml(4))], framing="octet")
    batch = read_all(connector, 11)
    assert sorted(e["ehr.patient.id"] for e in batch.events) == ["P3", "P4"]
    reasons = [d.reason for d in batch.dead_letters]
    assert len(reasons) == 9, reasons
    for needle in ("not valid UTF-8", "neither ATNA XML", "DOCTYPE", "well-formed", "FHIR AuditEvent",
                   "not valid JSON", "invalid syslog message", "exceeds max_message_bytes", "malformed"):
        assert any(needle in r for r in reasons), needle
    for letter in batch.dead_letters:
        assert letter.source == "atna-syslog:atna1" and len(letter.raw) <= 65536
        assert letter.location.startswith(("spool:", "tcp:127.0.0.1:"))


def test_cursor_batches_and_acknowledge(tmp_path: Path) -> None:
    conn = AtnaSyslogConnector("ack", {"spool_dir": str(tmp_path), "segment_bytes": 4096})
    conn.spool.open_writer()
    for n in range(40):
        conn.spool.append([SpoolRecord(syslog(audit_xml(n)), "tcp:127.0.0.1:1")])
    segments_before = len(conn.spool.segments())
    cursor, seen = None, []
    while True:
        batch = conn.read(cursor, 7)
        seen += [e["ehr.patient.id"] for e in batch.events]
        cursor = batch.cursor
        conn.acknowledge(cursor)  # what the engine does after committing
        if batch.exhausted:
            break
    assert seen == [f"P{n}" for n in range(40)]
    assert segments_before > 3 and len(conn.spool.segments()) == 1
    conn.close()


CHILD = r"""
import sys, time
from connectors.atna_syslog import AtnaSyslogConnector
conn = AtnaSyslogConnector("crash", {"spool_dir": sys.argv[1], "listen": [{"protocol": "tcp", "port": 0}]})
conn.start()
print("PORT", conn.addresses[0][2], flush=True)
while True:
    time.sleep(1)
"""


@pytest.mark.slow
def test_kill_9_loses_nothing_accepted_and_skips_a_torn_record(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(spool_dir)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        line = b""
        while not line.startswith(b"PORT "):  # structlog may log to stdout first
            line = child.stdout.readline()  # type: ignore[union-attr]
            assert line, "receiver subprocess died"
        port = int(line.split()[1])
        n = 300
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(n):
                frame = octet(syslog(audit_xml(i)))
                if i % 50 == 0:  # some messages split across many tiny segments
                    for b in range(len(frame)):
                        client.send(frame[b : b + 1])
                else:
                    client.sendall(frame)
            observer = AtnaSyslogConnector("crash", {"spool_dir": str(spool_dir)})  # read-only, no start()
            assert len(read_all(observer, n, timeout=30).events) == n  # accepted = spooled
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    # Simulate a torn write at the crash: half a record at the end of the last segment.
    segments = sorted(spool_dir.glob("*.spool"))
    torn = SpoolRecord(octet(syslog(audit_xml(9999)))).encode()
    with open(segments[-1], "ab") as handle:
        handle.write(torn[: len(torn) // 2])

    fresh = AtnaSyslogConnector("crash", {"spool_dir": str(spool_dir),
                                          "listen": [{"protocol": "tcp", "port": 0}]})
    batch = fresh.read(None, 100000)
    ids = [e["event.id"] for e in batch.events]
    assert len(ids) == n and len(set(ids)) == n
    assert sorted(e["ehr.patient.id"] for e in batch.events) == sorted(f"P{i}" for i in range(n))
    assert batch.dead_letters == [] and batch.exhausted

    # Restarting the receiver makes the old segment final: the torn record is skipped, reported once.
    fresh.start()
    try:
        send_tcp_lines("127.0.0.1", port_of(fresh, "tcp"), [syslog(audit_xml(n))], framing="octet")
        after = read_all(fresh, n + 2)
        assert len(after.events) == n + 1
        assert len(after.dead_letters) == 1 and "torn" in after.dead_letters[0].reason
        assert after.dead_letters[0].location.startswith("spool:")
        resumed = fresh.read(batch.cursor, 100000)
        assert [e["ehr.patient.id"] for e in resumed.events] == [f"P{n}"]
    finally:
        fresh.close()


# --- TLS by default; idle crowds; start-up errors ----------------------------------------------------------
def test_listen_entry_without_certfile_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConnectorConfigError, match="'certfile'") as info:
        AtnaSyslogConnector("atna1", {"spool_dir": str(tmp_path / "s"), "listen": [{"host": "0.0.0.0"}]})
    assert "listen[0]" in str(info.value) and "tcp or udp" in str(info.value)


def test_start_with_missing_certificate_is_one_line_naming_connector_key_and_path(tmp_path: Path) -> None:
    from engine.errors import SourceUnavailable

    missing = str(tmp_path / "tls" / "atna.pem")
    conn = AtnaSyslogConnector("atna1", {"spool_dir": str(tmp_path / "s"),
                                         "listen": [{"port": 0, "certfile": missing}]})
    try:
        with pytest.raises(SourceUnavailable) as info:
            conn.start()
        assert str(info.value) == f"atna-syslog 'atna1': listen[0].certfile: file not found: {missing}"
    finally:
        conn.close()


def test_twenty_idle_tls_connections_do_not_lock_out_a_real_device(tmp_path: Path) -> None:
    """RFC 5425 end to end: 24 connections from 127.0.0.1 sit idle (half before the TLS handshake, half
    after it); a device at 127.0.0.2 still gets its audit message into the spool and out as an event."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    certfile, _ = server_cert_files(ca, tmp_path)
    conn = AtnaSyslogConnector("atna1", {"spool_dir": str(tmp_path / "spool"),
                                         "listen": [{"port": 0, "certfile": certfile}]})  # TLS: default
    conn.start()
    client_ctx = client_context(ca)
    crowd: list[socket.socket] = []
    try:
        (protocol, _, port), = conn.addresses
        assert protocol == "tls"
        for i in range(24):
            raw = socket.create_connection(("127.0.0.1", port))
            crowd.append(raw)
            if i % 2:
                try:
                    crowd.append(client_ctx.wrap_socket(raw, server_hostname="127.0.0.1"))
                except OSError:
                    pass  # refused: over the per-source cap of 16
        assert conn.server is not None
        deadline = time.monotonic() + 10
        while conn.server.stats.refused_connections < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert conn.server.stats.refused_connections == 8
        send_tls_lines("127.0.0.1", port, [syslog(audit_xml(3))], ca, framing="octet", source="127.0.0.2")
        batch = read_all(conn, 1)
        assert [e["user.id"] for e in batch.events] == ["u3"] and batch.dead_letters == []
        assert batch.events[0]["network.protocol"] == "syslog-tls"
        assert batch.events[0]["log.source.address"].startswith("127.0.0.2:")
    finally:
        for sock in crowd:
            sock.close()
        conn.close()
