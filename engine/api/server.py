"""uvicorn on a thread inside the service: start (bound, or a clear error), serve, stop cleanly.

Why a thread: the service is one process (scheduler threads, connectors); the API is one more part of it,
started after the scheduler and stopped before the store closes. uvicorn installs signal handlers only on
the main thread, so the service keeps its own SIGTERM handling.

Hardening kept from the stdlib server this replaces:
- the socket is bound here, before uvicorn starts, so "port in use" is an ``OSError`` at start (the CLI
  makes it one line naming ``service.http``, host and port) and port 0 gives a free port (``address``);
- a connection that stays silent for ``idle_timeout`` seconds is closed, *also before its first request*
  (uvicorn's keep-alive timer starts only after a response; :class:`_IdleClosingH11` starts it on connect);
- ``Server: wardwatch`` (no uvicorn or Python version), no uvicorn access log (engine.api.access_log logs
  route templates instead: paths and queries name patients).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from connectors.syslog.server import is_loopback
from engine.api.settings import TlsOptions
from engine.config import ConfigError
from engine.logs import get_logger

log = get_logger("wardwatch.api")


class _IdleClosingH11(H11Protocol):
    """h11 protocol whose idle timer runs from the moment a client connects (slow or silent clients cannot
    pin connections); the first bytes received cancel it, as uvicorn does for keep-alive."""

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)


class ApiServer:
    """The ASGI ``app`` served on ``host:port`` (``tls``: HTTPS, with client certificates if a CA is given)."""

    def __init__(self, app: Any, host: str, port: int, *, tls: TlsOptions | None = None,
                 idle_timeout: float = 10.0, source: str = "config", resolve_path: Any = None):
        self.tls = tls
        resolve = resolve_path or (lambda p: p)
        ssl_options: dict[str, Any] = {}
        if tls is not None:
            ssl_options = {"ssl_certfile": str(resolve(tls.cert)), "ssl_keyfile": str(resolve(tls.key))}
            if tls.client_ca:
                ssl_options.update(ssl_ca_certs=str(resolve(tls.client_ca)), ssl_cert_reqs=ssl.CERT_REQUIRED)
        self.config = uvicorn.Config(app, http=_IdleClosingH11, lifespan="off", access_log=False,
                                     log_config=None, log_level="warning",  # start/stop: the service logs them
                                     server_header=False, headers=[("server", "wardwatch")],
                                     timeout_keep_alive=idle_timeout, **ssl_options)
        try:
            self.config.load()  # reads the certificate and key now: a bad file is a start-up error
        except (OSError, ssl.SSLError) as exc:
            key = "service.http.tls"
            raise ConfigError(source, key, f"cannot load the TLS certificate, key or CA: {exc}") from None
        self.socket = self._bind(host, port)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name="wardwatch-http", daemon=True)
        if not is_loopback(host):
            log.warning("API bound beyond loopback: every client that reaches it must present a token over TLS",
                        host=host or "0.0.0.0", port=port)

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host or "0.0.0.0", port))
        except OSError:  # `wardwatch run` maps it to SourceUnavailable naming service.http, host and port
            sock.close()
            raise
        sock.listen(128)
        sock.set_inheritable(True)
        return sock

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address[0]}:{self.address[1]}"

    def start(self, timeout: float = 10.0) -> None:
        """Serve on the thread; return once uvicorn accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start (see the log above)")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let requests in flight finish (bounded), close the socket."""
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.socket.close()
