"""Test clients for the network listeners: send lines over TCP, TLS or UDP as a device or a log shipper would,
and poll a connector until what was sent has come out.

One module so that every listener test (syslog server, ATNA, VPN, winlogbeat) frames and sends the same way;
the copies that lived in each test file had begun to drift (TLS trust set up three ways).

Framing: ``"newline"`` (default) ends each line with LF unless it already ends with one, as JSON-lines shippers
do (winlogbeat/logstash ``json_lines``); ``"octet"`` is RFC 6587 octet counting, what RFC 5425 syslog over TLS
requires; ``"raw"`` sends the bytes as given (tests of broken framing).
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # trustme is a test dependency; importing it here would make every caller need it
    import trustme

    from connectors.base import Batch

LOOPBACK = "127.0.0.1"


def octet(msg: bytes) -> bytes:
    """One RFC 6587 octet-counted frame: ``LEN SP MSG``."""
    return b"%d %s" % (len(msg), msg)


def frame(lines: Sequence[bytes], framing: str = "newline") -> bytes:
    """All of ``lines`` as one byte string in the given framing (see the module docstring)."""
    if framing == "octet":
        return b"".join(octet(line) for line in lines)
    if framing == "newline":
        return b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines)
    if framing == "raw":
        return b"".join(lines)
    raise ValueError(f"unknown framing {framing!r}: newline, octet or raw")


def connect(host: str, port: int, source: str | None = None, timeout: float = 10.0) -> socket.socket:
    """A TCP connection, from ``source`` (e.g. ``127.0.0.2``, to look like another device) when given."""
    if source is None:
        return socket.create_connection((host, port), timeout=timeout)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect((host, port))
    return sock


def send_tcp_lines(host: str, port: int, lines: Sequence[bytes], *, framing: str = "newline",
                   source: str | None = None) -> None:
    """Send ``lines`` on one plain TCP connection, then close it."""
    with connect(host, port, source) as sock:
        sock.sendall(frame(lines, framing))


def client_context(ca: "trustme.CA | str | Path", client_ca: "trustme.CA | None" = None,
                   client_name: str = "device-1.hospital.example") -> ssl.SSLContext:
    """A verifying TLS client context trusting ``ca`` (a trustme CA or a CA PEM file); with ``client_ca``, it
    also presents a client certificate issued by that CA (mutual TLS)."""
    context = ssl.create_default_context()
    if isinstance(ca, (str, Path)):
        context.load_verify_locations(cafile=str(ca))
    else:
        ca.configure_trust(context)
    if client_ca is not None:
        client_ca.issue_cert(client_name).configure_cert(context)
    return context


def send_tls_lines(host: str, port: int, lines: Sequence[bytes], ca: "trustme.CA | str | Path", *,
                   framing: str = "newline", client_ca: "trustme.CA | None" = None,
                   server_hostname: str | None = None, source: str | None = None) -> None:
    """Send ``lines`` on one TLS connection that verifies the server against ``ca``, then close it."""
    context = client_context(ca, client_ca)
    with connect(host, port, source) as raw:
        with context.wrap_socket(raw, server_hostname=server_hostname or host) as tls:
            tls.sendall(frame(lines, framing))


def send_udp(host: str, port: int, datagrams: Sequence[bytes]) -> None:
    """Send each of ``datagrams`` as one UDP datagram (syslog over UDP: one message each, no framing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for datagram in datagrams:
            sock.sendto(datagram, (host, port))


def server_cert_files(ca: "trustme.CA", directory: Path, *hosts: str,
                      split_key: bool = False) -> tuple[str, str | None]:
    """Write a server certificate for ``hosts`` (default 127.0.0.1) issued by ``ca`` into ``directory``.

    Returns ``(certfile, keyfile)``: one PEM with key and chain (``keyfile`` None), or with ``split_key`` the
    certificate chain and the private key in two files, the two layouts a listener's options accept.
    """
    cert = ca.issue_cert(*(hosts or (LOOPBACK,)))
    certfile = directory / "server.pem"
    if not split_key:
        cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
        return str(certfile), None
    keyfile = directory / "server.key"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


def read_until(read: Callable[[], "Batch"], expected: int, timeout: float = 10.0) -> "Batch":
    """Call ``read`` (e.g. ``lambda: conn.read(None, 1000)``) until it gives ``expected`` events plus dead
    letters or ``timeout`` passes; returns the last batch (the caller asserts on it: a short batch fails there,
    naming what is missing, rather than here)."""
    deadline = time.monotonic() + timeout
    while True:
        batch = read()
        if len(batch.events) + len(batch.dead_letters) >= expected or time.monotonic() > deadline:
            return batch
        time.sleep(0.02)
