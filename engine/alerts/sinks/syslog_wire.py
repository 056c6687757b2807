"""RFC 5424 messages and the sender side of syslog: TLS (RFC 5425), TCP (RFC 6587) and UDP (RFC 5426).

Why apart from the sink (syslog.py): this is protocol, the sink is policy. The message builder is the
inverse of the project's receiver parser (connectors/syslog/rfc5424.py) and the framing is
connectors/syslog/framing.py's ``encode_frame``, so a property test can send through the one and read back
through the other; the connection keeps no alert state and knows nothing about the outbox.

Every socket or TLS failure leaves here as :class:`~engine.errors.SinkUnavailable` (retry later): a SIEM
that is down must cost a delay, never an alert. A message UDP cannot carry is :class:`SinkRejected`.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime, timezone

from connectors.syslog.framing import encode_frame
from connectors.syslog.tls import ssl_reason
from engine.errors import SinkRejected, SinkUnavailable

BOM = b"\xef\xbb\xbf"
#: The private enterprise number RFC 5612 reserves for documentation; ``wardwatch@32473`` is our SD-ID.
SD_ID = "wardwatch@32473"
FACILITIES = {"kern": 0, "user": 1, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10,
              **{f"local{n}": 16 + n for n in range(8)}}
#: Wardwatch levels -> syslog severities (RFC 5424 6.2.1): critical=2 crit ... informational=6 info.
SEVERITIES = {"critical": 2, "high": 3, "medium": 4, "low": 5, "informational": 6}
#: The largest payload one UDP/IPv4 datagram can carry (65535 - 8 UDP - 20 IP header octets).
MAX_UDP_BYTES = 65507

#: Seconds a new TLS connection is given to refuse us before the first write (see ``_open``).
_SETTLE = 0.2

_SD_ESCAPE = str.maketrans({"\\": "\\\\", '"': '\\"', "]": "\\]"})


def _header_token(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit`` octets, ``-`` when empty."""
    token = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return token or "-"


def format_rfc5424(msg: bytes, *, facility: int, severity: int, msgid: str,
                   sd: dict[str, str], hostname: str, appname: str = "wardwatch",
                   procid: str | None = None, now: datetime | None = None) -> bytes:
    """One RFC 5424 message: ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] BOM MSG``.

    MSG is UTF-8 and says so with a BOM (RFC 5424 6.4), so receivers need not guess the charset of names.
    """
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    ts = stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond:06d}Z"
    params = "".join(f' {_header_token(k, 32)}="{v.translate(_SD_ESCAPE)}"' for k, v in sd.items())
    head = (f"<{facility * 8 + severity}>1 {ts} {_header_token(hostname, 255)} {_header_token(appname, 48)} "
            f"{_header_token(procid or str(os.getpid()), 128)} {_header_token(msgid, 32)} "
            f"[{SD_ID}{params}] ")
    return head.encode("utf-8") + BOM + msg


def _open(sock: socket.socket, wait: float = 0.0) -> bool:
    """False when the receiver has closed, reset or refused the connection.

    Why: a receiver closes idle connections (ours after ``idle_timeout``), and the first ``send`` on such
    a socket still succeeds - the bytes are lost and only the next call fails. A syslog receiver never
    sends application data, so a readable socket means end of stream, an error, or TLS housekeeping
    (TLS 1.3 session tickets, read and dropped here). ``wait``: how long to give a fresh TLS connection to
    say no - under TLS 1.3 a server refuses a client certificate only *after* the client's handshake
    finished, and a message written before that alert arrives would be lost.
    """
    try:
        readable, _, _ = select.select([sock], [], [], wait)
    except (OSError, ValueError):
        return False
    if not readable:
        return True
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        data = sock.recv(1) if isinstance(sock, ssl.SSLSocket) else sock.recv(1, socket.MSG_PEEK)
    except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
        return True  # only TLS records without application data were waiting
    except OSError:  # ssl.SSLError included: an alert from the receiver
        return False
    finally:
        sock.settimeout(timeout)
    return bool(data)


@dataclass(frozen=True)
class Endpoint:
    """Where to send: ``protocol`` tls|tcp|udp, and for streams the framing (TLS: octet counting only)."""

    protocol: str
    host: str
    port: int
    framing: str = "octet-counting"
    timeout: float = 10.0
    server_name: str | None = None  # the name the certificate must carry; default: host


class SyslogConnection:
    """One lazily opened connection (or UDP socket); reopened on the next send after any failure.

    Why no application-level acknowledgement: syslog has none. A TCP send that returned only means the
    kernel took the bytes, so a failure *after* part of a batch went out is reported as unavailable and the
    whole batch is sent again; receivers deduplicate on the ``id``/``revision`` structured data.
    """

    def __init__(self, endpoint: Endpoint, context: ssl.SSLContext | None = None):
        self.endpoint = endpoint
        self.context = context
        self._sock: socket.socket | None = None

    def send(self, messages: list[bytes]) -> None:
        if self.endpoint.protocol == "udp":
            self._send_udp(messages)
            return
        data = b"".join(encode_frame(m, self.endpoint.framing) for m in messages)
        try:
            sock = self._sock if self._sock is not None and _open(self._sock) else self._connect()
            sock.sendall(data)
        except (OSError, ssl.SSLError) as exc:
            self.close()
            raise SinkUnavailable(f"{self._where()}: cannot send ({ssl_reason(exc)})") from None

    def _send_udp(self, messages: list[bytes]) -> None:
        too_big = next((len(m) for m in messages if len(m) > MAX_UDP_BYTES), None)
        if too_big is not None:
            raise SinkRejected(f"{self._where()}: a message of {too_big} octets does not fit a UDP datagram "
                               f"(max {MAX_UDP_BYTES}); use protocol tcp or tls, or cap the evidence")
        try:
            if self._sock is None:
                family = socket.AF_INET6 if ":" in self.endpoint.host else socket.AF_INET
                self._sock = socket.socket(family, socket.SOCK_DGRAM)
            for message in messages:
                self._sock.sendto(message, (self.endpoint.host, self.endpoint.port))
        except OSError as exc:
            self.close()
            raise SinkUnavailable(f"{self._where()}: cannot send ({ssl_reason(exc)})") from None

    def _connect(self) -> socket.socket:
        self.close()
        ep = self.endpoint
        raw = socket.create_connection((ep.host, ep.port), timeout=ep.timeout)
        if ep.protocol == "tls":
            assert self.context is not None
            try:
                raw = self.context.wrap_socket(raw, server_hostname=ep.server_name or ep.host)
            except BaseException:
                raw.close()
                raise
            if not _open(raw, wait=min(_SETTLE, ep.timeout)):
                raw.close()
                raise ConnectionRefusedError("the receiver closed the TLS connection after the handshake "
                                             "(client certificate refused?)")
        self._sock = raw
        return raw

    def _where(self) -> str:
        return f"syslog {self.endpoint.protocol}://{self.endpoint.host}:{self.endpoint.port}"

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
