"""The contract between the VPN connectors' shared layer and one vendor's parser.

Why a contract of its own: the four VPN connectors (``cisco-asa``, ``fortigate``, ``globalprotect``,
``openvpn``) share everything but the vendor's message format. The shared layer (``connectors/vpn/base.py``)
reads syslog files or listeners, splits off the syslog header (``connectors/syslog/rfc5424.py``), assigns
``event.id``/``event.dataset``/``event.original`` and dead-letters; a vendor module only turns one message
into ECS fields. That keeps each parser a pure function: easy to fuzz, to benchmark and to run in
``wardwatch parse``.

A vendor module exposes::

    VENDOR: str                       # observer.vendor, e.g. "Cisco"
    PRODUCT: str                      # observer.product, e.g. "ASA"
    def parse(message: str, context: ParseContext) -> Event

``parse`` returns a flat dict of dotted ECS fields (and ``vpn.*``, see docs/schema.md), *without*
``event.id``, ``event.dataset``, ``event.original`` or ``event.ingested``. It sets ``@timestamp`` when the
message itself carries a time (FortiGate ``date=``/``time=``, PAN-OS CSV ``receive_time``, OpenVPN's own
stamp); otherwise the shared layer uses the syslog header's time. Naive device times are in
``context.timezone``. An unknown message id is *not* an error: return the fields you know plus
``event.code`` and ``event.kind: event`` (the raw text is kept as ``event.original`` by the shared layer).
Raise ``VpnParseError`` only when the text is not this vendor's format at all; the shared layer then
dead-letters it with its position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo, timezone
from typing import Any

Event = dict[str, Any]


class VpnParseError(ValueError):
    """The message is not in this vendor's format. ``str()`` says which part is wrong (no PHI, no raw text)."""


@dataclass(frozen=True)
class ParseContext:
    """What the shared layer knows about a message before the vendor parser sees it."""

    #: the source's configured time zone, for device times without an offset
    timezone: tzinfo = timezone.utc
    #: the syslog header's time, already resolved to UTC (None when the line had no header time)
    header_time: datetime | None = None
    #: the syslog header's HOSTNAME (observer.hostname when the message names none)
    hostname: str | None = None
    #: the syslog header's APP-NAME / TAG (e.g. "%ASA-6-113039" on some ASA configs, "openvpn")
    appname: str | None = None
    #: the year to assume for device times without one (RFC 3164 headers, OpenVPN's ctime stamp)
    year: int | None = None
    #: connector options the parser may honour (e.g. the default user.domain), read-only
    options: dict[str, Any] = field(default_factory=dict)
