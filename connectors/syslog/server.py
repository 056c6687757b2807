"""Syslog listeners: TCP and TLS (RFC 6587 framing, RFC 5425) and UDP (RFC 5426), on plain threads.

Why threads and not asyncio: the work per chunk is a blocking ``fsync`` (the spool's durability promise) and
the engine around us is synchronous; one thread per connection keeps each sender's bytes in order without
an executor hop, and hospital syslog fan-in is tens to hundreds of connections, not tens of thousands.

A listener never parses payloads. It frames bytes into messages and hands them, together with any framing
errors, to a ``sink`` (the spool's ``append``) in one call per ``recv()``: one fsync covers everything that
chunk carried. If the sink fails (disk full), the connection is closed so that a sender that buffers can
retry later instead of us dropping data silently.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from connectors.syslog.framing import FrameDecoder, FrameError
from connectors.syslog.spool import KIND_ERROR, SpoolRecord
from engine.logs import get_logger

log = get_logger("wardwatch.syslog")

Sink = Callable[[Sequence[SpoolRecord]], None]
PROTOCOLS = ("tcp", "tls", "udp")
_POLL = 0.25  # seconds between checks of the stop flag in blocking loops
_RECV = 65536


@dataclass(frozen=True)
class ListenerConfig:
    """One ``listen`` entry. ``port`` 0 binds an ephemeral port (tests); see :attr:`SyslogServer.addresses`."""

    protocol: str
    host: str = "127.0.0.1"
    port: int = 0
    certfile: str | None = None
    keyfile: str | None = None
    password: str | None = None
    ca_certs: str | None = None  # set: clients must present a certificate signed by one of these CAs
    handshake_timeout: float = 10.0
    max_connections: int = 512

    @classmethod
    def from_mapping(cls, value: Mapping[str, Any]) -> "ListenerConfig":
        if not isinstance(value, Mapping):
            raise ValueError(f"listen entry must be a mapping, got {value!r}")
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown listen option(s): {', '.join(sorted(unknown))}")
        config = cls(**value)
        if config.protocol not in PROTOCOLS:
            raise ValueError(f"listen protocol must be one of {PROTOCOLS}, got {config.protocol!r}")
        if config.protocol == "tls" and not config.certfile:
            raise ValueError("listen protocol 'tls' needs certfile (and keyfile unless it is in certfile)")
        if not isinstance(config.port, int) or not 0 <= config.port <= 65535:
            raise ValueError(f"listen port must be 0..65535, got {config.port!r}")
        return config

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.certfile, self.keyfile, self.password)  # type: ignore[arg-type]
        if self.ca_certs:
            context.load_verify_locations(self.ca_certs)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


@dataclass
class ListenerStats:
    connections: int = 0
    handshake_failures: int = 0
    frames: int = 0
    frame_errors: int = 0
    sink_failures: int = 0


class SyslogServer:
    """Binds every configured listener on ``start()`` (errors surface there), serves until ``stop()``."""

    def __init__(self, listeners: Sequence[ListenerConfig], sink: Sink, *, max_message_bytes: int = 65536):
        self.listeners = list(listeners)
        self.sink = sink
        self.max_message_bytes = max_message_bytes
        self.stats = ListenerStats()
        self.addresses: list[tuple[str, str, int]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    # --- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            for config in self.listeners:
                self._bind(config)
        except BaseException:
            self.stop()
            raise

    def _bind(self, config: ListenerConfig) -> None:
        if config.protocol == "udp":
            family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            sock.bind((config.host, config.port))
            target: Callable[..., None] = self._serve_udp
            args: tuple[Any, ...] = (sock,)
        else:
            context = config.ssl_context() if config.protocol == "tls" else None
            sock = socket.create_server((config.host, config.port), backlog=128)
            target, args = self._serve_tcp, (sock, config, context)
        sock.settimeout(_POLL)
        self._sockets.append(sock)
        host, port = sock.getsockname()[:2]
        self.addresses.append((config.protocol, host, port))
        self._spawn(target, args, f"syslog-{config.protocol}-{port}")
        log.info("syslog listener started", protocol=config.protocol, host=host, port=port,
                 client_auth=bool(config.ca_certs) if config.protocol == "tls" else None)

    def _spawn(self, target: Callable[..., None], args: tuple[Any, ...], name: str) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every connection, wait for the threads (a partial frame is dropped: the
        sender never completed it, and a TCP sender that reconnects will send it again)."""
        self._stop.set()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    # --- TCP / TLS ------------------------------------------------------------------------------------
    def _serve_tcp(self, sock: socket.socket, config: ListenerConfig, context: ssl.SSLContext | None) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = sock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(_POLL)  # EMFILE and friends: back off instead of spinning
                continue
            with self._lock:
                too_many = len(self._conns) >= config.max_connections
            if too_many:
                log.warning("syslog connection refused: max_connections reached", peer=addr[0],
                            max_connections=config.max_connections)
                conn.close()
                continue
            self._spawn(self._serve_connection, (conn, addr, config, context),
                        f"syslog-{config.protocol}-{addr[0]}:{addr[1]}")

    def _serve_connection(self, conn: socket.socket, addr: Any, config: ListenerConfig,
                          context: ssl.SSLContext | None) -> None:
        peer = f"{config.protocol}:{addr[0]}:{addr[1]}"
        self.stats.connections += 1
        with self._lock:
            self._conns.add(conn)
        stream: socket.socket = conn
        try:
            if context is not None:
                conn.settimeout(config.handshake_timeout)
                try:
                    stream = context.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    self.stats.handshake_failures += 1
                    log.warning("syslog TLS handshake failed", peer=peer, error=str(exc))
                    return
                with self._lock:
                    self._conns.add(stream)
            stream.settimeout(_POLL)
            decoder = FrameDecoder(self.max_message_bytes)
            while not self._stop.is_set():
                try:
                    data = stream.recv(_RECV)
                except (socket.timeout, TimeoutError):
                    continue
                except ssl.SSLWantReadError:
                    continue
                except (OSError, ssl.SSLError) as exc:
                    if not self._stop.is_set():
                        log.info("syslog connection error", peer=peer, error=str(exc))
                    return
                items = decoder.feed(data) if data else decoder.close()
                if items and not self._deliver(items, peer):
                    return
                if not data or decoder.dead:
                    return
        finally:
            with self._lock:
                self._conns.discard(conn)
                self._conns.discard(stream)
            try:
                stream.close()
            except OSError:
                pass

    def _deliver(self, items: Sequence[bytes | FrameError], peer: str) -> bool:
        now = time.time()
        records = []
        for item in items:
            if isinstance(item, FrameError):
                self.stats.frame_errors += 1
                records.append(SpoolRecord(item.raw, peer, now, KIND_ERROR, item.reason))
                if item.fatal:
                    log.warning("syslog framing error; closing connection", peer=peer, reason=item.reason)
            else:
                records.append(SpoolRecord(item, peer, now))
        try:
            self.sink(records)
        except Exception as exc:  # noqa: BLE001 - any sink failure means: do not pretend we accepted it
            self.stats.sink_failures += 1
            log.error("syslog spool write failed; closing connection", peer=peer, error=str(exc))
            return False
        self.stats.frames += len(records)
        return True

    # --- UDP ------------------------------------------------------------------------------------------
    def _serve_udp(self, sock: socket.socket) -> None:
        maxlen = self.max_message_bytes
        while not self._stop.is_set():
            try:
                data, addr = sock.recvfrom(_RECV)
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            peer = f"udp:{addr[0]}:{addr[1]}"
            # One datagram is one message (RFC 5426); many senders still append a newline or NUL.
            data = data.rstrip(b"\n\x00")
            if data.endswith(b"\r"):
                data = data[:-1]
            if not data:
                continue
            item: bytes | FrameError = data
            if len(data) > maxlen:
                item = FrameError(f"datagram of {len(data)} octets exceeds max_message_bytes={maxlen}",
                                  data[:maxlen])
            self._deliver([item], peer)
