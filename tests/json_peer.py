"""A real HTTP server on loopback that answers GETs with JSON, for the sources and lookups that pull from a
FHIR server.

One helper so that the tests of the FHIR Patient lookup, the FHIR Encounter pull, config check and the
credential checks of the FHIR connector start the same kind of peer; each used to write its own
``BaseHTTPRequestHandler`` with the same boilerplate.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, Union
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class PeerRequest:
    """One GET as the peer received it."""

    path: str  #: with its query string, as sent
    headers: Message

    @property
    def route(self) -> str:
        """The path without its query string."""
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)


#: (HTTP status, the JSON body or None for none) or (status, body, extra headers such as ``Location``)
Reply = Union["tuple[int, Any]", "tuple[int, Any, dict[str, str]]"]
Answer = Callable[[PeerRequest], Reply]


@dataclass
class JsonPeer:
    """The running server: ``base`` is its URL (``http://HOST:PORT``); ``requests`` every GET it received,
    and ``paths`` their paths (both lists fill while it runs)."""

    base: str
    port: int
    requests: list[PeerRequest] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    @property
    def authorizations(self) -> list[str | None]:
        """The ``Authorization`` header of every GET (None where there was none)."""
        return [r.headers.get("Authorization") for r in self.requests]


@contextmanager
def json_peer(answer: Answer, host: str = "127.0.0.1") -> Iterator[JsonPeer]:
    """Serve ``answer`` on ``host`` until the block ends; ``application/fhir+json``, with a Content-Length.
    ``host="0.0.0.0"`` makes it reachable on the machine's LAN address too (a peer "elsewhere")."""
    peer = JsonPeer("", 0)
    server = ThreadingHTTPServer((host, 0), _handler(answer, peer))
    peer.port = server.server_address[1]
    peer.base = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{peer.port}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield peer
    finally:
        server.shutdown()
        server.server_close()


def _handler(answer: Answer, peer: JsonPeer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            request = PeerRequest(self.path, self.headers)
            peer.requests.append(request)
            peer.paths.append(self.path)
            status, document, *extra = answer(request)
            body = b"" if document is None else json.dumps(document).encode()
            self.send_response(status)
            if document is not None:
                self.send_header("Content-Type", "application/fhir+json")
            for name, value in (extra[0] if extra else {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler
