"""A reusable syslog receiving layer: framing, RFC 5424/3164 parsing, listeners and a durable spool.

Nothing in this package knows about ATNA or any payload format: the ATNA connector and (later) the VPN
syslog connector sit on top of it. Data flows listener -> framing -> spool; parsing happens on the read
side, so a parser bug can never lose a message that was already accepted.
"""

from connectors.syslog.framing import Frame, FrameDecoder, FrameError
from connectors.syslog.rfc5424 import SyslogMessage, SyslogParseError, parse_syslog
from connectors.syslog.spool import Spool, SpoolRecord

__all__ = [
    "Frame",
    "FrameDecoder",
    "FrameError",
    "SyslogMessage",
    "SyslogParseError",
    "parse_syslog",
    "Spool",
    "SpoolRecord",
]
