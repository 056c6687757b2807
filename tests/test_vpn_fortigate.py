"""FortiGate key=value logs -> ECS: each covered logid's fields, the whole fixture, time zones, fuzzing.

Why these tests: analysts write Sigma rules against the fields below (``event.action: vpn-login`` with
``event.outcome: failure`` is the brute-force rule's base), so a changed mapping must fail here first. The
parser is tested directly; the shared connector layer has its own tests.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.vpn import fortigate
from connectors.vpn.contract import ParseContext, VpnParseError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "vpn-fortigate" / "fortigate.log"
HEAD = ('date=2026-11-02 time=10:15:30 devname="FGT-KLINIKUM-01" devid="FG100FTK19000001" '
        'eventtime=1793610930123456789 tz="+0100" ')
CTX = ParseContext(timezone=ZoneInfo("Europe/Berlin"), hostname="syslog-host")


def fixture_messages() -> list[str]:
    """The fixture's MSG parts: the ``<PRI>`` is split off by the shared syslog layer, as here."""
    return [re.sub(r"^<\d+>", "", line) for line in FIXTURE.read_text("utf-8").splitlines() if line]


COMMON = {"event.kind": "event", "observer.vendor": "Fortinet", "observer.product": "FortiGate",
          "observer.hostname": "FGT-KLINIKUM-01", "observer.serial_number": "FG100FTK19000001",
          "@timestamp": "2026-11-02T09:15:30.123Z"}

CASES = [
    ("ssl tunnel up",
     'logid="0101039424" type="event" subtype="vpn" level="information" vd="root" logdesc="SSL VPN tunnel up" '
     'action="tunnel-up" tunneltype="ssl-tunnel" tunnelid=1204 remip=192.0.2.61 tunnelip=10.212.134.200 '
     'user="KLINIKUM\\kmarx" group="VPN-Users" dst_host="N/A" reason="N/A" msg="SSL tunnel established"',
     {"event.code": "0101039424", "event.action": "vpn-login", "event.outcome": "success",
      "event.category": ["authentication", "session"], "event.type": ["start"], "user.name": "kmarx",
      "user.domain": "klinikum", "source.ip": "192.0.2.61", "vpn.assigned_ip": "10.212.134.200",
      "vpn.session.id": "1204", "vpn.group": "VPN-Users", "vpn.tunnel.type": "ssl"},
     ["vpn.reason", "vpn.bytes.sent"]),
    ("ssl tunnel down",
     'logid="0101039425" type="event" subtype="vpn" level="information" vd="root" logdesc="SSL VPN tunnel down" '
     'action="tunnel-down" tunneltype="ssl-tunnel" tunnelid=1204 remip=192.0.2.61 tunnelip=10.212.134.200 '
     'user="kmarx@hospital.example" group="VPN-Users" reason="N/A" duration=7262 sentbyte=48211042 '
     'rcvdbyte=3120977 msg="SSL tunnel shutdown"',
     {"event.code": "0101039425", "event.action": "vpn-logout", "event.outcome": "success",
      "event.category": ["session", "network"], "event.type": ["end"], "user.name": "kmarx",
      "user.domain": "hospital.example", "vpn.session.duration": 7262, "vpn.bytes.sent": 48211042,
      "vpn.bytes.received": 3120977, "vpn.session.id": "1204"}, []),
    ("ssl login fail",
     'logid="0101039426" type="event" subtype="vpn" level="alert" vd="root" logdesc="SSL VPN login fail" '
     'action="ssl-login-fail" tunneltype="ssl-web" tunnelid=0 remip=203.0.113.45 user="admin.huber" '
     'group="N/A" dst_host="N/A" reason="sslvpn_login_permission_denied" msg="SSL user failed to logged in"',
     {"event.code": "0101039426", "event.action": "vpn-login", "event.outcome": "failure",
      "event.category": ["authentication"], "event.type": ["start"], "user.name": "admin.huber",
      "source.ip": "203.0.113.45", "vpn.reason": "sslvpn_login_permission_denied", "vpn.tunnel.type": "ssl"},
     ["vpn.group", "user.domain"]),
    ("ssl statistics",
     'logid="0101039947" type="event" subtype="vpn" level="information" vd="root" logdesc="SSL VPN statistics" '
     'action="tunnel-stats" tunneltype="ssl-tunnel" tunnelid=1204 remip=192.0.2.61 user="kmarx" '
     'group="VPN-Users" duration=1800 sentbyte=100 rcvdbyte=200 msg="SSL tunnel statistics"',
     {"event.action": "vpn-session-stats", "event.type": ["info"], "vpn.session.duration": 1800,
      "vpn.bytes.sent": 100, "vpn.bytes.received": 200}, []),
    ("ipsec phase 1",
     'logid="0101037127" type="event" subtype="vpn" level="notice" vd="root" logdesc="Progress IPsec phase 1" '
     'msg="progress IPsec phase 1" action="negotiate" remip=198.51.100.7 locip=203.0.113.10 remport=4500 '
     'locport=500 outintf="wan1" cookies="a1b2/c3d4" user="N/A" group="N/A" xauthuser="N/A" '
     'xauthgroup="N/A" assignip=N/A vpntunnel="FCT-Dialup" stage=1 version="IKEv1" status="success"',
     {"event.code": "0101037127", "event.action": "vpn-negotiate", "event.outcome": "success",
      "event.category": ["network"], "event.type": ["connection", "info"], "source.ip": "198.51.100.7",
      "source.port": 4500, "destination.ip": "203.0.113.10", "destination.port": 500,
      "vpn.ipsec.phase": 1, "vpn.group": "FCT-Dialup", "vpn.tunnel.type": "ipsec"},
     ["user.name", "vpn.assigned_ip"]),
    ("ipsec phase 1 error",
     'logid="0101037124" type="event" subtype="vpn" level="error" vd="root" logdesc="IPsec phase 1 error" '
     'msg="IPsec phase 1 error" action="negotiate" remip=198.51.100.7 locip=203.0.113.10 remport=500 '
     'locport=500 vpntunnel="S2S-Labor" status="negotiate_error" error_reason="peer SA proposal not match" '
     'stage=1 version="IKEv2"',
     {"event.action": "vpn-negotiate", "event.outcome": "failure", "event.type": ["connection", "error"],
      "vpn.reason": "peer SA proposal not match", "vpn.tunnel.type": "ikev2", "vpn.group": "S2S-Labor"}, []),
    ("ipsec phase 2",
     'logid="0101037129" type="event" subtype="vpn" level="notice" vd="root" logdesc="Progress IPsec phase 2" '
     'action="negotiate" remip=198.51.100.7 locip=203.0.113.10 remport=4500 locport=4500 '
     'xauthuser="jfrank" xauthgroup="VPN-IPsec" assignip=10.212.140.33 vpntunnel="FCT-Dialup" stage=2 '
     'status="success"',
     {"event.action": "vpn-negotiate", "vpn.ipsec.phase": 2, "vpn.assigned_ip": "10.212.140.33",
      "user.name": "jfrank", "vpn.group": "VPN-IPsec"}, []),
    ("xauth failure",
     'logid="0101037136" type="event" subtype="vpn" level="alert" vd="root" logdesc="IPsec XAUTH failed" '
     'action="xauth" remip=198.51.100.66 locip=203.0.113.10 remport=4500 locport=4500 vpntunnel="FCT-Dialup" '
     'xauthuser="KLINIKUM\\ibusch" xauthgroup="N/A" status="failure" reason="authentication failure"',
     {"event.action": "vpn-login", "event.outcome": "failure", "event.category": ["authentication"],
      "user.name": "ibusch", "user.domain": "klinikum", "vpn.reason": "authentication failure",
      "vpn.group": "FCT-Dialup", "vpn.tunnel.type": "ipsec"}, []),
    ("ipsec tunnel up",
     'logid="0101037138" type="event" subtype="vpn" level="notice" vd="root" '
     'logdesc="IPsec connection status changed" action="tunnel-up" tunneltype="ipsec" remip=198.51.100.7 '
     'locip=203.0.113.10 remport=4500 locport=4500 tunnelid=77 xauthuser="jfrank" vpntunnel="FCT-Dialup"',
     {"event.action": "vpn-tunnel-up", "event.category": ["network", "session"], "event.type": ["start", "connection"],
      "vpn.session.id": "77", "user.name": "jfrank", "vpn.tunnel.type": "ipsec"}, []),
    ("admin login ok",
     'logid="0100032001" type="event" subtype="system" level="information" vd="root" '
     'logdesc="Admin login successful" user="admin.roth" ui="https(10.20.1.15)" method="https" '
     'srcip=10.20.1.15 dstip=10.10.0.1 action="login" status="success" reason="none" profile="super_admin"',
     {"event.code": "0100032001", "event.action": "admin-login", "event.outcome": "success",
      "event.category": ["authentication"], "user.name": "admin.roth", "source.ip": "10.20.1.15",
      "destination.ip": "10.10.0.1"}, ["vpn.reason", "vpn.tunnel.type"]),
    ("admin login failed, address only in ui",
     'logid="0100032002" type="event" subtype="system" level="alert" vd="root" logdesc="Admin login failed" '
     'user="admin.huber" ui="ssh(192.0.2.99)" method="ssh" action="login" status="failed" '
     'reason="passwd_invalid"',
     {"event.action": "admin-login", "event.outcome": "failure", "source.ip": "192.0.2.99",
      "vpn.reason": "passwd_invalid"}, []),
    ("admin logout",
     'logid="0100032003" type="event" subtype="system" level="information" vd="root" '
     'logdesc="Admin logout successful" user="admin.roth" ui="https(10.20.1.15)" action="logout" '
     'status="success" duration=900',
     {"event.action": "admin-logout", "event.category": ["authentication"], "event.type": ["end"],
      "vpn.session.duration": 900}, []),
    ("user authentication failed",
     'logid="0102043009" type="event" subtype="user" level="notice" vd="root" logdesc="Authentication failed" '
     'srcip=10.30.4.17 dstip=10.10.0.20 policyid=12 user="mhorn" group="N/A" authproto="HTTPS(10.30.4.17)" '
     'action="authentication" status="failure" reason="N/A" msg="User mhorn failed in authentication"',
     {"event.code": "0102043009", "event.action": "user-authentication", "event.outcome": "failure",
      "event.category": ["authentication"], "source.ip": "10.30.4.17", "user.name": "mhorn",
      "vpn.reason": "User mhorn failed in authentication"}, []),
    ("unknown logid keeps code and action",
     'logid="0101039999" type="event" subtype="vpn" level="warning" vd="root" logdesc="Something new" '
     'action="brand-new" remip=192.0.2.8 user="fvogel" status="failed"',
     {"event.code": "0101039999", "event.action": "brand-new", "event.outcome": "failure",
      "source.ip": "192.0.2.8", "user.name": "fvogel"}, ["event.category"]),
]


@pytest.mark.parametrize("name,body,expected,absent", CASES, ids=[c[0] for c in CASES])
def test_message_maps_to_ecs(name: str, body: str, expected: dict, absent: list[str]) -> None:
    event = fortigate.parse(HEAD + body, CTX)
    for key, value in {**COMMON, **expected}.items():
        assert event.get(key) == value, key
    for key in absent:
        assert key not in event, key
    for key in ("event.id", "event.dataset", "event.original", "event.ingested"):
        assert key not in event  # the shared layer's fields


def test_the_whole_fixture_parses() -> None:
    messages = fixture_messages()
    assert len(messages) >= 500
    events = [fortigate.parse(m, ParseContext()) for m in messages]
    assert all(e["event.code"] and e["@timestamp"].startswith("2026-11-02T") for e in events)
    assert all("event.action" in e and "event.outcome" in e for e in events)
    # only IPsec phase 1 comes before anyone has said who they are
    assert all("user.name" in e for e in events if e.get("vpn.ipsec.phase") != 1)
    assert len({e.get("user.name") for e in events} - {None}) >= 40
    logins = [e for e in events if e["event.action"] == "vpn-login"]
    huber = [e["event.outcome"] for e in logins if e["user.name"] == "admin.huber"]
    assert huber == ["failure"] * 12 + ["success"]
    spray = {e["user.name"] for e in logins if e.get("source.ip") == "203.0.113.166"}
    assert len(spray) >= 10
    kmarx = {e["source.ip"] for e in logins if e["user.name"] == "kmarx" and e["@timestamp"] > "2026-11-02T10"
             and e["@timestamp"] < "2026-11-02T11" and e["event.outcome"] == "success"}
    assert kmarx == {"192.0.2.61", "198.51.100.61"}


def test_time_from_eventtime_wins_and_units_are_recognised() -> None:
    base = 'logid="0101039424" type="event" subtype="vpn" action="tunnel-up"'
    for stamp in ("1793610930", "1793610930123", "1793610930123456", "1793610930123456789"):
        event = fortigate.parse(f"date=2026-11-02 time=23:59:59 eventtime={stamp} tz=\"-0500\" {base}", CTX)
        assert event["@timestamp"].startswith("2026-11-02T09:15:30.")


def test_tz_field_is_honoured_without_eventtime() -> None:
    base = 'logid="0101039424" type="event" subtype="vpn" action="tunnel-up"'
    event = fortigate.parse(f'date=2026-11-02 time=10:15:30 tz="-0500" {base}', CTX)
    assert event["@timestamp"] == "2026-11-02T15:15:30.000Z"
    event = fortigate.parse(f'date=2026-11-02 time=10:15:30 tz="+05:30" {base}', CTX)
    assert event["@timestamp"] == "2026-11-02T04:45:30.000Z"


def test_naive_device_time_takes_the_source_timezone() -> None:
    """Older FortiOS (< 6.2) writes neither tz nor eventtime: the configured zone decides, DST included."""
    base = 'logid="0101039424" type="event" subtype="vpn" action="tunnel-up"'
    berlin = ParseContext(timezone=ZoneInfo("Europe/Berlin"))
    assert fortigate.parse(f"date=2026-11-02 time=10:15:30 {base}", berlin)["@timestamp"] == \
        "2026-11-02T09:15:30.000Z"
    assert fortigate.parse(f"date=2026-07-02 time=10:15:30 {base}", berlin)["@timestamp"] == \
        "2026-07-02T08:15:30.000Z"
    assert fortigate.parse(f"date=2026-11-02 time=10:15:30 {base}", ParseContext())["@timestamp"] == \
        "2026-11-02T10:15:30.000Z"
    assert "@timestamp" not in fortigate.parse(base, berlin)  # the shared layer uses the header time


def test_hostname_falls_back_to_the_syslog_header_and_default_domain_applies() -> None:
    ctx = ParseContext(hostname="fgt-edge-02", options={"default_domain": "hospital.example"})
    event = fortigate.parse('logid="0101039426" type="event" subtype="vpn" action="ssl-login-fail" user="bweber"', ctx)
    assert event["observer.hostname"] == "fgt-edge-02" and event["user.domain"] == "hospital.example"


@pytest.mark.parametrize("text", ["", "hello world", "%ASA-6-113039: Group <x> User <y> IP <1.2.3.4>",
                                  'date=2026-11-02 time=10:00:00 devname="x" msg="no id"', "logid= type="])
def test_other_formats_are_parse_errors(text: str) -> None:
    with pytest.raises(VpnParseError):
        fortigate.parse(text, CTX)


def _check(text: str) -> None:
    try:
        event = fortigate.parse(text, CTX)
    except VpnParseError:
        return
    assert isinstance(event, dict) and event["event.code"]
    for key in ("source.port", "destination.port"):
        assert key not in event or 0 <= event[key] <= 65535
    assert "@timestamp" not in event or re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["@timestamp"])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_fuzz_arbitrary_text(text: str) -> None:
    _check(text)


_REAL = fixture_messages()[:60] + [HEAD + body for _, body, _, _ in CASES]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_REAL), st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 40),
                                                  st.text(max_size=12)), max_size=4))
def test_fuzz_mutated_real_lines(line: str, edits: list[tuple[int, int, str]]) -> None:
    for start, length, insert in edits:
        start %= len(line) + 1
        line = line[:start] + insert + line[start + length:]
    _check(line)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["eventtime", "date", "time", "tz", "remip", "remport", "duration", "sentbyte",
                        "tunnelip", "stage", "user", "ui", "status"]),
       st.one_of(st.text(max_size=30), st.integers(-10**25, 10**25).map(str)))
def test_fuzz_field_values(key: str, value: str) -> None:
    quoted = value.replace("\\", "\\\\").replace('"', '\\"')
    _check(f'logid="0101039424" type="event" subtype="vpn" action="tunnel-up" {key}="{quoted}"')
    _check(f'date=2026-11-02 time=10:00:00 logid="0101039424" type="event" {key}={value.replace(" ", "")}')


def test_parse_is_deterministic_and_not_mutating_context() -> None:
    ctx = ParseContext(options={"default_domain": "hospital.example"})
    line = fixture_messages()[0]
    assert fortigate.parse(line, ctx) == fortigate.parse(line, ctx)
    assert ctx.options == {"default_domain": "hospital.example"}
    assert datetime(2026, 11, 2, tzinfo=timezone.utc)  # keep imports honest for readers
