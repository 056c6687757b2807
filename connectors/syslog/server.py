"""Syslog listeners: TCP and TLS (RFC 6587 framing, RFC 5425) and UDP (RFC 5426), on plain threads.

Why threads and not asyncio: the work per chunk is a blocking ``fsync`` (the spool's durability promise) and
the engine around us is synchronous; one thread per connection keeps each sender's bytes in order without
an executor hop, and hospital syslog fan-in is tens to hundreds of connections, not tens of thousands.

A listener never parses payloads. It frames bytes into messages and hands them, together with any framing
errors, to a ``sink`` (the spool's ``append``) in one call per ``recv()``: one fsync covers everything that
chunk carried. If the sink fails (disk full), the connection is closed so that a sender that buffers can
retry later instead of us dropping data silently.

Idle, slow and greedy clients (a listener must stay open to real senders whatever others do):

* ``idle_timeout``: a connection that sends nothing for that long is closed (the slot goes back);
* ``frame_timeout``: a frame that has started must end within that long - a sender trickling one byte a
  second is never idle, so only a deadline on the frame drops it (the unfinished frame is not accepted);
* ``handshake_timeout``: the whole TLS handshake, not each read, must finish in time;
* ``max_connections`` / ``max_connections_per_source`` (:mod:`connectors.syslog.limits`): excess
  connections are closed at once, counted (``stats.refused_connections``) and logged (rate limited; the
  peer's IP address only, never payload bytes).

TLS is the default protocol; plaintext TCP/UDP must be asked for, and bound beyond loopback it is logged
as a warning at start. Start-up failures (a missing certificate file, a port in use) raise
:class:`~engine.errors.SourceUnavailable` with one line naming the ``listen[i]`` key, path or port.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from connectors.syslog.framing import FrameDecoder, FrameError
from connectors.syslog.limits import ConnectionLimiter, RefusalLog
from connectors.syslog.spool import KIND_ERROR, SpoolRecord
from connectors.syslog.tls import MINIMUM_VERSION, check_files, ssl_reason
from engine.errors import SourceUnavailable
from engine.logs import get_logger

log = get_logger("wardwatch.syslog")

Sink = Callable[[Sequence[SpoolRecord]], None]
PROTOCOLS = ("tls", "tcp", "udp")
#: The IANA ports: syslog-tls (RFC 5425), syslog-conn (RFC 3195/6587 practice), syslog (RFC 5426).
DEFAULT_PORTS = {"tls": 6514, "tcp": 601, "udp": 514}
_LIMITS = ("handshake_timeout", "idle_timeout", "frame_timeout", "max_connections", "max_connections_per_source")
_POLL = 0.25  # seconds between checks of the stop flag in blocking loops
_RECV = 65536


@dataclass(frozen=True)
class ListenerConfig:
    """One ``listen`` entry. TLS is the default; ``port`` defaults to the protocol's IANA port.

    ``port`` 0 binds an ephemeral port (tests; see :attr:`SyslogServer.addresses`). The timeouts are seconds.
    """

    protocol: str = "tls"
    host: str = "127.0.0.1"
    port: int | None = None  # None: DEFAULT_PORTS[protocol]
    certfile: str | None = None
    keyfile: str | None = None
    password: str | None = None
    ca_certs: str | None = None  # set: clients must present a certificate signed by one of these CAs
    handshake_timeout: float = 10.0
    idle_timeout: float = 300.0
    frame_timeout: float = 30.0
    max_connections: int = 256
    max_connections_per_source: int = 16

    def __post_init__(self) -> None:
        if self.port is None and self.protocol in DEFAULT_PORTS:
            object.__setattr__(self, "port", DEFAULT_PORTS[self.protocol])

    @classmethod
    def from_mapping(cls, value: Mapping[str, Any]) -> "ListenerConfig":
        """Validate one ``listen`` entry; ``ValueError`` names the offending key."""
        if not isinstance(value, Mapping):
            raise ValueError(f"listen entry must be a mapping, got {value!r}")
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown listen option(s): {', '.join(sorted(unknown))}")
        protocol = value.get("protocol", "tls")
        if protocol not in PROTOCOLS:
            raise ValueError(f"listen protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        port = value.get("port")
        if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535):
            raise ValueError(f"listen port must be an integer 1..65535 (0: any free port), got {port!r}")
        for key in _LIMITS:
            limit = value.get(key, 1)
            if not isinstance(limit, (int, float)) or isinstance(limit, bool) or limit <= 0:
                raise ValueError(f"listen option {key!r} must be a positive number, got {limit!r}")
        config = cls(**value)
        if config.protocol == "tls" and not config.certfile:
            raise ValueError("listen protocol 'tls' (the default) needs 'certfile' (the certificate chain; "
                             "'keyfile' too unless the key is in it); for plaintext say protocol: tcp or udp")
        return config

    def ssl_context(self, where: str = "listen") -> ssl.SSLContext:
        """The server context; a missing or unusable file is :class:`SourceUnavailable` naming key and path."""
        check_files(where, {key: getattr(self, key) for key in ("certfile", "keyfile", "ca_certs")},
                    SourceUnavailable)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = MINIMUM_VERSION
        # Syslog over TLS is one-way: senders never read. TLS 1.3 session tickets would sit unread at the sender
        # and turn its close into a TCP reset, which can discard frames this side has not read yet (a CI run
        # lost a frame so). Resumption buys a long-lived device connection nothing.
        context.num_tickets = 0
        try:
            context.load_cert_chain(self.certfile, self.keyfile, self.password)  # type: ignore[arg-type]
        except (ssl.SSLError, OSError) as exc:
            key = "certfile/keyfile" if self.keyfile else "certfile"
            paths = ", ".join(p for p in (self.certfile, self.keyfile) if p)
            raise SourceUnavailable(f"{where}.{key}: cannot load the certificate and key ({ssl_reason(exc)}): "
                                    f"{paths}") from None
        if self.ca_certs:
            try:
                context.load_verify_locations(self.ca_certs)
            except (ssl.SSLError, OSError) as exc:
                raise SourceUnavailable(f"{where}.ca_certs: cannot load CA certificates ({ssl_reason(exc)}): "
                                        f"{self.ca_certs}") from None
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; wildcards and every other address are "beyond"."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


@dataclass
class ListenerStats:
    connections: int = 0
    handshake_failures: int = 0
    frames: int = 0
    frame_errors: int = 0
    sink_failures: int = 0
    refused_connections: int = 0  # over max_connections or max_connections_per_source
    idle_timeouts: int = 0
    frame_timeouts: int = 0


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
        self._refusals = RefusalLog()

    # --- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            for index, config in enumerate(self.listeners):
                self._bind(config, f"listen[{index}]")
        except BaseException:
            self.stop()
            raise

    def _bind(self, config: ListenerConfig, where: str) -> None:
        port = config.port or 0
        try:
            if config.protocol == "udp":
                family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
                    sock.bind((config.host, port))
                except BaseException:
                    sock.close()
                    raise
                target: Callable[..., None] = self._serve_udp
                args: tuple[Any, ...] = (sock,)
            else:
                context = config.ssl_context(where) if config.protocol == "tls" else None
                sock = socket.create_server((config.host, port), backlog=128)
                limiter = ConnectionLimiter(config.max_connections, config.max_connections_per_source)
                target, args = self._serve_tcp, (sock, config, context, limiter)
        except (OSError, OverflowError) as exc:
            raise SourceUnavailable(_bind_error(where, config, port, exc)) from None
        sock.settimeout(_POLL)
        self._sockets.append(sock)
        host, port = sock.getsockname()[:2]
        self.addresses.append((config.protocol, host, port))
        self._spawn(target, args, f"syslog-{config.protocol}-{port}")
        log.info("syslog listener started", protocol=config.protocol, host=host, port=port,
                 client_auth=bool(config.ca_certs) if config.protocol == "tls" else None)
        if config.protocol != "tls" and not is_loopback(config.host):
            log.warning("syslog listener accepts plaintext beyond loopback: audit data and patient ids cross "
                        "the network unencrypted; use protocol: tls (RFC 5425) where the sender can",
                        protocol=config.protocol, host=host, port=port)

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
    def _serve_tcp(self, sock: socket.socket, config: ListenerConfig, context: ssl.SSLContext | None,
                   limiter: ConnectionLimiter) -> None:
        try:
            port = sock.getsockname()[1]
        except OSError:  # stop() closed the socket before this thread ran
            return
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
            source = addr[0]
            limit = limiter.acquire(source)
            if limit is not None:
                self._refuse(conn, source, limit, config, port)
                continue
            try:
                self._spawn(self._serve_connection, (conn, addr, config, context, limiter),
                            f"syslog-{config.protocol}-{addr[0]}:{addr[1]}")
            except RuntimeError:  # no thread to be had: same as being over the cap
                limiter.release(source)
                self._refuse(conn, source, "threads", config, port)

    def _refuse(self, conn: socket.socket, source: str, limit: str, config: ListenerConfig, port: int) -> None:
        """Close an excess connection at once (the sender sees it and retries), count it, log it sparingly."""
        try:
            conn.close()
        except OSError:
            pass
        with self._lock:
            self.stats.refused_connections += 1
        refused = self._refusals.should_log((port, limit))
        if refused:
            log.warning("syslog connection refused", peer=source, limit=limit,
                        value=getattr(config, limit, None), protocol=config.protocol, port=port, refused=refused)

    def _serve_connection(self, conn: socket.socket, addr: Any, config: ListenerConfig,
                          context: ssl.SSLContext | None, limiter: ConnectionLimiter) -> None:
        peer = f"{config.protocol}:{addr[0]}:{addr[1]}"
        self.stats.connections += 1
        with self._lock:
            self._conns.add(conn)
        stream: socket.socket = conn
        try:
            if context is not None:
                # CPython applies a socket timeout to the whole do_handshake() as one deadline, not to each read, so
                # a client trickling its ClientHello is cut at handshake_timeout (a test pins this).
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
            self._receive(stream, peer, config)
        finally:
            limiter.release(addr[0])
            with self._lock:
                self._conns.discard(conn)
                self._conns.discard(stream)
            try:
                stream.close()
            except OSError:
                pass

    def _receive(self, stream: socket.socket, peer: str, config: ListenerConfig) -> None:
        """Read, frame and deliver until the peer closes, a timeout fires, or the server stops."""
        decoder = FrameDecoder(self.max_message_bytes)
        last_data = time.monotonic()
        frame_started: float | None = None  # when the unfinished frame's first byte arrived
        while not self._stop.is_set():
            now = time.monotonic()
            if frame_started is not None and now - frame_started > config.frame_timeout:
                with self._lock:
                    self.stats.frame_timeouts += 1
                log.warning("syslog frame not completed in time; closing connection (frame dropped)",
                            peer=peer, frame_timeout=config.frame_timeout)
                return
            if now - last_data > config.idle_timeout:
                with self._lock:
                    self.stats.idle_timeouts += 1
                log.info("syslog connection idle; closing it", peer=peer, idle_timeout=config.idle_timeout)
                return
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
            last_data = time.monotonic()
            items = decoder.feed(data) if data else decoder.close()
            if items and not self._deliver(items, peer):
                return
            if not data or decoder.dead:
                return
            if not decoder.pending:
                frame_started = None
            elif items or frame_started is None:
                frame_started = last_data  # a new frame began in this chunk

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


def _bind_error(where: str, config: ListenerConfig, port: int, exc: BaseException) -> str:
    """One line naming the port (and the listen entry) for a listener that cannot be bound."""
    what = f"{where}: {config.protocol} port {port} on {config.host}"
    code = getattr(exc, "errno", None)
    if isinstance(exc, OverflowError):
        return f"{what}: port out of range (1..65535)"
    if code == errno.EADDRINUSE:
        return f"{what} is already in use (another syslog receiver, or a second Wardwatch?)"
    if code == errno.EACCES:
        return f"{what}: permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"
    if code == errno.EADDRNOTAVAIL:
        return f"{what}: {config.host} is not an address of this machine"
    if isinstance(exc, socket.gaierror):
        return f"{what}: host {config.host!r} cannot be resolved"
    return f"{what}: cannot bind ({ssl_reason(exc)})"
