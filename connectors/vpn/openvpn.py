"""OpenVPN community server log lines -> ECS fields (see docs/connectors/openvpn.md).

Why a parser of our own: OpenVPN has no message ids, no key=value format and no Elastic integration; its
server log is free text with a per-client prefix (``203.0.113.5:51234`` before authentication,
``jdoe/203.0.113.5:51234`` after). We recognise the documented lines that matter for access monitoring
(peer connection, TLS and certificate failures, username/password failures, ``AUTH_FAILED``, the virtual
address, disconnects) and give each a stable ``event.code`` of our own. Bytes and duration are only in the
``client-disconnect`` script environment and the status file, so we read the one-line forms documented in
docs/connectors/openvpn.md.

The same parser reads syslog messages (``openvpn[pid]:`` tag already split off) and lines of OpenVPN's own
``--log`` file, which start with ``2026-11-02 08:01:12`` or the ctime stamp ``Mon Nov  2 08:01:12 2026``.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Any

from connectors.vpn.contract import Event, ParseContext, VpnParseError
from connectors.vpn.users import split_user
from engine.events import format_timestamp

VENDOR = "OpenVPN"
PRODUCT = "OpenVPN"

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}

# OpenVPN's own stamps: ISO-like (2.5+ default) and ctime (2.4 and older, --log without --machine-readable)
_ISO_STAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))? ", re.ASCII)
_CTIME_STAMP = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d{1,2}) "
    r"(\d{2}):(\d{2}):(\d{2}) (\d{4}) ", re.ASCII)
# the multi-client prefix: [common-name/]address:port (IPv6 addresses have colons: the port is the last part)
_PREFIX = re.compile(r"(?:(?P<cn>[^\s/\[\]]{1,256})/)?(?P<addr>(?:\[AF_INET6?\])?[0-9A-Fa-f.:]+):(?P<port>\d{1,5}) ")
_ADDR = r"(?:\[AF_INET6?\])?(?P<ip>[0-9A-Fa-f.:]+):(?P<rport>\d{1,5})"
_KV = re.compile(r"([a-z_][a-z0-9_]*)=(\"[^\"]*\"|\S*)")


def _line(code: str, action: str, category: list[str], type_: list[str], outcome: str) -> dict[str, Any]:
    return {"event.code": code, "event.action": action, "event.category": category,
            "event.type": type_, "event.outcome": outcome}


# (compiled pattern, static fields). Order matters only where one text is a prefix of another.
_RULES: list[tuple[re.Pattern[str], dict[str, Any]]] = [
    (re.compile(r"TCP connection established with " + _ADDR),
     _line("tcp-connected", "connection-established", ["network"], ["connection", "start"], "success")),
    (re.compile(r"TLS: Initial packet from " + _ADDR + r"(?:, sid=(?P<sid>[0-9a-f]+ [0-9a-f]+))?"),
     _line("tls-initial-packet", "tls-initial-packet", ["network"], ["connection", "start"], "unknown")),
    (re.compile(r"VERIFY OK: depth=(?P<depth>\d+), (?P<subject>.*)"),
     _line("verify-ok", "certificate-verified", ["authentication"], ["info"], "success")),
    (re.compile(r"VERIFY (?:ERROR|X509NAME ERROR|KU ERROR|EKU ERROR|SCRIPT ERROR|PLUGIN ERROR|CRL CHECK FAILED)"
                r":? ?(?P<reason>.*)"),
     _line("verify-error", "certificate-verify-failed", ["authentication"], ["start"], "failure")),
    (re.compile(r"TLS Error: TLS handshake failed"),
     _line("tls-handshake-failed", "tls-handshake-failed", ["network"], ["connection"], "failure")),
    (re.compile(r"TLS Error: (?P<reason>.*)"),
     _line("tls-error", "tls-error", ["network"], ["connection"], "failure")),
    (re.compile(r"Authenticate/Decrypt packet error: (?P<reason>.*)"),
     _line("packet-auth-error", "packet-authentication-failed", ["network"], ["connection", "denied"],
           "failure")),
    (re.compile(r"TLS: Username/Password authentication succeeded for username '(?P<user>[^']*)'"),
     _line("auth-succeeded", "vpn-login", ["authentication"], ["start"], "success")),
    (re.compile(r"TLS: Username/Password authentication deferred for username '(?P<user>[^']*)'"),
     _line("auth-deferred", "user-pass-deferred", ["authentication"], ["info"], "unknown")),
    (re.compile(r"TLS Auth Error: Auth Username/Password verification failed for peer"),
     _line("auth-failed", "user-pass-verify-failed", ["authentication"], ["info"], "failure")),
    (re.compile(r"TLS Auth Error: (?P<reason>.*)"),
     _line("auth-error", "auth-error", ["authentication"], ["info"], "failure")),
    (re.compile(r"(?:PLUGIN_CALL: plugin function PLUGIN_AUTH_USER_PASS_VERIFY failed|"
                r"WARNING: Failed running command \(--auth-user-pass-verify\))(?P<reason>.*)"),
     _line("auth-backend-failed", "auth-backend-failed", ["authentication"], ["info"], "failure")),
    (re.compile(r"SENT CONTROL \[(?P<user>[^\]]*)\]: 'AUTH_FAILED(?:,(?P<reason>[^']*))?'"),
     _line("auth-failed-sent", "vpn-login", ["authentication"], ["start"], "failure")),
    (re.compile(r"\[(?P<user>[^\]]*)\] Peer Connection Initiated with " + _ADDR),
     _line("peer-connected", "peer-connection-initiated", ["network"], ["connection", "start"], "unknown")),
    (re.compile(r"MULTI_sva: pool returned IPv4=(?P<assigned>[0-9.]+|\(Not enabled\))"
                r"(?:, IPv6=(?P<assigned6>\S+))?"),
     _line("address-assigned", "address-assigned", ["network", "session"], ["info"], "success")),
    (re.compile(r"MULTI: Learn: (?P<assigned>[0-9A-Fa-f.:]+(?:/\d+)?) -> (?:(?P<user>[^\s/]+)/)?" + _ADDR),
     _line("route-learned", "route-learned", ["network", "session"], ["info"], "success")),
    (re.compile(r"MULTI: primary virtual IP for (?:(?P<user>[^\s/]+)/)?" + _ADDR + r": (?P<assigned>\S+)"),
     _line("session-started", "vpn-session-start", ["session"], ["start"], "success")),
    (re.compile(r"MULTI: new connection by client '(?P<user>[^']*)' will cause previous active sessions"),
     _line("duplicate-session", "previous-session-dropped", ["session"], ["info"], "unknown")),
    (re.compile(r"(?:\[(?P<user>[^\]]*)\] )?Inactivity timeout \((?P<reason>[^)]*)\)"),
     _line("inactivity-timeout", "inactivity-timeout", ["session"], ["end"], "unknown")),
    (re.compile(r"(?P<sig>SIGTERM|SIGUSR1|SIGHUP|SIGINT)\[(?P<mode>soft|hard),(?P<reason>[^\]]*)\] received, "
                r"client-instance (?P<how>exiting|restarting)"),
     _line("client-exiting", "client-instance-exiting", ["session"], ["end"], "unknown")),
    (re.compile(r"tls-crypt unwrap error: (?P<reason>.*)"),
     _line("tls-crypt-error", "tls-crypt-unwrap-failed", ["network"], ["connection", "denied"], "failure")),
    (re.compile(r"(?:OpenSSL: |TLS_ERROR: )(?P<reason>.*)"),
     _line("openssl-error", "tls-library-error", ["network"], ["connection"], "failure")),
    (re.compile(r"Connection reset, restarting"),
     _line("connection-reset", "connection-reset", ["network"], ["connection", "end"], "unknown")),
    (re.compile(r"client-disconnect: (?P<kv>.*)"),
     _line("client-disconnect", "vpn-logout", ["session"], ["end"], "success")),
    (re.compile(r"client-connect: (?P<kv>.*)"),
     _line("client-connect", "vpn-session-start", ["session"], ["start"], "success")),
    (re.compile(r"CLIENT_LIST,(?P<csv>.*)"),
     _line("status-client", "session-status", ["session"], ["info"], "unknown")),
    (re.compile(r"Control Channel: (?P<detail>.*)"),
     _line("control-channel", "tls-established", ["network"], ["connection", "protocol"], "success")),
    (re.compile(r"Data Channel: (?P<detail>.*)"),
     _line("data-channel", "data-channel-negotiated", ["network"], ["protocol"], "success")),
    (re.compile(r"peer info: (?P<detail>.*)"),
     _line("peer-info", "peer-info", ["network"], ["info"], "unknown")),
    (re.compile(r"MULTI: multi_create_instance called"),
     _line("instance-created", "instance-created", ["network"], ["connection"], "unknown")),
    (re.compile(r"PUSH: Received control message: '(?P<detail>[^']*)'"),
     _line("push-request", "push-request", ["network"], ["protocol"], "unknown")),
    (re.compile(r"SENT CONTROL \[(?P<user>[^\]]*)\]: '(?P<detail>[A-Z_]+)"),
     _line("control-sent", "control-sent", ["network"], ["protocol"], "unknown")),
]

# messages an OpenVPN server writes without a client prefix, so a bare line can still be recognised
_KNOWN_HEADS = ("TLS", "VERIFY", "MULTI", "SENT CONTROL", "PUSH", "SIG", "client-", "CLIENT_LIST", "Control Channel",
                "Data Channel", "peer info", "Authenticate/Decrypt", "Connection reset", "Inactivity", "PLUGIN",
                "WARNING", "OpenVPN ", "Initialization Sequence", "UDPv4", "UDPv6", "TCPv4", "TCPv6",
                "Listening", "[", "Outgoing", "Incoming", "ERROR", "Options error", "event_wait", "GDG",
                "IFCONFIG", "net_", "Socket", "NOTE", "DEPRECATED", "Diffie", "library versions",
                "ROUTE", "TUN/TAP", "Exiting", "Closing", "TCP", "Re-using", "Fatal")


def _ip(text: str) -> str | None:
    """The canonical text of an address as OpenVPN prints it (``[AF_INET]`` prefix dropped), or None."""
    if text.startswith("[AF_INET"):
        text = text.split("]", 1)[1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _port(text: str | None) -> int | None:
    if text is None or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if 0 < value < 65536 else None


def _to_int(text: str | None) -> int | None:
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > 19:
        return None
    return int(text)


def _stamp(message: str, context: ParseContext) -> tuple[str | None, str]:
    """OpenVPN's own time at the start of the line, as canonical UTC text, and the rest of the line."""
    m = _ISO_STAMP.match(message)
    if m is not None:
        y, mo, d, h, mi, s, frac = m.groups()
        micro = int((frac or "0").ljust(6, "0"))
        parts = (int(y), int(mo), int(d), int(h), int(mi), int(s), micro)
    else:
        m = _CTIME_STAMP.match(message)
        if m is None:
            return None, message
        mon, d, h, mi, s, y = m.groups()
        parts = (int(y), _MONTHS[mon], int(d), int(h), int(mi), int(s), 0)
    try:
        naive = datetime(*parts)
        when = naive.replace(tzinfo=context.timezone)
        return format_timestamp(when), message[m.end():]
    except (ValueError, OverflowError) as exc:
        raise VpnParseError(f"OpenVPN timestamp out of range: {type(exc).__name__}") from None


def _user(raw: str | None, context: ParseContext) -> dict[str, Any]:
    """User fields from a common name / user name; OpenVPN writes ``UNDEF`` when none is known yet."""
    if raw is None or raw in ("UNDEF", "[UNDEF]"):
        return {}
    return split_user(raw, context.options.get("default_domain"))


def _kv_fields(kv: str, event: Event, context: ParseContext) -> None:
    """The ``client-connect`` / ``client-disconnect`` script line: OpenVPN's script environment names."""
    env = {k: v.strip('"') for k, v in _KV.findall(kv)}
    user = env.get("username") or env.get("common_name")
    event.update(_user(user, context))
    if env.get("common_name"):
        event["vpn.common_name"] = env["common_name"]
    ip = _ip(env.get("trusted_ip") or env.get("trusted_ip6") or env.get("untrusted_ip") or "")
    port = _port(env.get("trusted_port") or env.get("untrusted_port"))
    if ip:
        event["source.ip"] = ip
    if port:
        event["source.port"] = port
    if ip and port:
        event["vpn.session.id"] = f"{ip}:{port}"
    assigned = _ip(env.get("ifconfig_pool_remote_ip") or "")
    if assigned:
        event["vpn.assigned_ip"] = assigned
    for env_name, field_name in (("time_duration", "vpn.session.duration"), ("bytes_sent", "vpn.bytes.sent"),
                                 ("bytes_received", "vpn.bytes.received")):
        value = _to_int(env.get(env_name))
        if value is not None:
            event[field_name] = value
    if env.get("config"):
        event["vpn.group"] = env["config"]
    if env.get("reason"):
        event["vpn.reason"] = env["reason"]


def _status_fields(csv: str, event: Event, context: ParseContext) -> None:
    """A status-file ``CLIENT_LIST`` row (``--status-version 2/3``): CN, real address, virtual address,
    virtual IPv6, bytes received, bytes sent, connected since, connected since (time_t), username, ..."""
    cols = csv.split("\t") if "\t" in csv else csv.split(",")
    get = (lambda i: cols[i] if len(cols) > i else None)
    user = get(8) if get(8) not in (None, "", "UNDEF") else get(0)
    event.update(_user(user, context))
    real = get(1) or ""
    addr, _, port = real.rpartition(":")
    ip, p = _ip(addr), _port(port)
    if ip:
        event["source.ip"] = ip
    if p:
        event["source.port"] = p
    if ip and p:
        event["vpn.session.id"] = f"{ip}:{p}"
    assigned = _ip(get(2) or "")
    if assigned:
        event["vpn.assigned_ip"] = assigned
    for i, field_name in ((4, "vpn.bytes.received"), (5, "vpn.bytes.sent")):
        value = _to_int(get(i))
        if value is not None:
            event[field_name] = value
    event["event.kind"] = "state"


def parse(message: str, context: ParseContext) -> Event:
    """One OpenVPN server log message -> flat ECS fields.

    Raises VpnParseError only for text that cannot be an OpenVPN line: empty, with control characters, or
    with neither OpenVPN's own stamp, nor the ``openvpn`` syslog tag, nor a client prefix or a known message.
    """
    if not isinstance(message, str):
        raise VpnParseError(f"expected text, got {type(message).__name__}")
    text = message.rstrip("\r\n")
    if not text.strip():
        raise VpnParseError("empty OpenVPN message")
    if any(ord(c) < 32 and c != "\t" for c in text):
        raise VpnParseError("control characters in OpenVPN message")
    timestamp, body = _stamp(text, context)
    event: Event = {"event.kind": "event", "observer.vendor": VENDOR, "observer.product": PRODUCT}
    if timestamp is not None:
        event["@timestamp"] = timestamp
    if context.hostname:
        event["observer.hostname"] = context.hostname

    prefix = _PREFIX.match(body)
    prefix_ip = None
    if prefix is not None:
        prefix_ip = _ip(prefix["addr"])
        prefix_port = _port(prefix["port"])
        if prefix_ip is None or prefix_port is None:
            prefix = None
        else:
            event["source.ip"] = prefix_ip
            event["source.port"] = prefix_port
            event["vpn.session.id"] = f"{prefix_ip}:{prefix_port}"
            if prefix["cn"]:
                event.update(_user(prefix["cn"], context))
            body = body[prefix.end():]

    for pattern, static in _RULES:
        m = pattern.match(body)
        if m is None:
            continue
        event.update(static)
        event["event.category"] = list(static["event.category"])
        event["event.type"] = list(static["event.type"])
        groups = m.groupdict()
        if groups.get("ip") and "source.ip" not in event:
            ip, port = _ip(groups["ip"]), _port(groups.get("rport"))
            if ip:
                event["source.ip"] = ip
                if port:
                    event["source.port"] = port
                    event["vpn.session.id"] = f"{ip}:{port}"
        if groups.get("user") is not None:
            event.update(_user(groups["user"], context))
        if groups.get("reason"):
            event["vpn.reason"] = groups["reason"].strip()[:1024]
        if groups.get("subject"):
            # depth 0 is the client's own certificate, depth 1 the CA that issued it (ECS tls.client.*)
            depth = groups.get("depth")
            if depth == "0":
                event["tls.client.subject"] = groups["subject"][:1024]
            elif depth == "1":
                event["tls.client.issuer"] = groups["subject"][:1024]
        assigned = groups.get("assigned")
        if assigned:
            ip = _ip(assigned.split("/", 1)[0])
            if ip:
                event["vpn.assigned_ip"] = ip
        if groups.get("sid"):
            event["vpn.tls.session_id"] = groups["sid"].replace(" ", "")
        if groups.get("kv") is not None:
            _kv_fields(groups["kv"], event, context)
        if groups.get("csv") is not None:
            _status_fields(groups["csv"], event, context)
        if event["event.code"] == "client-exiting" and groups.get("how") == "restarting":
            event["event.action"] = "client-restarting"
        if event["event.code"] in ("auth-failed-sent", "peer-connected", "auth-succeeded", "auth-failed",
                                   "client-disconnect", "client-exiting", "verify-error", "session-started"):
            event["vpn.tunnel.type"] = "ssl"
        return event

    if timestamp is None and prefix is None and not _known_openvpn(body, context):
        raise VpnParseError("not an OpenVPN message: no stamp, no openvpn tag, no client prefix")
    event["event.code"] = "other"
    return event


def _known_openvpn(body: str, context: ParseContext) -> bool:
    """Whether a line without stamp or client prefix still says it is OpenVPN's (its tag or a known head)."""
    app = (context.appname or "").lower()
    return app.startswith("openvpn") or body.startswith(_KNOWN_HEADS)
