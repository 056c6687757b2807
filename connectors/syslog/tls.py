"""TLS pieces shared by the syslog receiver (connectors/syslog/server.py) and the syslog alert sink.

Why shared: both sides must name a missing or unreadable certificate file the same way (one line with
the option key and the path, never a traceback) and both hold the same floor (TLS 1.2, RFC 5425 / BCP 195).
The error class differs by side - a listener that cannot start is ``SourceUnavailable``, a sink that cannot
deliver is ``SinkUnavailable`` - so callers pass it in.
"""

from __future__ import annotations

import os
import ssl
from typing import Mapping

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


def ssl_reason(exc: BaseException) -> str:
    """One short line for an ssl/OS error (``str()`` of an SSLError carries a bracketed code and location)."""
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(reason).splitlines()[0]


def check_files(where: str, paths: Mapping[str, str | None], error: type[Exception]) -> None:
    """Every set path in ``paths`` (option key -> path) is a readable file, else ``error`` naming key and path."""
    for key, path in paths.items():
        if path and not os.path.isfile(path):
            raise error(f"{where}.{key}: file not found: {path}")
        if path and not os.access(path, os.R_OK):
            raise error(f"{where}.{key}: file cannot be read (permission denied): {path}")


def client_context(where: str, error: type[Exception], *, ca_certs: str | None = None,
                   certfile: str | None = None, keyfile: str | None = None, password: str | None = None,
                   verify: bool = True) -> ssl.SSLContext:
    """A client context that verifies the server (system CAs, or ``ca_certs``) and may present a certificate.

    ``verify: false`` exists for a lab SIEM with a throw-away certificate; the caller logs a warning.
    """
    check_files(where, {"ca_certs": ca_certs, "certfile": certfile, "keyfile": keyfile}, error)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = MINIMUM_VERSION
    try:
        if ca_certs:
            context.load_verify_locations(ca_certs)
        if certfile:
            context.load_cert_chain(certfile, keyfile, password)
    except (ssl.SSLError, OSError) as exc:
        raise error(f"{where}: cannot load the TLS files ({ssl_reason(exc)})") from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
