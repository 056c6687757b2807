"""The PAN-OS GlobalProtect parser: what an analyst sees for each documented event id, on both log formats.

The shared syslog layer is built separately, so these tests split the RFC 3164 header themselves and call
``parse`` directly, the way ``connectors/vpn/base.py`` will.
"""

from __future__ import annotations

import importlib.util
import re
from datetime import datetime, timezone, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, HealthCheck
from hypothesis import strategies as st

from connectors.vpn import globalprotect
from connectors.vpn.contract import ParseContext, VpnParseError
from fixtures.vpn_staff import HOMES

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "vpn-globalprotect" / "globalprotect.log"
HEADER = re.compile(r"^<\d+>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d (\S+) (.*)$")
BERLIN = ParseContext(timezone=ZoneInfo("Europe/Berlin"), hostname="syslog-host", year=2026)


def split(line: str) -> tuple[str, str]:
    match = HEADER.match(line)
    assert match, line
    return match.group(1), match.group(2)


def gp_line(eventid: str, stage: str, user: str, status: str = "success", *, tunnel: str = "", private: str = "0.0.0.0",
            reason: str = "", error: str = "", duration: str = "0", error_code: str = "0", region: str = "DE") -> str:
    return (f"1,2026/11/02 08:01:12,013201012345,GLOBALPROTECT,0,2816,2026/11/02 08:01:12,vsys1,{eventid},{stage},"
            f"LDAP,{tunnel},{user},{region},KLI-NB-1234,192.0.2.15,::,{private},::,4711,,6.2.4-28,Windows,"
            f'"Microsoft Windows 10 Enterprise , 64-bit",1,{reason},{error},,{status},external,{duration},user-logon,'
            f"{error_code},GP-Portal-KLINIKUM,1234,0x8000000000000000,2026-11-02T08:01:12.345+01:00,,,,,"
            f"GP-Gateway-KLINIKUM,0,0,0,0,,pa-gp-klinikum-01,0")


def sys_line(eventid: str, obj: str, description: str) -> str:
    return (f"1,2026/11/02 08:01:12,001801009876,SYSTEM,globalprotect,0,2026/11/02 08:01:12,,{eventid},{obj},0,0,"
            f'general,informational,"{description}",4321,0x0,0,0,0,0,,pa-legacy-02')


COMMON_GP = {
    "@timestamp": "2026-11-02T07:01:12.000Z",
    "event.kind": "event",
    "observer.vendor": "Palo Alto Networks",
    "observer.product": "PAN-OS",
    "observer.hostname": "pa-gp-klinikum-01",
    "observer.serial_number": "013201012345",
    "source.ip": "192.0.2.15",
    "source.geo.country_iso_code": "DE",
    "user.name": "jdoe",
    "user.domain": "klinikum",
    "host.hostname": "KLI-NB-1234",
    "vpn.group": "GP-Gateway-KLINIKUM",
}

GP_CASES = [
    (gp_line("portal-auth", "login", "KLINIKUM\\jdoe"),
     {"event.code": "portal-auth", "event.action": "vpn-login", "event.category": ["authentication"],
      "event.type": ["start"], "event.outcome": "success", "vpn.stage": "login", "vpn.auth_method": "LDAP"}),
    (gp_line("portal-auth", "login", "KLINIKUM\\jdoe", "failure",
             error="Authentication failed: Invalid username or password", error_code="0"),
     {"event.code": "portal-auth", "event.action": "vpn-login", "event.outcome": "failure",
      "vpn.reason": "Authentication failed: Invalid username or password",
      "event.reason": "Authentication failed: Invalid username or password"}),
    (gp_line("gateway-auth", "login", "jdoe@klinikum", "failure", error="Authentication failed", error_code="12"),
     {"event.code": "gateway-auth", "event.action": "vpn-login", "event.outcome": "failure", "error.code": "12",
      "vpn.reason": "Authentication failed"}),
    (gp_line("gateway-getconfig", "configuration", "KLINIKUM\\jdoe", private="10.90.0.7"),
     {"event.code": "gateway-getconfig", "event.action": "vpn-address-assigned", "event.category": ["network"],
      "event.type": ["info"], "vpn.assigned_ip": "10.90.0.7"}),
    (gp_line("gateway-register", "tunnel", "KLINIKUM\\jdoe", tunnel="IPSec", private="10.90.0.7"),
     {"event.code": "gateway-register", "event.action": "vpn-tunnel-up", "event.category": ["session", "network"],
      "event.type": ["start"], "vpn.tunnel.type": "ipsec", "vpn.assigned_ip": "10.90.0.7"}),
    (gp_line("gateway-logout", "logout", "KLINIKUM\\jdoe", tunnel="SSL", private="10.90.0.7",
             reason="client logout", duration="3725"),
     {"event.code": "gateway-logout", "event.action": "vpn-logout", "event.category": ["session", "network"],
      "event.type": ["end"], "vpn.session.duration": 3725, "vpn.tunnel.type": "ssl",
      "vpn.reason": "client logout"}),
    (gp_line("gateway-config-release", "logout", "KLINIKUM\\jdoe", private="10.90.0.7", duration="60"),
     {"event.code": "gateway-config-release", "event.action": "vpn-session-end", "event.type": ["end"],
      "vpn.session.duration": 60}),
    (gp_line("gateway-hip-report", "host-info", "KLINIKUM\\jdoe"),
     {"event.code": "gateway-hip-report", "event.action": "vpn-hip-report", "event.type": ["info"]}),
    (gp_line("portal-prelogin", "before-login", "KLINIKUM\\jdoe"),
     {"event.code": "portal-prelogin", "event.action": "vpn-prelogin", "event.type": ["info"]}),
]


@pytest.mark.parametrize(("line", "expected"), GP_CASES, ids=[c[1]["event.code"] + "-" + c[1].get(
    "event.outcome", "success") for c in GP_CASES])
def test_globalprotect_csv_event_ids(line: str, expected: dict) -> None:
    event = globalprotect.parse(line, BERLIN)
    for key, value in {**COMMON_GP, **expected}.items():
        assert event.get(key) == value, key
    assert "vpn.assigned_ip" in event or "vpn.assigned_ip" not in expected


SYS_CASES = [
    ("globalprotectportal-auth-succ", "GP-Portal-Legacy",
     "GlobalProtect portal user authentication succeeded. Login from: 203.0.113.5, Source region: NL, "
     "User name: KLINIKUM\\jdoe, Auth type: profile.",
     {"event.action": "vpn-login", "event.outcome": "success", "event.category": ["authentication"],
      "event.type": ["start"], "source.ip": "203.0.113.5", "source.geo.country_iso_code": "NL",
      "user.name": "jdoe", "user.domain": "klinikum", "vpn.auth_method": "profile", "vpn.portal": "GP-Portal-Legacy"}),
    ("globalprotectportal-auth-fail", "GP-Portal-Legacy",
     "GlobalProtect portal user authentication failed. Login from: 203.0.113.5, Source region: NL, "
     "User name: jdoe, Reason: Authentication failed: Invalid username or password, Auth type: profile.",
     {"event.action": "vpn-login", "event.outcome": "failure", "user.name": "jdoe", "source.ip": "203.0.113.5",
      "vpn.reason": "Authentication failed: Invalid username or password"}),
    ("globalprotectgateway-auth-succ", "GP-Gateway-Legacy",
     "GlobalProtect gateway user authentication succeeded. Login from: 192.0.2.9, Source region: DE, "
     "User name: jdoe@hospital.example, Client OS version: Microsoft Windows 10 Pro , 64-bit, Auth type: profile.",
     {"event.action": "vpn-login", "event.outcome": "success", "user.name": "jdoe",
      "user.domain": "hospital.example", "host.os.full": "Microsoft Windows 10 Pro , 64-bit",
      "vpn.gateway": "GP-Gateway-Legacy", "vpn.group": "GP-Gateway-Legacy"}),
    ("globalprotectgateway-auth-fail", "GP-Gateway-Legacy",
     "GlobalProtect gateway user authentication failed. Login from: 192.0.2.9, Source region: DE, "
     "User name: jdoe, Client OS version: Microsoft Windows 10 Pro , 64-bit, "
     "Reason: Authentication failed: Account locked, Auth type: profile.",
     {"event.action": "vpn-login", "event.outcome": "failure", "vpn.reason": "Authentication failed: Account locked",
      "source.ip": "192.0.2.9"}),
    ("globalprotectgateway-config-succ", "GP-Gateway-Legacy",
     "GlobalProtect gateway client configuration generated. User name: jdoe, Private IP: 10.91.0.7, "
     "Client version: 5.2.13-10, Device name: KLI-PC-1, Client OS version: Microsoft Windows 10 Pro , 64-bit, "
     "VPN type: Device Level VPN.",
     {"event.action": "vpn-address-assigned", "event.outcome": "success", "vpn.assigned_ip": "10.91.0.7",
      "host.hostname": "KLI-PC-1", "vpn.client.version": "5.2.13-10", "vpn.client.vpn_type": "Device Level VPN"}),
    ("globalprotectgateway-regist-succ", "GP-Gateway-Legacy",
     "GlobalProtect gateway user login succeeded. Login from: 192.0.2.9, Source region: DE, User name: jdoe, "
     "Client OS version: Apple Mac OS X 14.6.1.",
     {"event.action": "vpn-tunnel-up", "event.category": ["session", "network"], "event.type": ["start"],
      "event.outcome": "success", "source.ip": "192.0.2.9", "host.os.full": "Apple Mac OS X 14.6.1"}),
    ("globalprotectgateway-logout-succ", "GP-Gateway-Legacy",
     "GlobalProtect gateway user logout succeeded. User name: jdoe, Client OS version: Apple iOS 17.6, "
     "Reason: client logout.",
     {"event.action": "vpn-logout", "event.type": ["end"], "event.outcome": "success", "user.name": "jdoe",
      "vpn.reason": "client logout"}),
    ("globalprotectgateway-config-release", "GP-Gateway-Legacy",
     "GlobalProtect gateway client configuration released. User name: jdoe, Private IP: 10.91.0.7.",
     {"event.action": "vpn-session-end", "event.type": ["end"], "vpn.assigned_ip": "10.91.0.7"}),
]


@pytest.mark.parametrize(("eventid", "obj", "description", "expected"), SYS_CASES, ids=[c[0] for c in SYS_CASES])
def test_system_log_event_ids(eventid: str, obj: str, description: str, expected: dict) -> None:
    event = globalprotect.parse(sys_line(eventid, obj, description), BERLIN)
    base = {"@timestamp": "2026-11-02T07:01:12.000Z", "event.kind": "event", "event.code": eventid,
            "observer.vendor": "Palo Alto Networks", "observer.product": "PAN-OS",
            "observer.hostname": "pa-legacy-02", "log.level": "informational", "event.sequence": 4321}
    for key, value in {**base, **expected}.items():
        assert event.get(key) == value, key


def test_unknown_ids_and_other_log_types_are_kept_with_event_code() -> None:
    event = globalprotect.parse(gp_line("gateway-future-thing", "tunnel", "jdoe"), BERLIN)
    assert event["event.code"] == "gateway-future-thing" and "event.action" not in event
    assert event["user.name"] == "jdoe" and event["event.outcome"] == "success"
    event = globalprotect.parse(sys_line("globalprotectgateway-newthing-fail", "GP", "Something failed."), BERLIN)
    assert event["event.code"] == "globalprotectgateway-newthing-fail" and event["event.outcome"] == "failure"
    other = ("1,2026/11/02 08:01:12,013201012345,SYSTEM,auth,0,2026/11/02 08:01:12,,auth-success,,0,0,general,"
             "informational,\"When authenticating user 'admin' from '10.0.0.5'.\",1,0x0,0,0,0,0,,pa-gp-klinikum-01")
    assert globalprotect.parse(other, BERLIN)["event.code"] == "auth-success"
    traffic = "1,2026/11/02 08:01:12,013201012345,TRAFFIC,end,2816,2026/11/02 08:01:12,192.0.2.1,10.0.0.1"
    assert globalprotect.parse(traffic, BERLIN)["event.code"] == "traffic-end"


@pytest.mark.parametrize("text", ["", "hello world", "%ASA-6-113039: Group <x> User <y> IP <1.2.3.4>",
                                  'date=2026-11-02 time=08:01:12 logid="0101039947" type="event"',
                                  "1,2,3,4,5,6,7,8,9,10", "1,2026/13/02 08:01:12,0,GLOBALPROTECT,0,0,0,0,x",
                                  "1,2026/11/02 08:01:12,0,not a type!,0,0,0,0,x"])
def test_foreign_text_is_a_parse_error(text: str) -> None:
    with pytest.raises(VpnParseError):
        globalprotect.parse(text, BERLIN)


def test_naive_device_time_takes_the_source_timezone() -> None:
    line = gp_line("gateway-auth", "login", "jdoe")
    assert globalprotect.parse(line, ParseContext())["@timestamp"] == "2026-11-02T08:01:12.000Z"
    assert globalprotect.parse(line, BERLIN)["@timestamp"] == "2026-11-02T07:01:12.000Z"
    ny = ParseContext(timezone=ZoneInfo("America/New_York"))
    assert globalprotect.parse(line, ny)["@timestamp"] == "2026-11-02T13:01:12.000Z"
    fixed = ParseContext(timezone=timezone(timedelta(hours=-5)))
    assert globalprotect.parse(line, fixed)["@timestamp"] == "2026-11-02T13:01:12.000Z"
    summer = line.replace("2026/11/02", "2026/07/01", 1)
    assert globalprotect.parse(summer, BERLIN)["@timestamp"] == "2026-07-01T06:01:12.000Z"


def test_hostname_falls_back_to_the_syslog_header_and_default_domain_applies() -> None:
    line = sys_line("globalprotectgateway-auth-succ", "GP", "GlobalProtect gateway user authentication succeeded. "
                    "Login from: 192.0.2.9, User name: jdoe, Auth type: profile.").rsplit(",", 1)[0] + ","
    context = ParseContext(hostname="pa-from-header", options={"default_domain": "hospital.example"})
    event = globalprotect.parse(line, context)
    assert event["observer.hostname"] == "pa-from-header"
    assert (event["user.name"], event["user.domain"]) == ("jdoe", "hospital.example")


def fixture_events() -> list[tuple[str, dict]]:
    out = []
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        host, message = split(line)
        out.append((line, globalprotect.parse(message, ParseContext(timezone=ZoneInfo("Europe/Berlin"),
                                                                    hostname=host, year=2026))))
    return out


def test_whole_fixture_parses_and_every_line_has_an_event_code() -> None:
    events = fixture_events()
    assert len(events) >= 400
    for line, event in events:
        assert event.get("event.code"), line
        assert event.get("event.action"), line
        assert event["@timestamp"].startswith("2026-11-0"), line
        assert event["observer.hostname"] in ("pa-gp-klinikum-01", "pa-legacy-02")
    users = {e["user.name"] for _, e in events if "user.name" in e}
    assert len(users) >= 40
    assert {e["event.code"] for _, e in events} >= {"portal-auth", "gateway-auth", "gateway-register",
                                                    "gateway-logout", "globalprotectgateway-auth-fail",
                                                    "globalprotectgateway-regist-succ",
                                                    "globalprotectgateway-logout-succ"}


def test_fixture_carries_the_rule_scenarios() -> None:
    events = [e for _, e in fixture_events()]
    logins = [e for e in events if e.get("event.action") == "vpn-login"]
    huber = [e for e in logins if e.get("user.name") == "admin.huber"]
    first_success = next(i for i, e in enumerate(huber) if e["event.outcome"] == "success")
    assert first_success >= 12 and all(e["event.outcome"] == "failure" for e in huber[:first_success])
    sprayed = {e["user.name"] for e in logins if e.get("source.ip") == "203.0.113.23" and e["event.outcome"] == "failure"}
    assert len(sprayed) >= 10
    mpeters = [e for e in events if e.get("user.name") == "mpeters"]
    second_up = next(e["@timestamp"] for e in mpeters
                     if e.get("event.action") == "vpn-tunnel-up" and e["source.ip"] == "198.51.100.90")
    home_up = max(e["@timestamp"] for e in mpeters if e.get("event.action") == "vpn-tunnel-up"
                  and e["source.ip"] == HOMES["mpeters"] and e["@timestamp"] < second_up)
    home_down = min(e["@timestamp"] for e in mpeters if e.get("event.action") == "vpn-logout"
                    and e["source.ip"] == HOMES["mpeters"] and e["@timestamp"] > home_up)
    assert home_up < second_up < home_down  # both tunnels open at once
    bweber = sorted((e["@timestamp"], e["source.ip"]) for e in logins
                    if e.get("user.name") == "bweber" and e["event.outcome"] == "success")
    ips = {ip for _, ip in bweber}
    assert {HOMES["bweber"], "198.51.100.140"} <= ips
    times = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t, ip in bweber
             if ip in (HOMES["bweber"], "198.51.100.140") and "2026-11-02T14:30" < t < "2026-11-02T16:30"]
    assert max(times) - min(times) < timedelta(hours=1)
    # ordinary traffic: fvogel's connections from two home addresses follow one another, never overlap
    fvogel = sorted((e["@timestamp"], e["event.action"]) for e in events if e.get("user.name") == "fvogel"
                    and e.get("event.action") in ("vpn-tunnel-up", "vpn-logout"))
    assert len(fvogel) >= 4
    assert [action for _, action in fvogel] == ["vpn-tunnel-up", "vpn-logout"] * (len(fvogel) // 2)


def test_fixture_is_what_its_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("gp_fixture_generate", FIXTURE.with_name("generate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == FIXTURE.read_text(encoding="utf-8")


def _check(text: str) -> None:
    try:
        event = globalprotect.parse(text, BERLIN)
    except VpnParseError:
        return
    assert isinstance(event, dict) and "@timestamp" in event and "event.code" in event


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_fuzz_arbitrary_text(text: str) -> None:
    _check(text)


_REAL = [split(line)[1] for line in FIXTURE.read_text(encoding="utf-8").splitlines()[::9]]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_REAL), st.data())
def test_fuzz_mutated_real_lines(line: str, data: st.DataObject) -> None:
    fields = line.split(",")
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(fields) - 1))
        fields[index] = data.draw(st.one_of(st.text(max_size=12), st.sampled_from(
            ["", "0.0.0.0", "::", "-1", "99999999999999999999", '"', "0001/01/01 00:00:00", "9999/12/31 23:59:59",
             "User name: ", "Login from: 300.1.1.1", "GLOBALPROTECT", "SYSTEM", "\n", "\x00"])))
    cut = data.draw(st.integers(0, len(line)))
    _check(",".join(fields))
    _check(line[:cut])
