"""The syslog sink against the project's own syslog receiver over real loopback sockets.

TLS with a certificate the test issues (trustme), TCP with both framings, UDP; each message is parsed back
by the receiver's RFC 5424 parser and its payload by the CEF/LEEF parsers. Exactly once: a crash between
sending and acknowledging re-sends the same ``id``/``revision`` structured data, which is what a receiver
deduplicates on.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest

from connectors.syslog.rfc5424 import parse_syslog
from connectors.syslog.server import ListenerConfig, SyslogServer
from connectors.syslog.spool import SpoolRecord
from engine.alerts.sinks.cef import parse_cef
from engine.alerts.sinks.delivery import deliver_pending
from engine.alerts.sinks.leef import parse_leef
from engine.alerts.sinks.syslog import SyslogSink
from engine.alerts.sinks.syslog_wire import SD_ID
from engine.errors import SinkUnavailable
from engine.store.base import RuleCheckpoint
from tests.net_helpers import server_cert_files
from tests.store_fixtures import make_alert, store  # noqa: F401 - fixture

trustme = pytest.importorskip("trustme")


class Receiver:
    """The project's SyslogServer with an in-memory sink: what a SIEM would have received."""

    def __init__(self, config: ListenerConfig):
        self.records: list[SpoolRecord] = []
        self._lock = threading.Lock()
        self.server = SyslogServer([config], self._take)
        self.server.start()
        self.port = self.server.addresses[0][2]

    def _take(self, records: Any) -> None:
        with self._lock:
            self.records.extend(records)

    def messages(self, n: int, timeout: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.records) >= n:
                    break
            time.sleep(0.02)
        with self._lock:
            assert all(r.kind != "error" for r in self.records), [r.reason for r in self.records]
            return [parse_syslog(r.data) for r in self.records]


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    ca = trustme.CA()
    certfile, _ = server_cert_files(ca, tmp_path, "127.0.0.1", "localhost")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return {"certfile": certfile, "ca_file": str(ca_file)}


@pytest.fixture
def tls_receiver(pki: dict[str, str]) -> Iterator[Receiver]:
    receiver = Receiver(ListenerConfig("tls", port=0, certfile=pki["certfile"]))
    yield receiver
    receiver.server.stop()


def _alert(revision: int = 1, **extra: Any) -> Any:
    return make_alert(revision=revision, triggers=3, **extra)


def test_tls_json_payload_arrives_with_id_and_revision_in_structured_data(tls_receiver: Receiver, pki):
    sink = SyslogSink({"host": "127.0.0.1", "port": tls_receiver.port, "ca_certs": pki["ca_file"]})
    alert = _alert(revision=2)
    sink.deliver([alert])
    [msg] = tls_receiver.messages(1)
    assert msg.msgid == "alert" and msg.appname == "wardwatch" and msg.bom
    assert msg.structured_data[SD_ID] == {"id": alert.id, "revision": "2", "record": "alert", "level": "high",
                                          "rule": "rule-1"}
    assert (msg.facility, msg.severity) == (10, 3)  # authpriv, high -> err
    body = orjson.loads(msg.msg)
    assert body["id"] == alert.id and body["group"] == {"user.name": "jdoe"}
    sink.close()


def test_tls_refuses_a_server_whose_certificate_it_does_not_trust(tls_receiver: Receiver, tmp_path: Path):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    sink = SyslogSink({"host": "127.0.0.1", "port": tls_receiver.port, "ca_certs": str(other)})
    with pytest.raises(SinkUnavailable, match="certificate verify failed|cannot send"):
        sink.deliver([_alert()])
    assert tls_receiver.records == []


@pytest.mark.parametrize("framing", ["octet-counting", "lf"])
def test_tcp_cef_payload_parses_back(framing: str):
    receiver = Receiver(ListenerConfig("tcp", port=0))
    try:
        sink = SyslogSink({"host": "127.0.0.1", "port": receiver.port, "protocol": "tcp", "framing": framing,
                           "format": "cef"})
        alerts = [_alert(), make_alert(rule_id="rule-2", group_key="user.name=a|b=c")]
        sink.deliver(alerts)
        msgs = receiver.messages(2)
        parsed = [parse_cef(m.text()) for m in msgs]
        assert [h[4] for h, _ in parsed] == ["rule-1", "rule-2"]
        assert parsed[1][1]["suser"] == "a|b=c" and parsed[1][1]["cnt"] == "1"
        assert parsed[0][1]["externalId"] == alerts[0].id
    finally:
        receiver.server.stop()


def test_udp_leef_payload_parses_back():
    receiver = Receiver(ListenerConfig("udp", port=0))
    try:
        sink = SyslogSink({"host": "127.0.0.1", "port": receiver.port, "protocol": "udp", "format": "leef"})
        sink.deliver([_alert()])
        [msg] = receiver.messages(1)
        header, attrs = parse_leef(msg.text())
        assert header[4] == "rule-1" and attrs["usrName"] == "jdoe" and attrs["evidenceTotal"] == "3"
    finally:
        receiver.server.stop()


def test_receiver_down_is_unavailable_and_the_revision_waits_in_the_outbox(store, pki):  # noqa: F811
    sink = SyslogSink({"host": "127.0.0.1", "port": _free_port(), "ca_certs": pki["ca_file"]})
    store.commit_rule_run(RuleCheckpoint("rule-1", None), [_alert()])
    assert deliver_pending(store, [sink]) == 0
    assert len(store.pending_deliveries(sink.name)) == 1


def test_crash_between_send_and_ack_resends_the_same_id_and_revision(store, tls_receiver, pki):  # noqa: F811
    options = {"host": "127.0.0.1", "port": tls_receiver.port, "ca_certs": pki["ca_file"], "name": "siem"}
    alert = _alert()
    store.commit_rule_run(RuleCheckpoint("rule-1", None), [alert])
    crashed = SyslogSink(options, name="siem")
    crashed.deliver(store.pending_deliveries("siem"))  # sent ... and the process dies before mark_delivered
    crashed.close()
    restarted = SyslogSink(options, name="siem")
    assert deliver_pending(store, [restarted]) == 1
    assert deliver_pending(store, [restarted]) == 0  # acknowledged now
    keys = [(m.structured_data[SD_ID]["id"], m.structured_data[SD_ID]["revision"]) for m in tls_receiver.messages(2)]
    assert keys == [(alert.id, "1"), (alert.id, "1")]  # the receiver's dedup key: one alert revision
    restarted.close()


def test_a_connection_the_receiver_closed_is_reopened():
    receiver = Receiver(ListenerConfig("tcp", port=0, idle_timeout=0.3))
    try:
        sink = SyslogSink({"host": "127.0.0.1", "port": receiver.port, "protocol": "tcp"})
        sink.deliver([_alert()])
        receiver.messages(1)
        time.sleep(0.8)  # the receiver closes the idle connection
        sink.deliver([_alert(revision=2)])
        assert [m.structured_data[SD_ID]["revision"] for m in receiver.messages(2)] == ["1", "2"]
    finally:
        receiver.server.stop()


@pytest.mark.parametrize("options,key", [
    ({"protocol": "tls", "framing": "lf"}, "framing"),
    ({"facility": "mail2"}, "facility"),
    ({"format": "xml"}, "format"),
    ({"protocol": "udp", "ca_certs": "ca.pem"}, "ca_certs"),
    ({"key_password": "x"}, "key_password"),
])
def test_bad_options_name_the_key(options: dict, key: str):
    from engine.alerts.sinks.base import SinkConfigError

    with pytest.raises(SinkConfigError, match=key):
        SyslogSink({"host": "127.0.0.1", **options})


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_field_policy_applies_before_the_wire(tls_receiver: Receiver, pki):
    """``drop`` and ``evidence_cap`` from the sink base: the SIEM never sees the dropped patient id."""
    sink = SyslogSink({"host": "127.0.0.1", "port": tls_receiver.port, "ca_certs": pki["ca_file"],
                       "drop": ["ehr.patient.id"], "evidence_cap": 1})
    alert = make_alert(group_key="user.name=jdoe", triggers=5)
    alert.group["ehr.patient.id"] = "P-12345"
    sink.deliver([alert])
    [msg] = tls_receiver.messages(1)
    body = orjson.loads(msg.msg)
    assert body["group"] == {"user.name": "jdoe"} and body["evidence"] == ["e0"] and body["evidence_total"] == 5
    assert b"P-12345" not in tls_receiver.records[0].data
    sink.close()


def test_case_revisions_travel_as_cef_with_record_case(tls_receiver: Receiver, pki):
    from engine.alerts.case_model import Case

    sink = SyslogSink({"host": "127.0.0.1", "port": tls_receiver.port, "ca_certs": pki["ca_file"],
                       "format": "cef", "deliver": "both"})
    case = Case(id="c" * 32, subject_kind="user.name", subject="jdoe", period_start="2024-01-01T00:00:00.000Z",
                period_end="2024-01-02T00:00:00.000Z", first_trigger="2024-01-01T01:00:00.000Z",
                last_trigger="2024-01-01T02:00:00.000Z", level="critical", score=9.0, revision=4,
                reasons=["3 rules about jdoe"])
    sink.deliver_cases([case])
    [msg] = tls_receiver.messages(1)
    assert msg.msgid == "case" and msg.structured_data[SD_ID]["revision"] == "4"
    header, ext = parse_cef(msg.text())
    assert header[4:] == ["case", "3 rules about jdoe", "10"] and ext["suser"] == "jdoe" and ext["cat"] == "case"
    sink.close()


def test_run_once_delivers_every_alert_to_the_siem_once(tmp_path: Path, capsys):
    """End to end through the config and the service: the demo sources, the shipped rules, a syslog sink
    (CEF over TCP) to the project's receiver; a second run sends nothing new."""
    import yaml

    from engine.cli import main
    from engine.store import open_store
    from tests.conftest import ROOT, demo_connectors

    receiver = Receiver(ListenerConfig("tcp", port=0))
    try:
        config = tmp_path / "wardwatch.yaml"
        config.write_text(yaml.safe_dump({
            "rules": {"paths": [str(ROOT / "rules")]}, "store": {"sqlite": {"path": str(tmp_path / "w.db")}},
            "connectors": demo_connectors(),
            "alerts": {"sinks": [{"type": "syslog", "name": "siem", "host": "127.0.0.1", "port": receiver.port,
                                  "protocol": "tcp", "format": "cef"}]}}))
        assert main(["--config", str(config), "run", "--once"]) == 0
        store = open_store("sqlite", path=tmp_path / "w.db")
        try:
            alerts = store.list_alerts()
        finally:
            store.close()
        assert alerts, "the demo data should raise alerts"
        messages = receiver.messages(len(alerts))
        keys = {(m.structured_data[SD_ID]["id"], m.structured_data[SD_ID]["revision"]) for m in messages}
        assert keys == {(a.id, str(a.revision)) for a in alerts} and len(messages) == len(alerts)
        assert main(["--config", str(config), "run", "--once"]) == 0
        time.sleep(0.3)
        assert len(receiver.records) == len(alerts)
    finally:
        receiver.server.stop()
    capsys.readouterr()


def test_mutual_tls_presents_the_client_certificate(tmp_path: Path, pki):
    """A receiver that requires client certificates (``ca_certs`` on the listener) takes the sink's."""
    client_ca = trustme.CA()
    client_ca_file = tmp_path / "client-ca.pem"
    client_ca.cert_pem.write_to_path(str(client_ca_file))
    client_pem = tmp_path / "client.pem"
    client_ca.issue_cert("wardwatch.hospital.example").private_key_and_cert_chain_pem.write_to_path(str(client_pem))
    receiver = Receiver(ListenerConfig("tls", port=0, certfile=pki["certfile"], ca_certs=str(client_ca_file)))
    try:
        without = SyslogSink({"host": "127.0.0.1", "port": receiver.port, "ca_certs": pki["ca_file"]})
        with pytest.raises(SinkUnavailable, match="closed the TLS connection|certificate"):
            without.deliver([_alert()])  # TLS 1.3 refuses after the handshake: noticed before writing
        with_cert = SyslogSink({"host": "127.0.0.1", "port": receiver.port, "ca_certs": pki["ca_file"],
                                "certfile": str(client_pem)})
        with_cert.deliver([_alert(revision=3)])
        assert [m.structured_data[SD_ID]["revision"] for m in receiver.messages(1)] == ["3"]
    finally:
        receiver.server.stop()


def test_one_tls_connection_carries_many_deliveries(tls_receiver: Receiver, pki):
    """TLS 1.3 session tickets make the socket readable; that must not look like a closed connection."""
    sink = SyslogSink({"host": "127.0.0.1", "port": tls_receiver.port, "ca_certs": pki["ca_file"]})
    for revision in (1, 2, 3):
        sink.deliver([_alert(revision=revision)])
        time.sleep(0.05)
    assert len(tls_receiver.messages(3)) == 3
    assert tls_receiver.server.stats.connections == 1
    sink.close()
