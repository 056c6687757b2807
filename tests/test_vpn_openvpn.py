"""OpenVPN server log -> ECS: each covered line form, the whole fixture, time zones, fuzzing.

Tests call the vendor parser directly (the shared VPN connector layer is separate): what an analyst sees
per line is the contract here.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.syslog.rfc5424 import parse_syslog
from connectors.vpn import openvpn
from connectors.vpn.contract import ParseContext, VpnParseError

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "vpn-openvpn" / "openvpn.log"
CTX = ParseContext(hostname="vpn-gw-01", appname="openvpn", year=2026)
P = "203.0.113.66:12577"
BASE = {"event.kind": "event", "observer.vendor": "OpenVPN", "observer.product": "OpenVPN",
        "observer.hostname": "vpn-gw-01"}
SRC = {"source.ip": "203.0.113.66", "source.port": 12577, "vpn.session.id": P}
HUBER = {"user.name": "admin.huber", "vpn.user.original": "admin.huber"}


def ecs(code: str, action: str, category: list[str], type_: list[str], outcome: str, **extra: object) -> dict:
    fields = {**BASE, "event.code": code, "event.action": action, "event.category": category,
              "event.type": type_, "event.outcome": outcome}
    fields.update({k.replace("__", "."): v for k, v in extra.items()})
    return fields


CASES = [
    (f"TCP connection established with [AF_INET]{P}",
     {**ecs("tcp-connected", "connection-established", ["network"], ["connection", "start"], "success"), **SRC}),
    (f"{P} TLS: Initial packet from [AF_INET]{P}, sid=4881a97f 6273f615",
     {**ecs("tls-initial-packet", "tls-initial-packet", ["network"], ["connection", "start"], "unknown",
            vpn__tls__session_id="4881a97f6273f615"), **SRC}),
    (f"{P} VERIFY OK: depth=0, CN=admin.huber",
     {**ecs("verify-ok", "certificate-verified", ["authentication"], ["info"], "success",
            tls__client__subject="CN=admin.huber"), **SRC}),
    (f"{P} VERIFY ERROR: depth=0, error=certificate has expired: CN=ujung, serial=4711",
     {**ecs("verify-error", "certificate-verify-failed", ["authentication"], ["start"], "failure",
            vpn__reason="depth=0, error=certificate has expired: CN=ujung, serial=4711",
            vpn__tunnel__type="ssl"), **SRC}),
    (f"{P} TLS Error: TLS handshake failed",
     {**ecs("tls-handshake-failed", "tls-handshake-failed", ["network"], ["connection"], "failure"), **SRC}),
    (f"{P} TLS Error: TLS key negotiation failed to occur within 60 seconds (check your network connectivity)",
     {**ecs("tls-error", "tls-error", ["network"], ["connection"], "failure",
            vpn__reason="TLS key negotiation failed to occur within 60 seconds (check your network connectivity)"),
      **SRC}),
    (f"{P} TLS Auth Error: Auth Username/Password verification failed for peer",
     {**ecs("auth-failed", "user-pass-verify-failed", ["authentication"], ["info"], "failure",
            vpn__tunnel__type="ssl"), **SRC}),
    (f"{P} TLS: Username/Password authentication succeeded for username 'admin.huber'",
     {**ecs("auth-succeeded", "vpn-login", ["authentication"], ["start"], "success", vpn__tunnel__type="ssl"),
      **SRC, **HUBER}),
    (f"admin.huber/{P} SENT CONTROL [admin.huber]: 'AUTH_FAILED' (status=1)",
     {**ecs("auth-failed-sent", "vpn-login", ["authentication"], ["start"], "failure", vpn__tunnel__type="ssl"),
      **SRC, **HUBER}),
    (f"{P} SENT CONTROL [UNDEF]: 'AUTH_FAILED' (status=1)",
     {**ecs("auth-failed-sent", "vpn-login", ["authentication"], ["start"], "failure", vpn__tunnel__type="ssl"),
      **SRC}),
    (f"{P} [admin.huber] Peer Connection Initiated with [AF_INET]{P}",
     {**ecs("peer-connected", "peer-connection-initiated", ["network"], ["connection", "start"], "unknown",
            vpn__tunnel__type="ssl"),
      **SRC, **HUBER}),
    (f"admin.huber/{P} MULTI_sva: pool returned IPv4=10.8.0.6, IPv6=(Not enabled)",
     {**ecs("address-assigned", "address-assigned", ["network", "session"], ["info"], "success",
            vpn__assigned_ip="10.8.0.6"), **SRC, **HUBER}),
    (f"admin.huber/{P} MULTI: Learn: 10.8.0.6 -> admin.huber/{P}",
     {**ecs("route-learned", "route-learned", ["network", "session"], ["info"], "success",
            vpn__assigned_ip="10.8.0.6"), **SRC, **HUBER}),
    (f"admin.huber/{P} MULTI: primary virtual IP for admin.huber/{P}: 10.8.0.6",
     {**ecs("session-started", "vpn-session-start", ["session"], ["start"], "success",
            vpn__assigned_ip="10.8.0.6", vpn__tunnel__type="ssl"), **SRC, **HUBER}),
    (f"admin.huber/{P} SIGTERM[soft,remote-exit] received, client-instance exiting",
     {**ecs("client-exiting", "client-instance-exiting", ["session"], ["end"], "unknown",
            vpn__reason="remote-exit", vpn__tunnel__type="ssl"), **SRC, **HUBER}),
    (f"admin.huber/{P} SIGUSR1[soft,ping-restart] received, client-instance restarting",
     {**ecs("client-exiting", "client-restarting", ["session"], ["end"], "unknown",
            vpn__reason="ping-restart", vpn__tunnel__type="ssl"), **SRC, **HUBER}),
    ("client-disconnect: common_name=fvogel@hospital.example username=fvogel@hospital.example "
     "trusted_ip=192.0.2.5 trusted_port=5555 ifconfig_pool_remote_ip=10.8.0.14 time_duration=3605 "
     "bytes_received=123456 bytes_sent=9876543",
     {**ecs("client-disconnect", "vpn-logout", ["session"], ["end"], "success", vpn__tunnel__type="ssl",
            vpn__common_name="fvogel@hospital.example", vpn__assigned_ip="10.8.0.14",
            vpn__session__duration=3605, vpn__bytes__received=123456, vpn__bytes__sent=9876543),
      "user.name": "fvogel", "user.domain": "hospital.example", "vpn.user.original": "fvogel@hospital.example",
      "source.ip": "192.0.2.5", "source.port": 5555, "vpn.session.id": "192.0.2.5:5555"}),
    ("CLIENT_LIST,jdoe,192.0.2.5:5555,10.8.0.6,,2231,4410,2026-11-02 08:01:12,1793606472,jdoe,5,0,AES-256-GCM",
     {**ecs("status-client", "session-status", ["session"], ["info"], "unknown", vpn__assigned_ip="10.8.0.6",
            vpn__bytes__received=2231, vpn__bytes__sent=4410),
      "event.kind": "state", "user.name": "jdoe", "vpn.user.original": "jdoe",
      "source.ip": "192.0.2.5", "source.port": 5555, "vpn.session.id": "192.0.2.5:5555"}),
    (f"admin.huber/{P} MULTI: new connection by client 'admin.huber' will cause previous active sessions by "
     "this client to be dropped.  Remember to use the --duplicate-cn option",
     {**ecs("duplicate-session", "previous-session-dropped", ["session"], ["info"], "unknown"), **SRC, **HUBER}),
    (f"{P} tls-crypt unwrap error: packet authentication failed",
     {**ecs("tls-crypt-error", "tls-crypt-unwrap-failed", ["network"], ["connection", "denied"], "failure",
            vpn__reason="packet authentication failed"), **SRC}),
    (f"{P} Authenticate/Decrypt packet error: packet HMAC authentication failed",
     {**ecs("packet-auth-error", "packet-authentication-failed", ["network"], ["connection", "denied"],
            "failure", vpn__reason="packet HMAC authentication failed"), **SRC}),
]


@pytest.mark.parametrize("message,expected", CASES, ids=[c[1]["event.code"] for c in CASES])
def test_each_line_form_maps_to_exact_ecs_fields(message: str, expected: dict) -> None:
    assert openvpn.parse(message, CTX) == expected


def test_domain_spellings_give_one_user() -> None:
    ctx = ParseContext(appname="openvpn", options={"default_domain": "hospital.example"})
    names = {openvpn.parse(f"{u}/{P} SENT CONTROL [{u}]: 'AUTH_FAILED' (status=1)", ctx)["user.name"]
             for u in ("jdoe", "KLINIKUM\\jdoe", "jdoe@hospital.example")}
    assert names == {"jdoe"}
    assert openvpn.parse(f"jdoe/{P} SENT CONTROL [jdoe]: 'AUTH_FAILED'", ctx)["user.domain"] == "hospital.example"


def test_ipv6_peer_address() -> None:
    event = openvpn.parse("jdoe/2001:db8::5:51234 MULTI: primary virtual IP for jdoe/2001:db8::5:51234: 10.8.0.6",
                          CTX)
    assert (event["source.ip"], event["source.port"], event["vpn.assigned_ip"]) == ("2001:db8::5", 51234, "10.8.0.6")


def test_unknown_openvpn_line_is_kept_with_a_code() -> None:
    event = openvpn.parse(f"{P} WARNING: something new in OpenVPN 2.7", CTX)
    assert event["event.code"] == "other" and event["event.kind"] == "event" and event["source.ip"] == "203.0.113.66"
    assert openvpn.parse("Initialization Sequence Completed", ParseContext())["event.code"] == "other"


@pytest.mark.parametrize("text", ["", "   ", "hello world", "%ASA-6-113039: Group <x> User <y> IP <z>",
                                  "date=2026-11-02 time=08:01:12 type=event", "a\x00b"])
def test_not_openvpn_text_is_a_parse_error(text: str) -> None:
    with pytest.raises(VpnParseError):
        openvpn.parse(text, ParseContext(appname="asa"))


def fixture_messages() -> list[tuple[str, ParseContext]]:
    out = []
    for raw in FIXTURE.read_bytes().splitlines():
        message = parse_syslog(raw)
        out.append((message.text(), ParseContext(hostname=message.hostname, appname=message.appname, year=2026)))
    return out


def test_whole_fixture_parses_and_every_line_has_a_code() -> None:
    events = [openvpn.parse(text, ctx) for text, ctx in fixture_messages()]
    assert len(events) > 1000
    assert all(e.get("event.code") and e["event.code"] != "other" for e in events)
    logins = [e for e in events if e["event.action"] == "vpn-login"]
    failures = Counter(e["user.name"] for e in logins if e["event.outcome"] == "failure")
    assert failures["admin.huber"] >= 12
    assert any(e["user.name"] == "admin.huber" and e["source.ip"] == "203.0.113.66" and e["event.outcome"] == "success"
               for e in logins)
    spray = {e["user.name"] for e in logins if e["source.ip"] == "203.0.113.99" and e["event.outcome"] == "failure"}
    assert len(spray) >= 10
    users = {e["user.name"] for e in events if "user.name" in e}
    assert len(users) >= 40
    lindner = {e["source.ip"] for e in events if e["event.code"] == "session-started" and e["user.name"] == "dr.lindner"}
    assert {"192.0.2.44", "198.51.100.50"} <= lindner
    ends = [e for e in events if e["event.code"] == "client-disconnect"]
    assert ends and all(isinstance(e["vpn.bytes.sent"], int) and e["vpn.session.duration"] > 0 for e in ends)
    # the second address's session starts within 30 minutes of the first, while the first is still up
    # (the parser alone gives no @timestamp here: the time is in the syslog header, "Nov  2 13:02:40")
    stamps = [datetime.strptime("2026 " + raw[4:19].decode(), "%Y %b %d %H:%M:%S")
              for raw in FIXTURE.read_bytes().splitlines()]
    timed = list(zip(stamps, events, strict=True))
    lindner_at = [(at, e) for at, e in timed if e.get("user.name") == "dr.lindner"]
    second = [at for at, e in lindner_at if e["event.code"] == "session-started" and e["source.ip"] == "198.51.100.50"]
    assert len(second) == 1
    home = [(at, e["source.port"]) for at, e in lindner_at if e["event.code"] == "session-started"
            and e["source.ip"] == "192.0.2.44" and timedelta(minutes=5) < second[0] - at < timedelta(minutes=30)]
    assert len(home) == 1
    home_end = next(at for at, e in lindner_at if e["event.code"] == "client-disconnect"
                    and e["source.ip"] == "192.0.2.44" and e["source.port"] == home[0][1])
    assert home_end > second[0]  # the first session is still up


def test_file_stamps_use_the_source_time_zone() -> None:
    berlin = ParseContext(timezone=ZoneInfo("Europe/Berlin"))
    line = f"{P} TLS Error: TLS handshake failed"
    assert openvpn.parse(f"2026-11-02 08:01:12 {line}", berlin)["@timestamp"] == "2026-11-02T07:01:12.000Z"
    assert openvpn.parse(f"Mon Nov  2 08:01:12 2026 {line}", berlin)["@timestamp"] == "2026-11-02T07:01:12.000Z"
    summer = openvpn.parse(f"2026-07-02 08:01:12 {line}", berlin)["@timestamp"]
    assert summer == "2026-07-02T06:01:12.000Z"
    assert openvpn.parse(f"2026-11-02 08:01:12 {line}", ParseContext())["@timestamp"] == "2026-11-02T08:01:12.000Z"
    # a stamped line needs no syslog tag to be recognised (OpenVPN's own --log file)
    assert openvpn.parse("2026-11-02 08:01:12 Initialization Sequence Completed", ParseContext())["event.code"] == "other"
    # syslog messages carry no time of their own: the shared layer uses the header's
    assert "@timestamp" not in openvpn.parse(line, CTX)


def test_fixture_lines_as_plain_log_file_get_their_stamp() -> None:
    berlin = ParseContext(timezone=ZoneInfo("Europe/Berlin"))
    for text, _ in fixture_messages()[:200]:
        event = openvpn.parse(f"2026-11-02 09:30:00 {text}", berlin)
        assert event["@timestamp"] == "2026-11-02T08:30:00.000Z" and event["event.code"] != "other"


REAL_LINES = [text for text, _ in fixture_messages()[:300]] + [c[0] for c in CASES]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.sampled_from([None, "openvpn", "asa"]))
def test_fuzz_any_text_gives_event_or_parse_error(text: str, appname: str | None) -> None:
    try:
        event = openvpn.parse(text, ParseContext(appname=appname))
    except VpnParseError:
        return
    assert isinstance(event.get("event.code"), str)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(REAL_LINES), st.integers(0, 400), st.integers(0, 40), st.text(max_size=12))
def test_fuzz_mutated_real_lines(line: str, at: int, cut: int, insert: str) -> None:
    mutated = line[:at] + insert + line[at + cut:]
    for stamp in ("", "2026-11-02 08:01:12 ", "Mon Nov  2 08:01:12 2026 "):
        try:
            event = openvpn.parse(stamp + mutated, ParseContext(timezone=ZoneInfo("Europe/Berlin")))
        except VpnParseError:
            continue
        assert isinstance(event["event.code"], str)
        for key in ("vpn.bytes.sent", "vpn.bytes.received", "vpn.session.duration", "source.port"):
            assert key not in event or isinstance(event[key], int)


def test_non_ascii_digits_in_numbers_are_ignored() -> None:
    event = openvpn.parse("client-disconnect: username=jdoe bytes_sent=\u00b2 time_duration=\u0663 trusted_port=\u00b9",
                          CTX)
    assert event["event.code"] == "client-disconnect"
    assert not {"vpn.bytes.sent", "vpn.session.duration", "source.port"} & set(event)


def test_bad_stamp_values_are_parse_errors_not_crashes() -> None:
    with pytest.raises(VpnParseError):
        openvpn.parse("2026-13-45 08:01:12 TLS Error: TLS handshake failed", ParseContext())
    assert datetime(2026, 11, 2, tzinfo=timezone.utc)  # keep imports honest
