"""A real HTTP receiver for the HTTP sinks' tests: records every request, checks the HMAC signature,
answers what the test scripts, and deduplicates on ``Idempotency-Key`` the way a careful receiver would.

One module so the webhook, Slack and Teams tests talk to the same peer (a ``ThreadingHTTPServer`` on
loopback, TLS when given a ``trustme`` CA).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    json: Any = None
    signature_ok: bool | None = None  # None: the receiver has no secret


@dataclass
class Receiver:
    """``answer(request) -> status`` decides each reply (default: ``ok_status``); ``script`` statuses go first."""

    secret: bytes | None = None
    ok_status: int = 200
    ok_body: bytes = b"ok"
    script: list[int] = field(default_factory=list)
    answer: Callable[[Received], int] | None = None
    tls: Any = None  # a trustme CA
    error_headers: dict[str, str] = field(default_factory=dict)  # sent with every non-2xx (Retry-After)
    requests: list[Received] = field(default_factory=list)
    accepted: dict[str, Any] = field(default_factory=dict)  # Idempotency-Key (or n) -> body JSON

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        if self.tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.issue_cert("127.0.0.1").configure_cert(context)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if self.tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}/hook/T000/SECRETPATH"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()  # waits for serve_forever: only when it runs
        self.httpd.server_close()

    def bodies(self) -> list[Any]:
        return [r.json for r in self.requests]

    def _decide(self, req: Received) -> int:
        with self.lock:
            if self.script:
                return self.script.pop(0)
        return self.answer(req) if self.answer else self.ok_status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                req = Received(self.path, headers, body, 0)
                try:
                    req.json = json.loads(body)
                except ValueError:
                    pass
                if receiver.secret is not None:
                    expected = "sha256=" + hmac.new(receiver.secret, body, hashlib.sha256).hexdigest()
                    req.signature_ok = hmac.compare_digest(expected, headers.get("x-wardwatch-signature", ""))
                status = 401 if req.signature_ok is False else receiver._decide(req)
                req.status = status
                with receiver.lock:
                    receiver.requests.append(req)
                    if 200 <= status < 300:
                        key = headers.get("idempotency-key") or str(len(receiver.requests))
                        receiver.accepted.setdefault(key, req.json)
                reply = receiver.ok_body if 200 <= status < 300 else b"invalid_payload"
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                for name, value in ({} if 200 <= status < 300 else receiver.error_headers).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply)

        return Handler
