"""Listeners over real loopback sockets: TLS (trustme certificates), TCP, UDP, framing errors."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path
from typing import Iterator

import pytest

from connectors.syslog.server import ListenerConfig, SyslogServer
from connectors.syslog.spool import KIND_ERROR, Spool, SpoolItem, SpoolRecord

trustme = pytest.importorskip("trustme")

MSG = b"<85>1 2024-01-01T00:00:00Z host app - IHE+RFC-3881 - \xef\xbb\xbf<AuditMessage/>"


def octet(msg: bytes) -> bytes:
    return b"%d %s" % (len(msg), msg)


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
    server = serve(spool, ListenerConfig("tcp"), max_bytes=1024)
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
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(octet(b"<1>1 a") + octet(b"<1>1 b") + b"<1>1 c\n<1>1 d\r\n" + octet(b"<1>1 e"))
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
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(octet(b"<1>1 next connection"))
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
    server = serve(spool, ListenerConfig("udp"), max_bytes=2048)
    try:
        port = server.addresses[0][2]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(MSG, ("127.0.0.1", port))
            client.sendto(MSG + b"\n", ("127.0.0.1", port))
            client.sendto(b"<1>1 " + b"z" * 4000, ("127.0.0.1", port))
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
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile = tmp_path / "server.pem"
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return {"ca": ca, "certfile": str(certfile), "ca_file": str(ca_file)}


def tls_client(ca: "trustme.CA", client_ca: "trustme.CA | None" = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if client_ca is not None:
        client_ca.issue_cert("device-1.hospital.example").configure_cert(context)
    return context


def test_tls_with_client_certificate(spool: Spool, pki: dict) -> None:
    server = serve(spool, ListenerConfig("tls", certfile=pki["certfile"], ca_certs=pki["ca_file"]))
    try:
        port = server.addresses[0][2]
        context = tls_client(pki["ca"], client_ca=pki["ca"])
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as client:
                client.sendall(octet(MSG) * 3)
        records = wait_records(spool, 3)
        assert [r.data for r in records] == [MSG] * 3 and records[0].peer.startswith("tls:")
    finally:
        server.stop()


@pytest.mark.parametrize("client_cert", ["none", "other-ca"])
def test_tls_client_failing_verification_is_refused(spool: Spool, pki: dict, client_cert: str) -> None:
    server = serve(spool, ListenerConfig("tls", certfile=pki["certfile"], ca_certs=pki["ca_file"]))
    try:
        port = server.addresses[0][2]
        context = tls_client(pki["ca"], client_ca=None if client_cert == "none" else trustme.CA())
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
        good = tls_client(pki["ca"], client_ca=pki["ca"])
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with good.wrap_socket(raw, server_hostname="127.0.0.1") as client:
                client.sendall(octet(b"<1>1 good"))
        assert [r.data for r in wait_records(spool, 1)] == [b"<1>1 good"]
    finally:
        server.stop()


def test_tls_client_rejects_server_from_unknown_ca(spool: Spool, pki: dict) -> None:
    server = serve(spool, ListenerConfig("tls", certfile=pki["certfile"]))
    try:
        port = server.addresses[0][2]
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with pytest.raises(ssl.SSLCertVerificationError):
                tls_client(trustme.CA()).wrap_socket(raw, server_hostname="127.0.0.1")
    finally:
        server.stop()


def test_listener_config_validation() -> None:
    with pytest.raises(ValueError):
        ListenerConfig.from_mapping({"protocol": "sctp"})
    with pytest.raises(ValueError):
        ListenerConfig.from_mapping({"protocol": "tls"})
    with pytest.raises(ValueError):
        ListenerConfig.from_mapping({"protocol": "tcp", "bogus": 1})
