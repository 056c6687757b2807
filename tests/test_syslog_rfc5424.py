"""RFC 5424 parsing (with RFC 3164 fallback): header, structured data, BOM, and total failure behaviour."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.syslog.rfc5424 import SyslogMessage, SyslogParseError, parse_syslog


def test_full_rfc5424_message_with_structured_data_and_bom() -> None:
    raw = (b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 ID47 '
           b'[exampleSDID@32473 iut="3" eventSource="Appl\\"ication" eventID="1011"][x@1 a="\\]"] '
           b"\xef\xbb\xbfAn application event log entry...")
    msg = parse_syslog(raw)
    assert (msg.priority, msg.facility, msg.severity, msg.version) == (165, 20, 5, 1)
    assert msg.timestamp == "2003-10-11T22:14:15.003Z"
    assert (msg.hostname, msg.appname, msg.procid, msg.msgid) == ("mymachine.example.com", "evntslog", "1234",
                                                                   "ID47")
    assert msg.structured_data["exampleSDID@32473"]["eventSource"] == 'Appl"ication'
    assert msg.structured_data["x@1"]["a"] == "]"
    assert msg.bom and msg.text() == "An application event log entry..."


def test_nil_values_and_no_msg() -> None:
    msg = parse_syslog(b"<34>1 - - - - - -")
    assert (msg.timestamp, msg.hostname, msg.appname, msg.procid, msg.msgid) == (None,) * 5
    assert msg.msg == b"" and msg.structured_data == {}


def test_rfc3164_fallback() -> None:
    msg = parse_syslog(b"<13>Oct 11 22:14:15 host1 su[42]: 'su root' failed")
    assert msg.format == "rfc3164"
    assert (msg.hostname, msg.appname, msg.procid) == ("host1", "su", "42")
    assert msg.text() == "'su root' failed"


def test_rfc3164_with_xml_payload_after_timestamp() -> None:
    msg = parse_syslog(b"<13>Oct 11 22:14:15 <AuditMessage a='x:y'/>")
    assert msg.format == "rfc3164" and msg.text() == "<AuditMessage a='x:y'/>"


def test_invalid_utf8_msg_is_reported_by_text() -> None:
    msg = parse_syslog(b"<13>1 - h a - - - \xef\xbb\xbf\xff\xfe")
    with pytest.raises(UnicodeDecodeError):
        msg.text()


@pytest.mark.parametrize("raw", [b"", b"no pri", b"<999>1 - - - - - -", b"<13>1 - - - - - [unterminated",
                                 b'<13>1 - - - - - [id a="x"', b"<13>1 - - - - - X"])
def test_errors_are_clear(raw: bytes) -> None:
    with pytest.raises(SyslogParseError):
        parse_syslog(raw)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=300),
                 st.builds(lambda a, b: b"<13>1 " + a + b" " + b, st.binary(max_size=60), st.binary(max_size=60)),
                 st.builds(lambda a: b"<13>1 - - - - - [" + a, st.binary(max_size=80))))
def test_parser_is_total(raw: bytes) -> None:
    try:
        msg = parse_syslog(raw)
    except SyslogParseError:
        return
    assert isinstance(msg, SyslogMessage) and 0 <= msg.priority <= 191
