"""Listeners over real loopback sockets: TLS (trustme certificates), TCP, UDP, framing errors, and the
limits that keep idle, slow and greedy clients from locking real senders out."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from structlog.testing import capture_logs

from connectors.syslog.server import ListenerConfig, SyslogServer
from connectors.syslog.spool import KIND_ERROR, Spool, SpoolItem, SpoolRecord
from engine.errors import SourceUnavailable
from tests.net_helpers import (client_context, connect, octet, send_tcp_lines, send_tls_lines, send_udp,
                               server_cert_files)

trustme = pytest.importorskip("trustme")

MSG = b"<85>1 2024-01-01T00:00:00Z host app - IHE+RFC-3881 - \xef\xbb\xbf<AuditMessage/>"


def wait_records(spool: Spool, n: int, timeout: float = 5.0) -> list[SpoolRecord]:
    deadline = time.monotonic() + timeout
    while True:
        records = [i.record for i in spool.read(None, 100000).items if isinstance(i, SpoolItem)]
        if len(records) >= n or time.monotonic() > deadline:
            return records
        time.sleep(0.02)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = Spool(tmp_path / "spool")
    spool.open_writer()
    yield spool
    spool.close()


def serve(spool: Spool, *configs: ListenerConfig, max_bytes: int = 65536) -> SyslogServer:
    server = SyslogServer(list(configs), spool.append, max_message_bytes=max_bytes)
    server.start()
    return server


@pytest.fixture
def tcp(spool: Spool) -> Iterator[tuple[SyslogServer, int]]:
    server = serve(spool, ListenerConfig("tcp", port=0), max_bytes=1024)
    yield server, server.addresses[0][2]
    server.stop()


def test_octet_counting_byte_by_byte_with_nodelay(spool: Spool, tcp: tuple[SyslogServer, int]) -> None:
    _, port = tcp
    data = octet(MSG) + octet(MSG.replace(b"host", b"hst2"))
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            client.send(data[i : i + 1])
            if i % 16 == 0:
                time.sleep(0.0005)  # really separate segments
    records = wait_records(spool, 2)
    assert [r.data for r in records] == [MSG, MSG.replace(b"host", b"hst2")]
    assert records[0].peer.startswith("tcp:127.0.0.1:")


def test_several_messages_in_one_segment_and_non_transparent(spool: Spool, tcp: tuple[SyslogServer, int]) -> None:
    _, port = tcp
    send_tcp_lines("127.0.0.1", port, [octet(b"<1>1 a") + octet(b"<1>1 b") + b"<1>1 c\n<1>1 d\r\n" +
                                       octet(b"<1>1 e")], framing="raw")
    assert [r.data for r in wait_records(spool, 5)] == [b"<1>1 a", b"<1>1 b", b"<1>1 c", b"<1>1 d", b"<1>1 e"]


def test_oversized_frames_are_discarded_and_connection_continues(spool: Spool,
                                                                   tcp: tuple[SyslogServer, int]) -> None:
    _, port = tcp
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(octet(b"<1>1 " + b"x" * 5000) + octet(b"<1>1 after-octet")
                       + b"<1>1 " + b"y" * 5000 + b"\n<1>1 after-lf\n")
    records = [i.record for i in spool.read(None, 100).items]
    deadline = time.monotonic() + 5
    while len(records) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
        records = [i.record for i in spool.read(None, 100).items]
    assert [r.kind for r in records] == [KIND_ERROR, 1, KIND_ERROR, 1]
    assert records[1].data == b"<1>1 after-octet" and records[3].data == b"<1>1 after-lf"
    assert len(records[0].data) == 1024  # raw kept for the dead letter, truncated


def test_malformed_octet_count_closes_connection_and_server_survives(spool: Spool,
                                                                      tcp: tuple[SyslogServer, int]) -> None:
    server, port = tcp
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(octet(b"<1>1 before") + b"12x garbage")
        client.settimeout(5)
        assert client.recv(10) == b""  # server closed the connection
    send_tcp_lines("127.0.0.1", port, [b"<1>1 next connection"], framing="octet")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        records = [i.record for i in spool.read(None, 100).items]
        if len(records) >= 3:
            break
        time.sleep(0.02)
    assert records[0].data == b"<1>1 before"
    assert records[1].kind == KIND_ERROR and "malformed" in records[1].reason
    assert records[2].data == b"<1>1 next connection"
    assert server.stats.frame_errors == 1


def test_udp_datagrams(spool: Spool) -> None:
    server = serve(spool, ListenerConfig("udp", port=0), max_bytes=2048)
    try:
        port = server.addresses[0][2]
        send_udp("127.0.0.1", port, [MSG, MSG + b"\n", b"<1>1 " + b"z" * 4000])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            records = [i.record for i in spool.read(None, 100).items]
            if len(records) >= 3:
                break
            time.sleep(0.02)
        assert [r.data for r in records[:2]] == [MSG, MSG]
        assert records[2].kind == KIND_ERROR and "exceeds" in records[2].reason
    finally:
        server.stop()


# --- TLS -------------------------------------------------------------------------------------------------
@pytest.fixture
def pki(tmp_path: Path) -> dict[str, object]:
    ca = trustme.CA()
    certfile, _ = server_cert_files(ca, tmp_path, "127.0.0.1", "localhost")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return {"ca": ca, "certfile": certfile, "ca_file": str(ca_file)}


def test_tls_with_client_certificate(spool: Spool, pki: dict) -> None:
    server = serve(spool, ListenerConfig("tls", port=0, certfile=pki["certfile"], ca_certs=pki["ca_file"]))
    try:
        port = server.addresses[0][2]
        send_tls_lines("127.0.0.1", port, [MSG] * 3, pki["ca"], framing="octet", client_ca=pki["ca"])
        records = wait_records(spool, 3)
        assert [r.data for r in records] == [MSG] * 3 and records[0].peer.startswith("tls:")
    finally:
        server.stop()


@pytest.mark.parametrize("client_cert", ["none", "other-ca"])
def test_tls_client_failing_verification_is_refused(spool: Spool, pki: dict, client_cert: str) -> None:
    server = serve(spool, ListenerConfig("tls", port=0, certfile=pki["certfile"], ca_certs=pki["ca_file"]))
    try:
        port = server.addresses[0][2]
        context = client_context(pki["ca"], client_ca=None if client_cert == "none" else trustme.CA())
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with socket.create_connection(("127.0.0.1", port)) as raw:
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as client:
                    client.sendall(octet(MSG))
                    client.settimeout(5)
                    if client.recv(10) == b"":  # TLS 1.3: the refusal arrives after our handshake
                        raise ConnectionError("closed")
        deadline = time.monotonic() + 5
        while server.stats.handshake_failures < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.stats.handshake_failures == 1
        # Nothing from the refused client was accepted; a good client still gets through.
        send_tls_lines("127.0.0.1", port, [b"<1>1 good"], pki["ca"], framing="octet", client_ca=pki["ca"])
        assert [r.data for r in wait_records(spool, 1)] == [b"<1>1 good"]
    finally:
        server.stop()


def test_tls_sends_nothing_after_the_handshake_so_a_sender_that_never_reads_loses_no_tail(
        spool: Spool, pki: dict) -> None:
    """Syslog over TLS is one-way: a device sends its frames and closes without reading. Anything the listener
    sends after the handshake (TLS 1.3 session tickets, by default two) sits unread at the sender, which makes
    its close a TCP reset, and a reset can discard frames the listener had not read yet. CI lost the last
    frame of a 50-frame connection that way; 300 such connections under load lost 39 of 15,000 frames."""
    server = serve(spool, ListenerConfig("tls", port=0, certfile=pki["certfile"]))
    try:
        port = server.addresses[0][2]
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with client_context(pki["ca"]).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version() == "TLSv1.3"
                tls.sendall(octet(MSG))
                assert [r.data for r in wait_records(spool, 1)] == [MSG]
                unread, _, _ = select.select([tls], [], [], 0.5)
                assert unread == [], "the listener sent the sender something it will never read"
        for _ in range(20):  # send and close at once, as a device's one-shot sender does
            send_tls_lines("127.0.0.1", port, [MSG] * 50, pki["ca"], framing="octet")
        records = wait_records(spool, 1 + 20 * 50)
        assert len(records) == 1 + 20 * 50 and all(r.kind != KIND_ERROR for r in records)
    finally:
        server.stop()


def test_tls_client_rejects_server_from_unknown_ca(spool: Spool, pki: dict) -> None:
    server = serve(spool, ListenerConfig("tls", port=0, certfile=pki["certfile"]))
    try:
        port = server.addresses[0][2]
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with pytest.raises(ssl.SSLCertVerificationError):
                client_context(trustme.CA()).wrap_socket(raw, server_hostname="127.0.0.1")
    finally:
        server.stop()


def test_listener_config_validation() -> None:
    with pytest.raises(ValueError):
        ListenerConfig.from_mapping({"protocol": "sctp"})
    with pytest.raises(ValueError):
        ListenerConfig.from_mapping({"protocol": "tls"})
    with pytest.raises(ValueError):
        ListenerConfig.from_mapping({"protocol": "tcp", "bogus": 1})


def test_listener_config_defaults_to_tls_on_6514_and_names_missing_certfile() -> None:
    config = ListenerConfig.from_mapping({"certfile": "/etc/x.pem"})
    assert (config.protocol, config.port) == ("tls", 6514)
    assert [ListenerConfig.from_mapping({"protocol": p}).port for p in ("tcp", "udp")] == [601, 514]
    with pytest.raises(ValueError, match="'certfile'"):
        ListenerConfig.from_mapping({})  # TLS is the default: plaintext must be chosen explicitly
    with pytest.raises(ValueError, match="'certfile'"):
        ListenerConfig.from_mapping({"keyfile": "/etc/x.key"})


@pytest.mark.parametrize("port", [65536, -1, True, "514", 70000])
def test_listener_port_out_of_range_names_the_port(port: Any) -> None:
    with pytest.raises(ValueError, match=f"port.*{port!r}".replace("(", r"\(")):
        ListenerConfig.from_mapping({"protocol": "tcp", "port": port})


@pytest.mark.parametrize("key", ["idle_timeout", "frame_timeout", "handshake_timeout", "max_connections",
                                 "max_connections_per_source"])
@pytest.mark.parametrize("value", [0, -5, "many", None])
def test_listener_limits_must_be_positive(key: str, value: Any) -> None:
    with pytest.raises(ValueError, match=key):
        ListenerConfig.from_mapping({"protocol": "tcp", key: value})


# --- start-up errors: one line naming the key, path or port ------------------------------------------------
@pytest.mark.parametrize("key", ["certfile", "keyfile", "ca_certs"])
def test_missing_tls_file_is_one_line_naming_key_and_path(spool: Spool, pki: dict, tmp_path: Path,
                                                          key: str) -> None:
    missing = str(tmp_path / "nope" / f"{key}.pem")
    options: dict[str, Any] = {"certfile": pki["certfile"], key: missing}
    server = SyslogServer([ListenerConfig("tcp", port=0), ListenerConfig("tls", port=0, **options)],
                          spool.append)
    with pytest.raises(SourceUnavailable) as info:
        server.start()
    message = str(info.value)
    assert f"listen[1].{key}" in message and missing in message and "\n" not in message
    assert server.addresses == [] or all(t.is_alive() is False for t in server._threads)


def test_port_in_use_is_one_line_naming_the_port(spool: Spool) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        server = SyslogServer([ListenerConfig("tcp", port=port)], spool.append)
        with pytest.raises(SourceUnavailable) as info:
            server.start()
    message = str(info.value)
    assert f"port {port}" in message and "in use" in message and "listen[0]" in message and "\n" not in message


def test_plaintext_beyond_loopback_logs_a_warning(spool: Spool) -> None:
    with capture_logs() as logs:
        server = serve(spool, ListenerConfig("tcp", host="127.0.0.1", port=0),
                       ListenerConfig("udp", host="0.0.0.0", port=0))
        server.stop()
    warnings = [e for e in logs if e["log_level"] == "warning" and "plaintext" in e["event"]]
    assert [w["protocol"] for w in warnings] == ["udp"]  # loopback plaintext is fine (tests, local relay)


# --- idle, slow and greedy clients -------------------------------------------------------------------------
def connect_from(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A TCP client bound to ``source``: 127.0.0.0/8 is all loopback, so 127.0.0.2 is a distinct sender."""
    return connect("127.0.0.1", port, source)


def closed_by_server(client: socket.socket, timeout: float) -> bool:
    """True if the server closes (or resets) ``client`` within ``timeout`` seconds."""
    client.settimeout(timeout)
    try:
        return client.recv(1) == b""
    except (ConnectionError, OSError) as exc:
        return not isinstance(exc, (socket.timeout, TimeoutError))


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_idle_connection_is_closed_after_idle_timeout(spool: Spool) -> None:
    server = serve(spool, ListenerConfig("tcp", port=0, idle_timeout=0.5))
    try:
        with connect_from(server.addresses[0][2]) as client:
            started = time.monotonic()
            assert closed_by_server(client, 10)
            assert time.monotonic() - started >= 0.4
        assert server.stats.idle_timeouts == 1
    finally:
        server.stop()


def test_slowloris_frame_is_dropped_after_frame_timeout(spool: Spool) -> None:
    """A sender trickling one frame byte by byte keeps the connection busy, not idle: the frame deadline
    drops it, and nothing of the unfinished frame is accepted."""
    server = serve(spool, ListenerConfig("tcp", port=0, idle_timeout=60, frame_timeout=1.0))
    try:
        port = server.addresses[0][2]
        with connect_from(port) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.sendall(octet(b"<1>1 complete"))
            started, closed = time.monotonic(), False
            slow = b"<1>1 " + b"s" * 200
            for byte in slow:
                try:
                    client.send(bytes([byte]))
                except OSError:
                    closed = True
                    break
                if closed_by_server(client, 0.1):
                    closed = True
                    break
            assert closed and time.monotonic() - started < 10
        assert server.stats.frame_timeouts == 1
        with connect_from(port) as client:
            client.sendall(octet(b"<1>1 after"))
        assert [r.data for r in wait_records(spool, 2)] == [b"<1>1 complete", b"<1>1 after"]
    finally:
        server.stop()


def test_per_source_and_total_caps_refuse_at_once_and_count(spool: Spool) -> None:
    server = serve(spool, ListenerConfig("tcp", port=0, max_connections=4, max_connections_per_source=2))
    port = server.addresses[0][2]
    with contextlib.ExitStack() as stack:
        try:
            with capture_logs() as logs:
                local = [stack.enter_context(connect_from(port)) for _ in range(3)]
                assert closed_by_server(local[2], 5)  # the third from 127.0.0.1 is over the per-source cap
                assert not closed_by_server(local[0], 0.3) and not closed_by_server(local[1], 0.1)
                other = [stack.enter_context(connect_from(port, "127.0.0.2")) for _ in range(2)]
                third = stack.enter_context(connect_from(port, "127.0.0.3"))
                assert closed_by_server(third, 5)  # 4 in total
                assert not closed_by_server(other[1], 0.3)
            assert wait_for(lambda: server.stats.refused_connections == 2)
            refusals = [e for e in logs if "refused" in e["event"]]
            assert {e["limit"] for e in refusals} == {"max_connections_per_source", "max_connections"}
            assert all(set(e) <= {"event", "log_level", "peer", "limit", "value", "protocol", "port", "refused"}
                       for e in refusals)
        finally:
            server.stop()


@pytest.fixture(params=["tls", "tcp"])
def guarded(request: pytest.FixtureRequest, spool: Spool, pki: dict) -> Iterator[tuple[SyslogServer, Any]]:
    """A listener with 16 connections per source (the default), only 20 in all, and a short idle timeout:
    without the per-source cap, twenty idle connections from one address would hold every slot.

    Yields the server and a ``send(message, source)`` that delivers one message the way a real device would.
    """
    tls = request.param == "tls"
    config = ListenerConfig(request.param, port=0, certfile=pki["certfile"] if tls else None,
                            idle_timeout=1.5, handshake_timeout=1.5, max_connections=20)
    server = serve(spool, config)
    port = server.addresses[0][2]

    def send(message: bytes, source: str) -> None:
        if tls:
            send_tls_lines("127.0.0.1", port, [message], pki["ca"], framing="octet", source=source)
        else:
            send_tcp_lines("127.0.0.1", port, [message], framing="octet", source=source)

    yield server, send
    server.stop()


def idle_crowd(stack: contextlib.ExitStack, port: int, n: int, tls_ca: Any = None) -> list[socket.socket]:
    """``n`` connections from 127.0.0.1 that never send a byte; with ``tls_ca``, half of them complete the
    TLS handshake first (idle after the handshake) and half stall before it (idle in the handshake)."""
    crowd = []
    for i in range(n):
        client = stack.enter_context(connect_from(port))
        if tls_ca is not None and i % 2:
            try:
                client = stack.enter_context(client_context(tls_ca).wrap_socket(client, server_hostname="127.0.0.1"))
            except (ssl.SSLError, OSError):
                pass  # over the per-source cap: refused, which is the point
        crowd.append(client)
    return crowd


@pytest.mark.parametrize("crowd_size", [20, 40])
def test_idle_crowd_does_not_lock_out_a_real_sender_from_another_source(
        spool: Spool, pki: dict, guarded: tuple[SyslogServer, Any], crowd_size: int) -> None:
    server, send = guarded
    port = server.addresses[0][2]
    with contextlib.ExitStack() as stack:
        idle_crowd(stack, port, crowd_size, pki["ca"] if server.listeners[0].protocol == "tls" else None)
        assert wait_for(lambda: server.stats.refused_connections >= crowd_size - 16)
        send(MSG, "127.0.0.2")  # while all the idle connections are still open
        assert [r.data for r in wait_records(spool, 1)] == [MSG]
        assert server.stats.refused_connections == crowd_size - 16


def test_idle_timeout_gives_a_locked_out_source_its_slots_back(
        spool: Spool, pki: dict, guarded: tuple[SyslogServer, Any]) -> None:
    """The same source (127.0.0.1) as twenty idle connections: refused at first, in once the idle
    timeout (or the handshake timeout) has reclaimed their slots."""
    server, send = guarded
    port = server.addresses[0][2]
    with contextlib.ExitStack() as stack:
        idle_crowd(stack, port, 20, pki["ca"] if server.listeners[0].protocol == "tls" else None)
        assert wait_for(lambda: server.stats.refused_connections >= 4)
        deadline = time.monotonic() + 15
        while not wait_records(spool, 1, timeout=0.3) and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ssl.SSLError):
                send(MSG, "127.0.0.1")
        assert [r.data for r in wait_records(spool, 1)] == [MSG]
        assert server.stats.idle_timeouts + server.stats.handshake_failures >= 1  # a slot was reclaimed


def test_tls_handshake_trickled_byte_by_byte_is_cut_at_handshake_timeout(spool: Spool, pki: dict) -> None:
    """A client that trickles its ClientHello must not hold a slot past ``handshake_timeout`` (a timeout
    per read would let one byte every few seconds keep the handshake alive forever)."""
    server = serve(spool, ListenerConfig("tls", port=0, certfile=pki["certfile"], handshake_timeout=0.5))
    try:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        hello_side = client_context(pki["ca"]).wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
        with pytest.raises(ssl.SSLWantReadError):
            hello_side.do_handshake()
        hello = outgoing.read()
        with connect_from(server.addresses[0][2]) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            started, closed = time.monotonic(), False
            for i in range(len(hello)):
                try:
                    client.send(hello[i : i + 1])
                except OSError:
                    closed = True
                    break
                if closed_by_server(client, 0.1):
                    closed = True
                    break
            assert closed and time.monotonic() - started < 5
        assert wait_for(lambda: server.stats.handshake_failures == 1)
    finally:
        server.stop()
