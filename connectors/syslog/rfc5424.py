"""Parse one syslog message: RFC 5424, with a lenient RFC 3164 (BSD) fallback.

Works on ``bytes`` because that is what the wire carries: the header is ASCII, structured data values are
UTF-8, and MSG is either UTF-8 with a BOM (RFC 5424 6.4: ``MSG-UTF8``) or "any octets". Deciding whether
MSG is valid text is the payload parser's business, so :attr:`SyslogMessage.msg` stays bytes (BOM removed)
and :meth:`SyslogMessage.text` decodes strictly.

Every failure is a :class:`SyslogParseError` with a reason a human can act on; nothing else escapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BOM = b"\xef\xbb\xbf"
NIL = "-"

_PRI = re.compile(rb"<([0-9]{1,3})>")
# VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID, then SP or end.
_HEADER_5424 = re.compile(rb"([1-9][0-9]{0,2}) (\S{1,255}) (\S{1,255}) (\S{1,48}) (\S{1,128}) (\S{1,32})(?: |$)")
_MONTHS = rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TS_3164 = re.compile(rb"(" + _MONTHS + rb" [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2}) ")
_HOST_TAG_3164 = re.compile(rb"(?:(\S+) )?([^\s:\[\]]{1,48})(?:\[([^\]\s]{0,128})\])?: ?")


class SyslogParseError(ValueError):
    """The bytes are not a syslog message we can read. The message says which part is wrong."""


@dataclass(slots=True)
class SyslogMessage:
    priority: int
    facility: int
    severity: int
    msg: bytes
    format: str = "rfc5424"  # or "rfc3164"
    version: int | None = None
    timestamp: str | None = None
    hostname: str | None = None
    appname: str | None = None
    procid: str | None = None
    msgid: str | None = None
    structured_data: dict[str, dict[str, str]] = field(default_factory=dict)
    bom: bool = False

    def text(self) -> str:
        """MSG as text; raises ``UnicodeDecodeError`` for invalid UTF-8 (callers dead-letter it)."""
        return self.msg.decode("utf-8")


def _nil(value: bytes) -> str | None:
    text = value.decode("utf-8", "replace")
    return None if text == NIL else text


def parse_syslog(data: bytes) -> SyslogMessage:
    """Parse one framed message (framing already removed)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SyslogParseError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    pri_match = _PRI.match(data)
    if pri_match is None:
        raise SyslogParseError("no <PRI> at the start of the message")
    pri = int(pri_match.group(1))
    if pri > 191:
        raise SyslogParseError(f"PRI {pri} out of range 0..191")
    pos = pri_match.end()
    header = _HEADER_5424.match(data, pos)
    if header is None:
        return _parse_3164(data, pri, pos)
    version, ts, host, app, procid, msgid = header.groups()
    message = SyslogMessage(
        priority=pri,
        facility=pri >> 3,
        severity=pri & 7,
        msg=b"",
        version=int(version),
        timestamp=_nil(ts),
        hostname=_nil(host),
        appname=_nil(app),
        procid=_nil(procid),
        msgid=_nil(msgid),
    )
    pos = header.end()
    if pos >= len(data):
        return message  # header only: lenient (RFC requires SD, devices forget it)
    if data[pos : pos + 1] == b"-":
        pos += 1
    elif data[pos : pos + 1] == b"[":
        message.structured_data, pos = _parse_structured_data(data, pos)
    else:
        raise SyslogParseError(f"expected STRUCTURED-DATA ('-' or '[') at offset {pos}")
    if pos < len(data):
        if data[pos] != 0x20:
            raise SyslogParseError(f"expected SP after STRUCTURED-DATA at offset {pos}")
        pos += 1
    return _with_msg(message, data[pos:])


def _parse_structured_data(data: bytes, pos: int) -> tuple[dict[str, dict[str, str]], int]:
    """SD-ELEMENTs: ``[id name="value" ...]...`` with ``\\"``, ``\\\\`` and ``\\]`` escapes in values."""
    elements: dict[str, dict[str, str]] = {}
    n = len(data)
    while pos < n and data[pos] == 0x5B:  # '['
        pos += 1
        end = pos
        while end < n and data[end] not in b" ]=\"":
            end += 1
        if end == pos or end >= n or data[end] in b'="':
            raise SyslogParseError(f"bad SD-ID at offset {pos}")
        sd_id = data[pos:end].decode("ascii", "replace")
        params: dict[str, str] = {}
        pos = end
        while True:
            if pos >= n:
                raise SyslogParseError("unterminated STRUCTURED-DATA element")
            c = data[pos]
            if c == 0x5D:  # ']'
                pos += 1
                break
            if c != 0x20:
                raise SyslogParseError(f"expected SP or ']' in STRUCTURED-DATA at offset {pos}")
            pos += 1
            eq = data.find(b'="', pos)
            if eq <= pos or any(ch in b' ]"' for ch in data[pos:eq]):
                raise SyslogParseError(f"bad SD-PARAM name at offset {pos}")
            name = data[pos:eq].decode("ascii", "replace")
            pos = eq + 2
            value = bytearray()
            while True:
                if pos >= n:
                    raise SyslogParseError("unterminated SD-PARAM value")
                c = data[pos]
                if c == 0x5C and pos + 1 < n and data[pos + 1] in b'"\\]':  # backslash escape
                    value.append(data[pos + 1])
                    pos += 2
                    continue
                if c == 0x22:  # closing quote
                    pos += 1
                    break
                value.append(c)
                pos += 1
            try:
                params[name] = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SyslogParseError(f"SD-PARAM {name!r} is not valid UTF-8: {exc.reason}") from None
        elements[sd_id] = params
    return elements, pos


def _parse_3164(data: bytes, pri: int, pos: int) -> SyslogMessage:
    """BSD syslog: ``<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG``. Every part but PRI is optional in practice."""
    message = SyslogMessage(priority=pri, facility=pri >> 3, severity=pri & 7, msg=b"", format="rfc3164")
    ts = _TS_3164.match(data, pos)
    if ts is not None:
        message.timestamp = ts.group(1).decode("ascii")
        pos = ts.end()
        tag = _HOST_TAG_3164.match(data, pos)
        # Only trust HOST/TAG when the payload does not start with '<' / '{' (an XML/JSON body right
        # after the timestamp would otherwise be split at its first colon).
        if tag is not None and data[pos : pos + 1] not in (b"<", b"{"):
            host, app, procid = tag.groups()
            message.hostname = host.decode("utf-8", "replace") if host else None
            message.appname = app.decode("utf-8", "replace")
            message.procid = procid.decode("utf-8", "replace") if procid else None
            pos = tag.end()
    return _with_msg(message, data[pos:])


def _with_msg(message: SyslogMessage, msg: bytes) -> SyslogMessage:
    """MSG, with a leading UTF-8 BOM (RFC 5424 6.4: MSG is UTF-8 when it starts with one) noted and removed."""
    if msg.startswith(BOM):
        message.bom = True
        msg = msg[3:]
    message.msg = msg
    return message
