"""Cisco ASA/FTD parser: what an analyst sees for each remote-access message id, over the whole fixture,
under fuzzing, and with naive device times in the source's time zone.

The shared connector layer (connectors/vpn/base.py) is built separately; these tests call the parser
function directly with the MSG part, as that layer will."""

from __future__ import annotations

import re
from datetime import timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from connectors.vpn import cisco_asa
from connectors.vpn.contract import ParseContext, VpnParseError

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "vpn-cisco_asa" / "cisco_asa.log"
CTX = ParseContext(hostname="asa-edge-01")
HEADER = re.compile(r"<\d{1,3}>[A-Z][a-z]{2} \d{2} \d{4} \d{2}:\d{2}:\d{2} (\S+) : (.*)\Z")

BASE = {"observer.vendor": "Cisco", "observer.product": "ASA", "observer.hostname": "asa-edge-01"}

CASES: list[tuple[str, dict]] = [
    ("%ASA-6-113004: AAA user authentication Successful : server =  10.0.0.5 : user = HOSPITAL\\jdoe",
     {"event.code": "113004", "event.action": "vpn-login", "event.outcome": "success",
      "event.category": ["authentication"], "event.type": ["start"], "user.name": "jdoe",
      "user.domain": "hospital", "vpn.aaa.server": "10.0.0.5"}),
    ("%ASA-6-113005: AAA user authentication Rejected : reason = AAA failure : server = 10.0.0.5 : "
     "user = admin.huber@hospital.example : user IP = 203.0.113.66",
     {"event.code": "113005", "event.action": "vpn-login", "event.outcome": "failure",
      "user.name": "admin.huber", "user.domain": "hospital.example", "source.ip": "203.0.113.66",
      "vpn.reason": "AAA failure", "event.reason": "AAA failure"}),
    ("%ASA-6-113005: AAA user authentication Rejected : reason = AAA failure : server = 10.0.0.5 : "
     "user = ***** : user IP = 203.0.113.66",
     {"event.code": "113005", "event.outcome": "failure", "source.ip": "203.0.113.66", "user.name": None}),
    ("%ASA-6-113008: AAA transaction status ACCEPT : user = jdoe",
     {"event.code": "113008", "event.action": "aaa-transaction", "event.outcome": "success", "user.name": "jdoe"}),
    ("%ASA-6-113009: AAA retrieved default group policy (GP-Staff) for user = jdoe",
     {"event.code": "113009", "event.action": "aaa-group-policy", "vpn.group": "GP-Staff", "user.name": "jdoe"}),
    ("%ASA-6-113012: AAA user authentication Successful : local database : user = ext.medtech",
     {"event.code": "113012", "event.action": "vpn-login", "event.outcome": "success",
      "user.name": "ext.medtech", "vpn.aaa.server": "local"}),
    ("%ASA-6-113015: AAA user authentication Rejected : reason = Invalid password : local database : "
     "user = bweber : user IP = 198.51.100.250",
     {"event.code": "113015", "event.action": "vpn-login", "event.outcome": "failure", "user.name": "bweber",
      "source.ip": "198.51.100.250", "vpn.reason": "Invalid password"}),
    ("%ASA-5-113006: User 'admin.huber' locked out on exceeding '8' successive failed authentication attempts",
     {"event.code": "113006", "event.action": "user-locked-out", "event.outcome": "failure",
      "user.name": "admin.huber"}),
    ("%ASA-6-113014: AAA authentication server not accessible : server =  10.0.0.5 : user = tbeck",
     {"event.code": "113014", "event.action": "aaa-server-error", "event.outcome": "failure",
      "user.name": "tbeck", "vpn.reason": "server not accessible"}),
    ("%ASA-4-113019: Group = KLINIKUM-RA, Username = jdoe@hospital.example, IP = 192.0.2.5, Session "
     "disconnected. Session Type: AnyConnect-Parent, Duration: 1h:02m:03s, Bytes xmt: 123456, Bytes rcv: 7890, "
     "Reason: User Requested",
     {"event.code": "113019", "event.action": "vpn-session-end", "event.category": ["session", "network"],
      "event.type": ["end"], "user.name": "jdoe", "user.domain": "hospital.example", "vpn.group": "KLINIKUM-RA",
      "source.ip": "192.0.2.5", "vpn.session.duration": 3723, "event.duration": 3723 * 10**9,
      "vpn.bytes.sent": 123456, "vpn.bytes.received": 7890, "network.bytes": 131346,
      "vpn.tunnel.type": "ssl", "vpn.session.type": "AnyConnect-Parent", "vpn.reason": "User Requested"}),
    ("%ASA-4-113019: Group = RA-IKEv2, Username = jdoe, IP = 192.0.2.5, Session disconnected. Session Type: "
     "IKEv2, Duration: 2d 3h:04m:05s, Bytes xmt: 1, Bytes rcv: 2, Reason: Idle Timeout",
     {"vpn.session.duration": ((2 * 24 + 3) * 60 + 4) * 60 + 5, "vpn.tunnel.type": "ikev2",
      "vpn.reason": "Idle Timeout"}),
    ("%ASA-4-113039: Group <GP-Staff> User <jdoe> IP <192.0.2.5> AnyConnect parent session started.",
     {"event.code": "113039", "event.action": "vpn-session-start", "event.outcome": "success",
      "event.type": ["start"], "user.name": "jdoe", "vpn.group": "GP-Staff", "source.ip": "192.0.2.5",
      "vpn.tunnel.type": "ssl"}),
    ("%ASA-6-611101: User authentication succeeded: IP address: 10.0.10.21, Uname: it.schulte",
     {"event.code": "611101", "event.action": "admin-login", "event.outcome": "success",
      "source.ip": "10.0.10.21", "user.name": "it.schulte"}),
    ("%ASA-6-611102: User authentication failed: IP address: 10.0.10.21, Uname: it.schulte",
     {"event.code": "611102", "event.action": "admin-login", "event.outcome": "failure",
      "source.ip": "10.0.10.21", "user.name": "it.schulte"}),
    ("%ASA-6-611103: User logged out: Uname: it.schulte",
     {"event.code": "611103", "event.action": "admin-logout", "event.type": ["end"], "user.name": "it.schulte"}),
    ('%ASA-6-605004: Login denied from 203.0.113.90/40022 to outside:203.0.113.1/ssh for user "admin"',
     {"event.code": "605004", "event.action": "admin-login", "event.outcome": "failure",
      "source.ip": "203.0.113.90", "source.port": 40022, "destination.ip": "203.0.113.1",
      "network.protocol": "ssh", "user.name": "admin"}),
    ("%ASA-6-716001: Group <GP-Staff> User <jdoe> IP <192.0.2.5> WebVPN session started.",
     {"event.code": "716001", "event.action": "webvpn-session-start", "event.outcome": "success",
      "vpn.tunnel.type": "ssl", "user.name": "jdoe", "source.ip": "192.0.2.5"}),
    ("%ASA-6-716002: Group <GP-Staff> User <jdoe> IP <192.0.2.5> WebVPN session terminated: User Requested.",
     {"event.code": "716002", "event.action": "webvpn-session-end", "event.type": ["end"],
      "vpn.reason": "User Requested"}),
    ("%ASA-6-716039: Group <DfltGrpPolicy> User <bweber> IP <198.51.100.250> Authentication: rejected, "
     "Session Type: WebVPN.",
     {"event.code": "716039", "event.action": "webvpn-authentication", "event.outcome": "failure",
      "user.name": "bweber", "source.ip": "198.51.100.250"}),
    ("%ASA-6-722022: Group <GP-Staff> User <jdoe> IP <192.0.2.5> UDP SVC connection established without compression",
     {"event.code": "722022", "event.action": "svc-connection-start", "network.transport": "udp",
      "event.type": ["connection", "start"], "user.name": "jdoe"}),
    ("%ASA-6-722023: Group <GP-Staff> User <jdoe> IP <192.0.2.5> TCP SVC connection terminated without compression",
     {"event.code": "722023", "event.action": "svc-connection-end", "network.transport": "tcp"}),
    ("%ASA-5-722028: Group <GP-Staff> User <jdoe> IP <192.0.2.5> Stale SVC connection closed.",
     {"event.code": "722028", "event.action": "svc-connection-stale-closed"}),
    ("%ASA-4-722037: Group <GP-Staff> User <jdoe> IP <192.0.2.5> SVC closing connection: DPD failure.",
     {"event.code": "722037", "event.action": "svc-connection-closing", "vpn.reason": "DPD failure"}),
    ("%ASA-5-722051: Group <GP-Staff> User <jdoe> IP <192.0.2.5> IPv4 Address <10.20.3.4> IPv6 address <::> "
     "assigned to session",
     {"event.code": "722051", "event.action": "vpn-address-assigned", "vpn.assigned_ip": "10.20.3.4",
      "vpn.assigned_ipv6": None, "user.name": "jdoe", "vpn.group": "GP-Staff", "source.ip": "192.0.2.5"}),
    ("%ASA-6-722055: Group <GP-Staff> User <jdoe> IP <192.0.2.5> Client Type: Cisco Secure Client for Windows 5.0.05040",
     {"event.code": "722055", "user_agent.original": "Cisco Secure Client for Windows 5.0.05040"}),
    ("%ASA-4-733100: [ 198.51.100.250] drop rate-1 exceeded. Current burst rate is 12 per second, max "
     "configured rate is 10; Current average rate is 6 per second, max configured rate is 5; Cumulative total "
     "count is 3712",
     {"event.code": "733100", "event.kind": "alert", "event.action": "threat-rate-exceeded",
      "source.ip": "198.51.100.250", "vpn.threat.rate_id": "rate-1", "vpn.threat.burst_rate": 12,
      "vpn.threat.total": 3712}),
    ("%ASA-5-751025: Local:203.0.113.1:4500 Remote:198.51.100.5:54817 Username:jdoe IKEv2 Group:GP-Staff "
     "IPv4 Address=10.20.1.5 IPv6 address=:: assigned to session.",
     {"event.code": "751025", "event.action": "vpn-address-assigned", "vpn.tunnel.type": "ikev2",
      "vpn.assigned_ip": "10.20.1.5", "vpn.group": "GP-Staff", "user.name": "jdoe", "source.ip": "198.51.100.5",
      "source.port": 54817, "destination.ip": "203.0.113.1", "destination.port": 4500}),
    ("%ASA-6-750006: Local:203.0.113.1:4500 Remote:198.51.100.5:54817 Username:jdoe IKEv2 SA UP. Reason: "
     "New Connection Established",
     {"event.code": "750006", "event.action": "ikev2-sa-up", "event.type": ["start"]}),
    ("%ASA-6-750002: Local:203.0.113.1:500 Remote:198.51.100.5:54817 Username:Unknown Received a IKE_INIT_SA request",
     {"event.code": "750002", "event.action": "ikev2-sa-request", "user.name": None}),
    # an id without a handler: kept, with event.code and the generic who/where prefix
    ("%ASA-6-716058: Group <GP-Staff> User <jdoe> IP <192.0.2.5> AnyConnect session lost connection. "
     "Waiting to resume.", {"event.code": "716058", "event.action": "vpn-session-lost"}),
    ("%ASA-6-722041: Group <GP-Staff> User <jdoe> IP <192.0.2.5> No IPv6 address available for SVC connection",
     {"event.code": "722041", "event.kind": "event", "user.name": "jdoe", "source.ip": "192.0.2.5",
      "event.action": None}),
    ("%FTD-6-113039: Group <GP-Staff> User <jdoe> IP <2001:db8:0:0::5> AnyConnect parent session started.",
     {"observer.product": "FTD", "source.ip": "2001:db8::5"}),
]


@pytest.mark.parametrize("message,expected", CASES, ids=[c[0][5:11] + f"-{i}" for i, c in enumerate(CASES)])
def test_message_ids_map_to_ecs(message: str, expected: dict) -> None:
    event = cisco_asa.parse(message, CTX)
    for key, value in {**BASE, **expected}.items():
        if key == "observer.product" and "observer.product" in expected:
            value = expected[key]
        assert event.get(key) == value, (key, event)
    assert event["event.kind"] in ("event", "alert")


def test_not_asa_text_is_a_parse_error() -> None:
    for text in ("", "hello world", "date=2026-11-02 time=06:31:32 logid=0101039947 type=event",
                 "%ASA-6-11303: too short", "Nov 02 2026 08:01:12 asa : no id here"):
        with pytest.raises(VpnParseError):
            cisco_asa.parse(text, CTX)


def test_tag_as_appname() -> None:
    """A relay that splits ``%ASA-6-113039`` off as the TAG leaves only the text in MSG."""
    event = cisco_asa.parse("Group <GP-Staff> User <jdoe> IP <192.0.2.5> AnyConnect parent session started.",
                            ParseContext(appname="%ASA-4-113039", hostname="asa-edge-01"))
    assert event["event.code"] == "113039" and event["user.name"] == "jdoe"


def _fixture_messages() -> list[tuple[str, str]]:
    out = []
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        m = HEADER.match(line)
        assert m, line
        out.append((m.group(1), m.group(2)))
    return out


def test_whole_fixture_parses() -> None:
    messages = _fixture_messages()
    assert len(messages) > 500
    events = [cisco_asa.parse(msg, ParseContext(hostname=host)) for host, msg in messages]
    assert all(e.get("event.code") for e in events)
    assert all(e["observer.hostname"] == "asa-edge-01" for e in events)
    codes = {e["event.code"] for e in events}
    for code in ("113004", "113005", "113008", "113012", "113015", "113019", "113039", "611101", "611102",
                 "716001", "716002", "722022", "722023", "722028", "722051", "733100", "751025"):
        assert code in codes, code
    users = {e["user.name"] for e in events if "user.name" in e}
    assert len(users) >= 40
    # scenario: brute force then success for admin.huber from one address
    huber = [e for e in events if e.get("user.name") == "admin.huber" and e.get("event.action") == "vpn-login"]
    assert [e["event.outcome"] for e in huber] == ["failure"] * 12 + ["success"]
    # scenario: spray, one address, 10+ users failing
    spray = {e["user.name"] for e in events if e.get("source.ip") == "203.0.113.250"
             and e.get("event.outcome") == "failure" and e.get("event.action") == "vpn-login"}
    assert len(spray) >= 10
    # scenario: concurrent sessions and two addresses within the hour
    lindner = {e["source.ip"] for e in events if e.get("user.name") == "dr.lindner"
               and e.get("event.action") == "vpn-session-start"}
    assert {"192.0.2.44", "198.51.100.50"} <= lindner
    # every session end carries duration and bytes; every address assignment an address
    assert all(isinstance(e["vpn.session.duration"], int) and e["vpn.bytes.sent"] > 0
               for e in events if e["event.code"] == "113019")
    assert all("vpn.assigned_ip" in e for e in events if e["event.code"] in ("722051", "751025"))


def test_device_time_in_the_message_uses_the_source_timezone() -> None:
    msg = "Nov 02 2026 08:01:12 asa-edge-02 : %ASA-4-113039: Group <G> User <jdoe> IP <192.0.2.5> AnyConnect parent session started."
    berlin = cisco_asa.parse(msg, ParseContext(timezone=ZoneInfo("Europe/Berlin")))
    assert berlin["@timestamp"] == "2026-11-02T07:01:12.000Z"
    assert berlin["observer.hostname"] == "asa-edge-02"
    offset = cisco_asa.parse(msg, ParseContext(timezone=timezone(timedelta(hours=-5))))
    assert offset["@timestamp"] == "2026-11-02T13:01:12.000Z"
    # summer time in Berlin is +02:00; a yearless stamp takes the context's year
    summer = "Jul 15 08:00:00: %ASA-6-113008: AAA transaction status ACCEPT : user = jdoe"
    assert cisco_asa.parse(summer, ParseContext(timezone=ZoneInfo("Europe/Berlin"), year=2026))["@timestamp"] \
        == "2026-07-15T06:00:00.000Z"
    # an RFC 5424 style stamp with its own offset ignores the configured zone
    iso = "2026-11-02T08:01:12+01:00 : %ASA-6-113008: AAA transaction status ACCEPT : user = jdoe"
    assert cisco_asa.parse(iso, ParseContext(timezone=ZoneInfo("America/New_York")))["@timestamp"] \
        == "2026-11-02T07:01:12.000Z"
    # no stamp in the message: the shared layer's header time is used, the parser sets none
    assert "@timestamp" not in cisco_asa.parse("%ASA-6-113008: AAA transaction status ACCEPT : user = jdoe", CTX)


def _parse_or_error(text: str) -> None:
    try:
        event = cisco_asa.parse(text, CTX)
    except VpnParseError:
        return
    assert isinstance(event, dict) and event["event.code"]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_fuzz_arbitrary_text(text: str) -> None:
    _parse_or_error(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="%ASAFTD-0123456789:<> .=,[]/@\\abcNov", max_size=120))
def test_fuzz_asa_shaped_text(text: str) -> None:
    _parse_or_error(text)
    _parse_or_error("%ASA-6-113019: " + text)
    _parse_or_error("Nov 02 " + text)


_REAL = [msg for _, msg in _fixture_messages()] + [c[0] for c in CASES]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_REAL), st.integers(0, 400), st.integers(0, 40), st.text(max_size=12))
def test_fuzz_mutated_real_lines(line: str, at: int, cut: int, insert: str) -> None:
    at = at % (len(line) + 1)
    _parse_or_error(line[:at] + insert + line[at + cut:])
    _parse_or_error("Feb 30 2026 25:61:61 h : " + line)
