"""Cisco ASA / FTD (AnyConnect / Secure Client, clientless WebVPN, IKEv2 remote access) syslog -> ECS.

Why a parser per message id: the ASA has no key=value format; every message id has its own English
sentence (documented in Cisco's "Cisco Secure Firewall ASA Series Syslog Messages"). The remote-access
life cycle is spread over several of them: AAA authentication (1130xx), the AnyConnect parent session
(113039), the SSL/DTLS tunnels (7220xx), the address assignment (722051 / 751025 for IKEv2) and the
disconnect with duration and bytes (113019). We turn each into the ECS fields the VPN rules group on
(``user.name``, ``source.ip``, ``event.outcome``) and keep what ECS lacks under ``vpn.*``.

The function is pure (no I/O, no state) so it can be fuzzed and benchmarked; see connectors/vpn/contract.py.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timezone
from typing import Callable

from connectors.vpn.contract import Event, ParseContext, VpnParseError
from connectors.vpn.users import split_user
from engine.events import format_timestamp

VENDOR = "Cisco"
PRODUCT = "ASA"

#: ``%ASA-6-113039: text`` (FTD sends ``%FTD-``; old PIX/FWSM images their own prefix)
_HEAD = re.compile(r"%(ASA|FTD|FWSM|PIX)-(?:[a-z]+-)?([0-7])-(\d{6})\s*:?\s?(.*)\Z", re.S)
_PRODUCTS = {"ASA": "ASA", "FTD": "FTD", "FWSM": "FWSM", "PIX": "PIX"}
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
#: ``logging timestamp`` in the message itself (when a relay or ``logging device-id`` puts it there):
#: ``Nov 02 2026 08:01:12``, ``Nov  2 08:01:12`` or RFC 5424 style ``2026-11-02T08:01:12.123+01:00``
_LEAD_TIME = re.compile(
    r"\s*(?:(?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+(?:(?P<year>\d{4})\s+)?"
    r"(?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,6}))?"
    r"|(?P<iso>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})?))"
    r"(?:\s+(?P<host>[A-Za-z0-9][A-Za-z0-9._-]{0,253}))?\s*:?\s*(?=%)")
_LEVELS = ("emergency", "alert", "critical", "error", "warning", "notification", "informational", "debugging")

#: ``Group <VPN-Users> User <jdoe> IP <192.0.2.5> ...`` (7160xx, 7220xx, 113039)
_ANGLE = re.compile(r"Group <([^>]*)>\s+User <([^>]*)>\s+IP <([^>]*)>\s*")
#: ``Group = VPN-Users, Username = jdoe, IP = 192.0.2.5, ...`` (113019, IKEv1 messages)
_EQUALS = re.compile(r"(?:Tunnel)?Group = ([^,]*), (?:Username|User) = ([^,]*), IP = ([^,]*),\s*")
#: ``Local:192.0.2.1:4500 Remote:198.51.100.5:54817 Username:jdoe ...`` (7500xx / 7510xx IKEv2)
_IKEV2 = re.compile(r"Local:\s*(\S+):(\d{1,5})\s+Remote:\s*(\S+):(\d{1,5})\s+Username:\s*(\S*)\s*")
_KV = re.compile(r"(?:^|\s:\s)(reason|server|user|user IP)\s*=\s*(.*?)\s*(?=\s:\s|\Z)")
_DURATION = re.compile(r"(?:(\d+)d\s*)?(\d+)h:(\d+)m:(\d+)s")
_TUNNEL_TYPES = {"ssl": "ssl", "anyconnect": "ssl", "anyconnect-parent": "ssl", "webvpn": "ssl",
                 "clientless": "ssl", "svc": "ssl", "dtls": "ssl", "ikev2": "ikev2", "ipsec": "ipsec",
                 "ikev1": "ipsec", "l2tp": "ipsec", "ipsecoverudp": "ipsec", "ipsecovernatt": "ipsec"}
_NO_USER = ("unknown", "none", "(null)", "-", "*****", "")

Handler = Callable[[str, Event, ParseContext], None]


def _ip(text: str | None) -> str | None:
    """A valid address in compressed form, or None (a mangled address must not reach ``source.ip``)."""
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        return None


def _set_ip(out: Event, key: str, text: str | None) -> None:
    ip = _ip(text)
    if ip is not None:
        out[key] = ip


def _set_user(out: Event, raw: str | None, ctx: ParseContext) -> None:
    if raw is None or raw.strip().strip("'\"").lower() in _NO_USER:
        return
    out.update(split_user(raw.strip().strip("'"), ctx.options.get("default_domain")))


def _set_group(out: Event, group: str | None) -> None:
    if group and group.strip():
        out["vpn.group"] = group.strip()


def _set_reason(out: Event, reason: str | None) -> None:
    if reason:
        reason = reason.strip().rstrip(".").strip()
        if reason:
            out["vpn.reason"] = reason
            out["event.reason"] = reason


def _tunnel(text: str | None) -> str | None:
    if not text:
        return None
    return _TUNNEL_TYPES.get(text.strip().lower().replace(" ", ""))


def _kind(out: Event, action: str, category: list[str], types: list[str], outcome: str | None = None) -> None:
    out["event.action"] = action
    out["event.category"] = category
    out["event.type"] = types
    if outcome:
        out["event.outcome"] = outcome


def _kv(text: str) -> dict[str, str]:
    return {k: v for k, v in _KV.findall(text)}


# --- AAA (1130xx) ------------------------------------------------------------------------------------------

def _aaa_auth(text: str, out: Event, ctx: ParseContext) -> None:
    """113004/113005 (AAA server) and 113012/113015 (local database): one VPN login attempt each."""
    kv = _kv(text)
    ok = "Successful" in text or "successful" in text
    _kind(out, "vpn-login", ["authentication"], ["start"], "success" if ok else "failure")
    _set_user(out, kv.get("user"), ctx)
    _set_ip(out, "source.ip", kv.get("user IP"))
    if "server" in kv:
        _set_ip(out, "vpn.aaa.server", kv["server"])
    elif "local database" in text:
        out["vpn.aaa.server"] = "local"
    if not ok:
        _set_reason(out, kv.get("reason"))


def _aaa_transaction(text: str, out: Event, ctx: ParseContext) -> None:
    """113008 ACCEPT / 113021-style REJECT: the AAA transaction result after authentication."""
    kv = _kv(text)
    ok = "ACCEPT" in text
    _kind(out, "aaa-transaction", ["authentication"], ["info"], "success" if ok else "failure")
    _set_user(out, kv.get("user"), ctx)


_POLICY = re.compile(r"\(([^)]*)\) for user = (\S+)")
_POLICY_SET = re.compile(r"for user (\S+) is being set to (\S+)")


def _aaa_policy(text: str, out: Event, ctx: ParseContext) -> None:
    """113003/113009/113011: which group policy the user got (``user@group``)."""
    _kind(out, "aaa-group-policy", ["authentication"], ["info"])
    m = _POLICY.search(text)
    if m:
        _set_group(out, m.group(1))
        _set_user(out, m.group(2), ctx)
        return
    m = _POLICY_SET.search(text)
    if m:
        _set_user(out, m.group(1), ctx)
        _set_group(out, m.group(2).rstrip("."))


_QUOTED = re.compile(r"User '([^']*)'")
_ATTEMPTS = re.compile(r"exceeding '(\d+)'")


def _locked(text: str, out: Event, ctx: ParseContext) -> None:
    """113006 locked out after N failures / 113007 unlocked by an administrator."""
    m = _QUOTED.search(text)
    if m:
        _set_user(out, m.group(1), ctx)
    if "unlocked" in text:
        _kind(out, "user-unlocked", ["iam"], ["change", "user"], "success")
    else:
        _kind(out, "user-locked-out", ["authentication"], ["info"], "failure")
        a = _ATTEMPTS.search(text)
        if a:
            _set_reason(out, f"locked out after {a.group(1)} failed attempts")


_CHALLENGE = re.compile(r"for user (\S+) from server (\S+?)\.?\s*\Z")


def _aaa_challenge(text: str, out: Event, ctx: ParseContext) -> None:
    """113010: a challenge (OTP, RSA SecurID next code) from the AAA server."""
    _kind(out, "aaa-challenge", ["authentication"], ["info"])
    m = _CHALLENGE.search(text)
    if m:
        _set_user(out, m.group(1), ctx)
        _set_ip(out, "vpn.aaa.server", m.group(2))


def _aaa_error(text: str, out: Event, ctx: ParseContext) -> None:
    """113013 cannot complete / 113014 server not accessible: an authentication that failed on the back end."""
    kv = _kv(text)
    _kind(out, "aaa-server-error", ["authentication"], ["info"], "failure")
    _set_user(out, kv.get("user"), ctx)
    if "server" in kv:
        _set_ip(out, "vpn.aaa.server", kv["server"])
    _set_reason(out, kv.get("reason") or ("server not accessible" if "not accessible" in text else None))


_DISCONNECT = re.compile(
    r"Session Type:\s*([^,]*),\s*Duration:\s*([^,]*),\s*Bytes xmt:\s*(\d+),\s*Bytes rcv:\s*(\d+)"
    r"(?:,\s*Reason:\s*(.*))?")


def _disconnected(text: str, out: Event, ctx: ParseContext) -> None:
    """113019: the end of a remote-access session, with its type, duration, bytes and reason."""
    _kind(out, "vpn-session-end", ["session", "network"], ["end"])
    m = _DISCONNECT.search(text)
    if not m:
        return
    session_type, duration, xmt, rcv, reason = m.groups()
    out["vpn.session.type"] = session_type.strip()
    tunnel = _tunnel(session_type)
    if tunnel:
        out["vpn.tunnel.type"] = tunnel
    d = _DURATION.search(duration)
    if d:
        days, h, mi, s = (int(x) if x else 0 for x in d.groups())
        seconds = ((days * 24 + h) * 60 + mi) * 60 + s
        out["vpn.session.duration"] = seconds
        out["event.duration"] = seconds * 1_000_000_000
    # xmt: the ASA transmitted to the client; rcv: received from it
    out["vpn.bytes.sent"] = int(xmt)
    out["vpn.bytes.received"] = int(rcv)
    out["network.bytes"] = int(xmt) + int(rcv)
    _set_reason(out, reason)


def _parent_started(text: str, out: Event, ctx: ParseContext) -> None:
    """113039: AnyConnect parent session started (the session the tunnels hang off)."""
    _kind(out, "vpn-session-start", ["session", "network"], ["start"], "success")
    out["vpn.tunnel.type"] = "ssl" if "IKEv2" not in text else "ikev2"


# --- management logins (6111xx, 6050xx) --------------------------------------------------------------------

_MGMT = re.compile(r"IP(?: address)?\s*[:,]\s*([0-9A-Fa-f:.]+)\s*[,:]\s*Uname:\s*(\S+)")
_UNAME = re.compile(r"Uname:\s*(\S+)")


def _mgmt_auth(text: str, out: Event, ctx: ParseContext) -> None:
    """611101/611102: management (ASDM, SSH, telnet, console) authentication; 611103 logout."""
    if "logged out" in text:
        _kind(out, "admin-logout", ["authentication", "session"], ["end"], "success")
        m = _UNAME.search(text)
        if m:
            _set_user(out, m.group(1), ctx)
        return
    ok = "succeeded" in text
    _kind(out, "admin-login", ["authentication"], ["start"], "success" if ok else "failure")
    m = _MGMT.search(text)
    if m:
        _set_ip(out, "source.ip", m.group(1))
        _set_user(out, m.group(2), ctx)


_LOGIN = re.compile(r"Login (permitted|denied) from ([^/\s]+)/(\d+) to ([^:\s]+):([^/\s]+)/(\S+) for user \"([^\"]*)\"")


def _mgmt_login(text: str, out: Event, ctx: ParseContext) -> None:
    """605004 denied / 605005 permitted: management session login with the service (ssh, https, telnet)."""
    m = _LOGIN.search(text)
    ok = m is not None and m.group(1) == "permitted"
    _kind(out, "admin-login", ["authentication"], ["start"], "success" if ok else "failure")
    if m:
        _set_ip(out, "source.ip", m.group(2))
        out["source.port"] = int(m.group(3))
        out["observer.ingress.interface.name"] = m.group(4)
        _set_ip(out, "destination.ip", m.group(5))
        out["network.protocol"] = m.group(6).lower()
        _set_user(out, m.group(7), ctx)


# --- WebVPN / AnyConnect sessions (7160xx) -----------------------------------------------------------------

_TERMINATED = re.compile(r"terminated:?\s*(.*)")
_RESUMED_FROM = re.compile(r"from IP <([^>]*)>")


#: (phrase in the text, event.action, event.category, event.type, event.outcome): the first phrase found wins.
#: One table per message family, because the ASA's sentences for neighbouring ids differ in a phrase only.
Phrases = tuple[tuple[str, str, list[str], list[str], str | None], ...]

_WEBVPN_PHRASES: Phrases = (
    ("session started", "webvpn-session-start", ["session", "network"], ["start"], "success"),
    ("session terminated", "webvpn-session-end", ["session", "network"], ["end"], None),
    ("Authentication: successful", "webvpn-authentication", ["authentication"], ["info"], "success"),
    ("Authentication: rejected", "webvpn-authentication", ["authentication"], ["info"], "failure"),
    ("lost connection", "vpn-session-lost", ["session", "network"], ["info"], None),
    ("resumed connection", "vpn-session-resumed", ["session", "network"], ["info"], "success"),
)


def _by_phrase(text: str, out: Event, phrases: Phrases) -> str | None:
    """Set action/category/type/outcome from the first phrase of ``phrases`` in ``text``; the action set."""
    for phrase, action, category, types, outcome in phrases:
        if phrase in text:
            _kind(out, action, category, types, outcome)
            return action
    return None


def _webvpn(text: str, out: Event, ctx: ParseContext) -> None:
    """716001 started / 716002 terminated / 716038-39 auth / 716058-59 lost and resumed."""
    out["vpn.tunnel.type"] = "ssl"
    action = _by_phrase(text, out, _WEBVPN_PHRASES)
    if action == "webvpn-session-end":
        m = _TERMINATED.search(text)
        if m:
            _set_reason(out, m.group(1))
    elif action == "vpn-session-resumed":
        m = _RESUMED_FROM.search(text)
        if m:
            _set_ip(out, "vpn.resumed_from.ip", m.group(1))


# --- SVC (AnyConnect SSL/DTLS tunnels, 7220xx) -------------------------------------------------------------

_SVC = re.compile(r"\b(TCP|UDP) SVC connection (established|terminated)")
_CLOSING = re.compile(r"closing connection:?\s*(.*)")
_ASSIGNED = re.compile(r"IPv4 Address <([^>]*)>\s+IPv6 address <([^>]*)>\s+assigned")
_CLIENT_TYPE = re.compile(r"Client Type:\s*(.+?)\s*\Z")
_SVC_SESSION_END = re.compile(r"Conns:\s*(\d+)")


def _svc(text: str, out: Event, ctx: ParseContext) -> None:
    """722022/722023 tunnel up/down, 722028 stale close, 722037 closing, 722051 address, 722055 client."""
    out["vpn.tunnel.type"] = "ssl"
    m = _SVC.search(text)
    if m:
        out["network.transport"] = m.group(1).lower()
        if m.group(2) == "established":
            _kind(out, "svc-connection-start", ["network"], ["connection", "start"], "success")
        else:
            _kind(out, "svc-connection-end", ["network"], ["connection", "end"])
        return
    if "Stale SVC connection closed" in text:
        _kind(out, "svc-connection-stale-closed", ["network"], ["connection", "end"])
        return
    m = _ASSIGNED.search(text)
    if m:
        _kind(out, "vpn-address-assigned", ["network", "session"], ["info"], "success")
        _set_assigned(out, m.group(1), m.group(2))
        return
    m = _CLOSING.search(text)
    if "SVC closing connection" in text and m:
        _kind(out, "svc-connection-closing", ["network"], ["connection", "end"])
        _set_reason(out, m.group(1))
        return
    m = _CLIENT_TYPE.search(text)
    if m:
        _kind(out, "vpn-client-type", ["network", "session"], ["info"])
        out["user_agent.original"] = m.group(1).rstrip(".")
        return
    if "SVC Session Termination" in text:
        _kind(out, "svc-session-end", ["session", "network"], ["end"])
        return
    if "SVC connection" in text:
        _kind(out, "svc-connection", ["network"], ["connection"])


def _set_assigned(out: Event, v4: str | None, v6: str | None) -> None:
    """``vpn.assigned_ip`` (IPv4 first; ``::``/``0.0.0.0`` mean "none assigned") and ``vpn.assigned_ipv6``."""
    ip4, ip6 = _ip(v4), _ip(v6)
    if ip4 and ip4 != "0.0.0.0":
        out["vpn.assigned_ip"] = ip4
    if ip6 and ip6 != "::":
        out["vpn.assigned_ipv6"] = ip6
        out.setdefault("vpn.assigned_ip", ip6)


# --- IKEv2 remote access (7500xx / 7510xx) -----------------------------------------------------------------

_IKE_GROUP = re.compile(r"(?:IKEv2 )?Group:\s*(\S+)")
_IKE_ADDR = re.compile(r"IPv4 Address=(\S*)\s+IPv6 address=(\S*)\s+assigned")
_IKE_REASON = re.compile(r"(?:Reason|ERROR):\s*(.*)")
_IKE_CLIENT = re.compile(r"Client OS:\s*(.*?)\s+Client:\s*(.*?)\s*\Z")


_IKEV2_PHRASES: Phrases = (
    ("SA UP", "ikev2-sa-up", ["network", "session"], ["start"], "success"),
    ("SA DOWN", "ikev2-sa-down", ["network", "session"], ["end"], None),
    ("Negotiation aborted", "ikev2-negotiation-aborted", ["network"], ["connection"], "failure"),
    ("Client OS", "vpn-client-type", ["network", "session"], ["info"], None),
    ("IKE_INIT_SA request", "ikev2-sa-request", ["network"], ["connection", "start"], None),
    ("IKE_SA_INIT", "ikev2-sa-request", ["network"], ["connection", "start"], None),
)


def _ikev2(text: str, out: Event, ctx: ParseContext) -> None:
    """750002 SA request, 750003 negotiation aborted, 750006/750007 SA up/down, 751025 address, 751026 client."""
    out["vpn.tunnel.type"] = "ikev2"
    g = _IKE_GROUP.search(text)
    if g:
        _set_group(out, g.group(1))
    if out["event.code"] == "751025" or "assigned to session" in text:
        _kind(out, "vpn-address-assigned", ["network", "session"], ["info"], "success")
        m = _IKE_ADDR.search(text)
        if m:
            _set_assigned(out, m.group(1), m.group(2).rstrip("."))
        return
    action = _by_phrase(text, out, _IKEV2_PHRASES)
    if action in ("ikev2-sa-down", "ikev2-negotiation-aborted"):
        m = _IKE_REASON.search(text)
        if m:
            _set_reason(out, m.group(1))
    elif action == "vpn-client-type":
        m = _IKE_CLIENT.search(text)
        if m:
            out["host.os.name"] = m.group(1)
            out["user_agent.original"] = m.group(2).rstrip(".")


# --- threat detection (733100) and DAP (734001) ------------------------------------------------------------

_THREAT = re.compile(
    r"\[\s*([^\]]*?)\s*\]\s*drop (rate-\d+) exceeded\. Current burst rate is (\d+) per second, max configured "
    r"rate is (\d+); Current average rate is (\d+) per second, max configured rate is (\d+); Cumulative total "
    r"count is (\d+)")


def _threat(text: str, out: Event, ctx: ParseContext) -> None:
    """733100: basic threat detection rate exceeded (scanning, SYN attack, and on 9.20+ VPN auth failures)."""
    out["event.kind"] = "alert"
    _kind(out, "threat-rate-exceeded", ["intrusion_detection"], ["info"])
    m = _THREAT.search(text)
    if m:
        obj, rate, burst, burst_max, avg, avg_max, total = m.groups()
        out["vpn.threat.object"] = obj
        out["vpn.threat.rate_id"] = rate
        out["vpn.threat.burst_rate"] = int(burst)
        out["vpn.threat.average_rate"] = int(avg)
        out["vpn.threat.total"] = int(total)
        _set_ip(out, "source.ip", obj)


_DAP = re.compile(r"DAP: User ([^,]*), Addr ([^,]*), Connection ([^:]*):.*?selected for this connection:\s*(.*)")


def _dap(text: str, out: Event, ctx: ParseContext) -> None:
    """734001: Dynamic Access Policy records selected for a connection."""
    _kind(out, "dap-records-selected", ["session"], ["info"])
    m = _DAP.search(text)
    if m:
        _set_user(out, m.group(1), ctx)
        _set_ip(out, "source.ip", m.group(2))
        out["vpn.session.type"] = m.group(3).strip()
        out["vpn.dap.records"] = m.group(4).strip().rstrip(".")


_HANDLERS: dict[str, Handler] = {
    "113003": _aaa_policy, "113009": _aaa_policy, "113011": _aaa_policy,
    "113004": _aaa_auth, "113005": _aaa_auth, "113012": _aaa_auth, "113015": _aaa_auth,
    "113006": _locked, "113007": _locked,
    "113008": _aaa_transaction,
    "113010": _aaa_challenge,
    "113013": _aaa_error, "113014": _aaa_error,
    "113019": _disconnected,
    "113039": _parent_started,
    "605004": _mgmt_login, "605005": _mgmt_login,
    "611101": _mgmt_auth, "611102": _mgmt_auth, "611103": _mgmt_auth,
    "716001": _webvpn, "716002": _webvpn, "716038": _webvpn, "716039": _webvpn,
    "716058": _webvpn, "716059": _webvpn,
    "722022": _svc, "722023": _svc, "722028": _svc, "722029": _svc, "722032": _svc, "722033": _svc,
    "722034": _svc, "722037": _svc, "722051": _svc, "722055": _svc,
    "733100": _threat,
    "734001": _dap,
    "750002": _ikev2, "750003": _ikev2, "750006": _ikev2, "750007": _ikev2,
    "751025": _ikev2, "751026": _ikev2,
}


def _lead_time(m: re.Match[str], ctx: ParseContext) -> datetime | None:
    """The device's own stamp in the message; naive times are in the source's configured time zone."""
    try:
        if m.group("iso"):
            iso = m.group("iso").replace("Z", "+00:00")
            dt = datetime.fromisoformat(iso)
        else:
            year = int(m.group("year")) if m.group("year") else (
                ctx.year or (ctx.header_time.year if ctx.header_time else datetime.now(timezone.utc).year))
            frac = (m.group("frac") or "0").ljust(6, "0")
            dt = datetime(year, _MONTHS[m.group("mon")], int(m.group("day")), int(m.group("h")),
                          int(m.group("m")), int(m.group("s")), int(frac))
    except (KeyError, ValueError, OverflowError):
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ctx.timezone)
    return dt


def parse(message: str, context: ParseContext) -> Event:
    """One ASA/FTD syslog message (``%ASA-6-113039: ...``, optionally after the device's own timestamp and
    hostname) -> flat ECS event. Unknown message ids keep ``event.code`` and the generic prefix fields."""
    if not isinstance(message, str):
        raise VpnParseError("message is not text")
    text = message.strip()
    out: Event = {}
    host: str | None = None
    head = _HEAD.match(text)
    if head is None and "%" in text[:80]:
        lead = _LEAD_TIME.match(text)
        if lead:
            head = _HEAD.match(text, lead.end())
            if head:
                dt = _lead_time(lead, context)
                if dt is None:
                    raise VpnParseError("device timestamp out of range")
                try:
                    out["@timestamp"] = format_timestamp(dt)
                except (ValueError, OverflowError):
                    raise VpnParseError("device timestamp out of range") from None
                host = lead.group("host")
    if head is None and context.appname:
        # some relays split ``%ASA-6-113039`` off as the syslog TAG: the message is only the text
        tag = _HEAD.match(context.appname.strip().rstrip(":") + ": " + text)
        if tag:
            head = tag
    if head is None:
        raise VpnParseError("no %ASA-/%FTD- message id")
    family, level, code, body = head.groups()
    body = body.strip()
    out["event.kind"] = "event"
    out["event.code"] = code
    out["event.severity"] = int(level)
    out["log.level"] = _LEVELS[int(level)]
    out["observer.vendor"] = VENDOR
    out["observer.product"] = _PRODUCTS[family]
    out["observer.type"] = "firewall"
    host = host or context.hostname
    if host:
        out["observer.hostname"] = host

    # the generic "who" prefixes, present on many ids (also the unknown ones)
    m = _ANGLE.match(body) or _ANGLE.search(body)
    if m:
        _set_group(out, m.group(1))
        _set_user(out, m.group(2), context)
        _set_ip(out, "source.ip", m.group(3))
        rest = body[m.end():]
    else:
        m = _EQUALS.match(body)
        if m:
            _set_group(out, m.group(1))
            _set_user(out, m.group(2), context)
            _set_ip(out, "source.ip", m.group(3))
            rest = body[m.end():]
        else:
            m = _IKEV2.match(body)
            if m:
                _set_ip(out, "destination.ip", m.group(1))
                out["destination.port"] = int(m.group(2))
                _set_ip(out, "source.ip", m.group(3))
                out["source.port"] = int(m.group(4))
                _set_user(out, m.group(5), context)
                rest = body[m.end():]
            else:
                rest = body
    handler = _HANDLERS.get(code)
    if handler is not None:
        handler(rest, out, context)
    for key in ("source.port", "destination.port"):  # "99999" matches \d{1,5} but is no port
        if key in out and not 0 <= out[key] <= 65535:
            del out[key]
    return out
