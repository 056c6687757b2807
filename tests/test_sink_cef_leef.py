"""CEF, LEEF and RFC 5424 as the syslog sink writes them: standard keys for an alert, and escaping that
survives any text (parsed back with our parsers and the project's syslog receiver parser)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.syslog.framing import FrameDecoder, encode_frame
from connectors.syslog.rfc5424 import parse_syslog
from engine.alerts.sinks.cef import format_cef, parse_cef
from engine.alerts.sinks.leef import format_leef, parse_leef
from engine.alerts.sinks.siem_facts import Facts, facts
from engine.alerts.sinks.syslog_wire import FACILITIES, SD_ID, SEVERITIES, format_rfc5424

ALERT = {
    "id": "a" * 32, "rule_id": "4f1c-rule", "rule_title": "Record opened | outside shift", "rule_level": "high",
    "rule_tags": [], "kind": "match", "group": {"user.name": "j.smit", "source.ip": "10.1.2.3",
                                                "ehr.patient.id": "P-77"},
    "group_key": "k", "window_start": "2024-03-01T10:00:00.000Z", "window_end": "2024-03-01T11:00:00.000Z",
    "first_trigger": "2024-03-01T10:05:00.000Z", "last_trigger": "2024-03-01T10:06:00.000Z",
    "evidence": ["e1"], "evidence_total": 12, "triggers": 2, "status": "acknowledged", "revision": 3,
    "assignee": "ann",
}


def test_cef_line_for_an_alert_uses_standard_keys():
    header, ext = parse_cef(format_cef(facts(ALERT), "0.1.0"))
    assert header == ["CEF:0", "Wardwatch", "Wardwatch", "0.1.0", "4f1c-rule", "Record opened | outside shift", "8"]
    assert ext["suser"] == "j.smit" and ext["src"] == "10.1.2.3" and ext["cnt"] == "12"
    assert ext["rt"] == "1709287560000" and ext["msg"] == ALERT["rule_title"]
    assert (ext["cs1Label"], ext["cs1"]) == ("ruleId", "4f1c-rule")
    assert (ext["externalId"], ext["cn1"]) == ("a" * 32, "3")
    assert ext["cs3"] == "ann"


def test_cef_header_escapes_pipe_and_backslash_but_extension_escapes_equals():
    line = format_cef(facts({**ALERT, "rule_title": "a|b\\c=d"}), "1")
    assert "|a\\|b\\\\c=d|" in line  # header: pipe and backslash escaped, '=' left alone
    assert "msg=a|b\\\\c\\=d" in line  # extension: '=' and backslash escaped, pipe left alone


def test_leef_line_for_an_alert_uses_qradar_keys():
    line = format_leef(facts(ALERT), "0.1.0")
    assert line.startswith("LEEF:2.0|Wardwatch|Wardwatch|0.1.0|4f1c-rule|x09|devTime=2024-03-01T10:06:00.000Z\t")
    header, attrs = parse_leef(line)
    assert attrs["sev"] == "8" and attrs["usrName"] == "j.smit" and attrs["src"] == "10.1.2.3"
    assert attrs["devTimeFormat"] == "yyyy-MM-dd'T'HH:mm:ss.SSSX"
    assert (attrs["alertId"], attrs["revision"], attrs["evidenceTotal"]) == ("a" * 32, "3", "12")


def test_a_case_becomes_a_cef_line_about_its_subject():
    case = {"record": "case", "id": "c" * 32, "subject_kind": "user.name", "subject": "j.smit", "level": "critical",
            "reasons": ["3 rules fired about j.smit"], "last_trigger": "2024-03-01T10:06:00.000Z", "revision": 2,
            "evidence_total": 40}
    header, ext = parse_cef(format_cef(facts(case), "1"))
    assert header[4:] == ["case", "3 rules fired about j.smit", "10"]
    assert ext["suser"] == "j.smit" and ext["cat"] == "case" and "cs1" not in ext


def _facts(text: str, other: str) -> Facts:
    return facts({**ALERT, "rule_id": other, "rule_title": text, "group": {"user.name": text, "source.ip": other},
                  "assignee": text})


@settings(max_examples=300)
@given(st.text(min_size=1), st.text(min_size=1))
def test_cef_round_trips_any_text(text: str, other: str):
    header, ext = parse_cef(format_cef(_facts(text, other), "1"))
    flat = text.replace("\r", " ").replace("\n", " ")  # a header cannot carry a line break
    assert header[4:6] == [other.replace("\r", " ").replace("\n", " "), flat]
    assert ext["msg"] == text and ext["suser"] == text and ext["cs3"] == text
    assert ext["src"] == other and ext["cs1"] == other
    assert "\n" not in format_cef(_facts(text, other), "1")


@settings(max_examples=300)
@given(st.text(min_size=1), st.text(min_size=1))
def test_leef_round_trips_any_text(text: str, other: str):
    line = format_leef(_facts(text, other), "1")
    header, attrs = parse_leef(line)
    assert header[4] == (other.replace("\r", " ").replace("\n", " "))
    assert attrs["ruleName"] == text and attrs["usrName"] == text and attrs["assignee"] == text
    assert attrs["src"] == other and attrs["ruleId"] == other
    assert "\n" not in line


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=20), st.integers(1, 64))
def test_octet_counted_frames_are_read_back_by_the_receiver_whatever_the_split(messages, chunk):
    stream = b"".join(encode_frame(m) for m in messages)
    decoder = FrameDecoder(max_message_bytes=1024)
    out = []
    for i in range(0, len(stream), chunk):
        out += decoder.feed(stream[i:i + chunk])
    assert out + decoder.close() == messages


@settings(max_examples=200)
@given(st.text(min_size=1), st.text(min_size=1, max_size=64), st.binary(max_size=200),
       st.sampled_from(sorted(SEVERITIES)))
def test_rfc5424_messages_parse_back_with_the_receiver_parser(value: str, hostname: str, body: bytes, level: str):
    """Any structured-data value (quotes, backslashes, ']'), any host name, any payload bytes."""
    data = format_rfc5424(body, facility=FACILITIES["authpriv"], severity=SEVERITIES[level], msgid="alert",
                          sd={"id": value, "revision": "7"}, hostname=hostname)
    msg = parse_syslog(data)
    assert (msg.version, msg.facility, msg.severity, msg.msgid, msg.appname) == (1, 10, SEVERITIES[level],
                                                                                  "alert", "wardwatch")
    assert msg.structured_data[SD_ID] == {"id": value, "revision": "7"}
    assert msg.bom and msg.msg == body
    printable = "".join(c for c in hostname if 33 <= ord(c) <= 126)  # RFC 5424 PRINTUSASCII; NIL if none
    assert msg.hostname == (None if printable in ("", "-") else printable)  # "-" is the NILVALUE
