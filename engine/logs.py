"""The engine's own logs: structlog, JSON lines (orjson) off a TTY, readable console output on one.

GDPR/NIS2: the engine's logs are read by operators who must not see patient data, and they are shipped to
places patient data must not go. ``redact_sensitive`` is the last line of defence: whatever a caller passes,
keys that can carry patient identifiers or secrets are masked before rendering.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import orjson
import structlog

_SENSITIVE_KEY = re.compile(
    r"(patient|password|passwd|secret|token|api_key|apikey|authorization|cookie|event\.original|"
    r"full_name|address|birth|ssn|query|credential|private_key)",
    re.IGNORECASE,
)
REDACTED = "[redacted]"

#: Exact keys whose values are free text that may quote what a sender sent (a dead letter's ``location``
#: and ``reason``): kept, because the operator needs to know where and why, but scrubbed by
#: :func:`scrub_text`. The dead letter itself is stored whole in the (private) store.
SCRUBBED_KEYS = frozenset({"location", "reason"})
#: Exact keys that are the engine's own listeners (``listen="http://127.0.0.1:8080"``). Never ``address``:
#: that key means a patient's or person's address and stays masked.
_LISTENER_KEYS = frozenset({"listen"})
MAX_SCRUBBED_CHARS = 500

_URL = re.compile(r"""\b([a-z][a-z0-9+.-]*://)(?:[^\s/?#@'"]*@)?([^\s/?#@'"]+)([^\s'"]*)""", re.IGNORECASE)
_QUOTED = re.compile(r"""(\b(?:field|column)\s)?('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""", re.IGNORECASE | re.DOTALL)
_NAME = re.compile(r"[A-Za-z_@][\w.@-]{0,63}")


def redact_sensitive(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Mask values whose key names patient data or secrets, also inside nested dicts (e.g. an event)."""
    return {key: _redact(key, value) for key, value in event_dict.items()}


def _redact(key: str, value: Any) -> Any:
    if key in _LISTENER_KEYS:
        return value
    if key != "event" and _SENSITIVE_KEY.search(key):
        return REDACTED
    if key in SCRUBBED_KEYS and isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: _redact(str(k), v) for k, v in value.items()}
    return value


def scrub_text(text: str) -> str:
    """Free text as it may be logged: URLs keep only their origin, quoted values are masked.

    Why these two: a URL's path and query name patients (``Patient/P950``, ``?patient=P950``) and its
    userinfo holds credentials; and every reason Wardwatch writes quotes the offending *value* the Python
    way (``'...'``), so masking quoted text removes what the sender controlled. A quoted field or column
    name (``field 'ts'``) is configuration, not data, and is kept so the reason stays useful.
    """
    text = _QUOTED.sub(_quoted, text)  # first: a quoted value may itself hold a URL or a quote
    text = _URL.sub(_url_origin, text)
    if len(text) > MAX_SCRUBBED_CHARS:
        text = text[:MAX_SCRUBBED_CHARS] + "..."
    return text


def _url_origin(match: re.Match[str]) -> str:
    scheme, host, rest = match.groups()
    return f"{scheme}{host}/{REDACTED}" if rest.strip("/") else f"{scheme}{host}{rest}"


def _quoted(match: re.Match[str]) -> str:
    label, quoted = match.groups()
    if label and _NAME.fullmatch(quoted[1:-1]):
        return match.group(0)
    quote = quoted[0]
    return f"{label or ''}{quote}{REDACTED}{quote}"


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    stream = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and hasattr(stream, "isatty") and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=True)
        if use_console
        else structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_sensitive,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Stdlib loggers (our store/connector modules, and libraries) render through the same processors, so
    # every line on stderr is one JSON object (or console line) and is redacted the same way.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.ExtraAdder(),
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact_sensitive, renderer],
    ))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(getattr(logging, level.upper()))
    for noisy in ("apscheduler", "httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The Elasticsearch client logs every failed node attempt; the store reports outages itself, once.
    for noisy in ("elasticsearch", "elastic_transport"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
