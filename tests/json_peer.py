"""A real HTTP server on loopback that answers GETs with JSON, for the lookups that pull from a FHIR server.

One helper so that the tests of the FHIR Patient lookup, the FHIR Encounter pull and config check start the
same kind of peer; each used to write its own ``BaseHTTPRequestHandler`` with the same boilerplate.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

#: path of a GET -> (HTTP status, the JSON body)
Answer = Callable[[str], "tuple[int, Any]"]


@dataclass
class JsonPeer:
    """The running server: ``base`` is its URL (``http://127.0.0.1:PORT``), ``paths`` every GET's path."""

    base: str
    paths: list[str] = field(default_factory=list)


@contextmanager
def json_peer(answer: Answer) -> Iterator[JsonPeer]:
    """Serve ``answer`` until the block ends; ``application/fhir+json``, with a Content-Length."""
    peer = JsonPeer("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            peer.paths.append(self.path)
            status, document = answer(self.path)
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    peer.base = f"http://127.0.0.1:{server.server_port}"
    try:
        yield peer
    finally:
        server.shutdown()
        server.server_close()
