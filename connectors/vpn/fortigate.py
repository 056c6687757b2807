"""FortiGate (FortiOS) key=value event logs -> ECS: SSL-VPN, IPsec/XAUTH, user authentication, admin login.

Why a parser of its own: FortiOS does not write sentences like Cisco does but ``key=value`` pairs
(``logid="0101039424" type="event" subtype="vpn" action="tunnel-up" remip=192.0.2.7 user="jdoe"``). The
meaning of an event lies in ``subtype`` + ``action`` + ``status``, not in the message id alone: one logid
(``0101037127``, "Progress IPsec phase 1") is a success or a failure by its ``status``. So this module
classifies on those fields and keeps ``logid`` as ``event.code``; a logid we have never seen still gets a
sensible event from its action. The field choices follow Elastic's ``fortinet_fortigate`` integration
(``remip``->``source.ip``, ``devname``->``observer.name``, ``devid``->``observer.serial_number``), except
where ``docs/connectors/fortigate.md`` says why not (mainly: ``event.action`` is the project's cross-vendor
vocabulary, ``vpn-login``/``vpn-logout``..., so one Sigma rule covers every VPN vendor).

Time: FortiOS writes ``date=``/``time=`` in the device's local time, ``tz="+0100"`` (FortiOS >= 6.2) and
``eventtime=`` (epoch, s/ms/us/ns by firmware). ``eventtime`` is absolute and the most precise, so it wins;
then ``date``+``time``+``tz``; then ``date``+``time`` in the source's configured ``timezone``.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from connectors.vpn.contract import Event, ParseContext, VpnParseError
from connectors.vpn.users import split_user
from engine.events import format_timestamp

VENDOR = "Fortinet"
PRODUCT = "FortiGate"

# key=value or key="value with \"escapes\"". Keys are FortiOS field names: letters, digits, _ and -.
_PAIR = re.compile(r'([A-Za-z_][\w-]*)=(?:"((?:[^"\\]|\\.)*)"|(\S*))')
_PRI = re.compile(r"^\s*<\d{1,3}>")
_TZ = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{2}):?(\d{2})$", re.ASCII)
_UI_ADDR = re.compile(r"\(([0-9A-Fa-f:.]+)\)")
#: what FortiOS writes for "no value"
_EMPTY = {"", "N/A", "n/a", "none", "(null)", "-"}
_OK = {"success", "succeeded", "ok", "up", "pass"}
_FAIL = {"failure", "failed", "fail", "negotiate_error", "error", "timeout", "down", "deny", "denied"}


def parse_pairs(message: str) -> dict[str, str]:
    """The message's key=value pairs (first occurrence of a key wins; quotes and ``\\"`` escapes removed)."""
    fields: dict[str, str] = {}
    for match in _PAIR.finditer(message):
        key = match.group(1)
        if key in fields:
            continue
        quoted = match.group(2)
        fields[key] = quoted.replace('\\"', '"').replace("\\\\", "\\") if quoted is not None else match.group(3)
    return fields


def _value(fields: dict[str, str], *keys: str) -> str | None:
    """The first of ``keys`` with a real value (FortiOS's ``N/A`` placeholders count as none)."""
    for key in keys:
        value = fields.get(key)
        if value is not None and value.strip() not in _EMPTY:
            return value.strip()
    return None


def _ip(value: str | None) -> str | None:
    """Canonical IP text, or None: a host name or garbage never lands in an ``ip`` field."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip().strip("[]")))
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    """A non-negative count or port as int; anything else is dropped, not guessed."""
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 19:
        return None
    return int(value)


def _port(value: str | None) -> int | None:
    number = _int(value)
    return number if number is not None and number <= 65535 else None


def _offset(text: str | None) -> tzinfo | None:
    """``tz="+0100"`` / ``"-05:00"`` / ``"UTC"`` / an IANA name; None when it says nothing usable."""
    if not text:
        return None
    text = text.strip()
    if text.upper() in ("UTC", "GMT", "Z"):
        return timezone.utc
    match = _TZ.match(text)
    if match:
        hours, minutes = int(match.group(2)), int(match.group(3))
        if hours > 23 or minutes > 59:
            return None
        delta = timedelta(hours=hours, minutes=minutes)
        return timezone(-delta if match.group(1) == "-" else delta)
    if "/" in text and len(text) < 64:
        try:
            return ZoneInfo(text)
        except (ValueError, OSError, KeyError, TypeError):  # ZoneInfoNotFoundError is a KeyError
            return None
    return None


def _from_epoch(text: str | None) -> datetime | None:
    """``eventtime``: seconds, ms, us or ns since the epoch, told apart by the number of digits."""
    number = _int(text)
    if number is None or number == 0:
        return None
    digits = len(str(number))
    divisor = 10**9 if digits >= 18 else 10**6 if digits >= 15 else 10**3 if digits >= 12 else 1
    try:
        seconds, rest = divmod(number, divisor)
        return datetime.fromtimestamp(seconds, timezone.utc) + timedelta(microseconds=rest * 10**6 // divisor)
    except (OverflowError, ValueError, OSError):
        return None


def event_time(fields: dict[str, str], context: ParseContext) -> datetime | None:
    """When it happened, in UTC: ``eventtime``, else ``date``/``time`` with ``tz``, else with the source zone."""
    when = _from_epoch(fields.get("eventtime"))
    if when is not None and 2000 <= when.year <= 2100:
        return when
    date, clock = fields.get("date"), fields.get("time")
    if not date or not clock:
        return None
    try:
        naive = datetime.strptime(f"{date.strip()} {clock.strip()}", "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    zone = _offset(fields.get("tz")) or context.timezone
    try:
        return naive.replace(tzinfo=zone).astimezone(timezone.utc)
    except (OverflowError, ValueError):
        return None


def _outcome(status: str | None, default: str = "unknown") -> str:
    if status is None:
        return default
    lowered = status.lower()
    if lowered in _OK:
        return "success"
    if lowered in _FAIL or "fail" in lowered or "error" in lowered:
        return "failure"
    return default


def _tunnel_type(fields: dict[str, str]) -> str | None:
    """``ssl`` / ``ipsec`` / ``ikev2`` from ``tunneltype`` (``ssl-web``, ``ssl-tunnel``, ``ipsec``) and IKE version."""
    raw = (fields.get("tunneltype") or "").lower()
    version = (fields.get("version") or fields.get("ike_version") or "").lower().replace("-", "")
    if raw.startswith("ssl"):
        return "ssl"
    if "ikev2" in version or raw == "ikev2":
        return "ikev2"
    if raw.startswith("ipsec") or fields.get("vpntunnel") or fields.get("cookies") or "ike" in version:
        return "ipsec"
    return None


def _classify(fields: dict[str, str], tunnel: str | None) -> dict[str, Any]:
    """``event.action``/``category``/``type``/``outcome`` from subtype, action, status and logdesc."""
    subtype = (fields.get("subtype") or "").lower()
    action = (fields.get("action") or "").lower()
    status = _value(fields, "status", "result")
    desc = (fields.get("logdesc") or "").lower()
    msg = (fields.get("msg") or "").lower()
    if subtype == "vpn":
        if action == "ssl-login-fail":
            return {"event.action": "vpn-login", "event.category": ["authentication"], "event.type": ["start"],
                    "event.outcome": "failure"}
        if "xauth" in action or "xauth" in desc or ("xauth" in msg and fields.get("xauthuser")):
            outcome = _outcome(status, "failure" if "fail" in desc + msg else "success")
            return {"event.action": "vpn-login", "event.category": ["authentication"], "event.type": ["start"],
                    "event.outcome": outcome}
        if action == "tunnel-up":
            if tunnel == "ssl":
                return {"event.action": "vpn-login", "event.category": ["authentication", "session"],
                        "event.type": ["start"], "event.outcome": "success"}
            return {"event.action": "vpn-tunnel-up", "event.category": ["network", "session"],
                    "event.type": ["start", "connection"], "event.outcome": "success"}
        if action == "tunnel-down":
            name = "vpn-logout" if tunnel == "ssl" else "vpn-tunnel-down"
            return {"event.action": name, "event.category": ["session", "network"], "event.type": ["end"],
                    "event.outcome": "success"}
        if action == "tunnel-stats":
            return {"event.action": "vpn-session-stats", "event.category": ["session", "network"],
                    "event.type": ["info"], "event.outcome": "success"}
        if action in ("negotiate", "install_sa", "delete_ipsec_sa", "phase2-up", "phase2-down") or "phase" in desc:
            return {"event.action": "vpn-negotiate", "event.category": ["network"],
                    "event.type": ["connection", "error" if _outcome(status) == "failure" else "info"],
                    "event.outcome": _outcome(status, "success" if "error" not in desc else "failure")}
        if action in ("ssl-new-con", "ssl-alert", "ssl-exit"):
            return {"event.action": f"vpn-{action[4:]}" if action != "ssl-new-con" else "vpn-connection",
                    "event.category": ["network"], "event.type": ["connection"],
                    "event.outcome": "failure" if action == "ssl-alert" else "unknown"}
    if subtype == "system" and action in ("login", "logout"):
        outcome = _outcome(status, "failure" if "fail" in desc else "success")
        # a login to the firewall's own management interface (GUI/SSH/console) authenticates an administrator;
        # it is not a VPN session (as cisco_asa maps 605004/5 and 611101/2), so session-based VPN rules skip it
        return {"event.action": f"admin-{action}", "event.category": ["authentication"],
                "event.type": ["start" if action == "login" else "end"], "event.outcome": outcome}
    if subtype == "user":
        if action in ("authentication", "auth"):
            return {"event.action": "user-authentication", "event.category": ["authentication"],
                    "event.type": ["start"], "event.outcome": _outcome(status, "success")}
        if action in ("auth-logon", "auth-logout"):
            name = "user-logon" if action == "auth-logon" else "user-logout"
            return {"event.action": name, "event.category": ["authentication", "session"],
                    "event.type": ["start" if action == "auth-logon" else "end"], "event.outcome": "success"}
    # unknown: keep what is generic; the vendor's action word is still worth searching for
    result: dict[str, Any] = {}
    if action and action not in _EMPTY:
        result["event.action"] = action
    outcome = _outcome(status)
    if outcome != "unknown":
        result["event.outcome"] = outcome
    return result


def parse(message: str, context: ParseContext) -> Event:
    """One FortiGate log message (the syslog MSG, ``date=... logid=...``) -> flat ECS fields.

    Raises VpnParseError only when the text has no ``logid`` and ``type``: without those it is not a
    FortiOS log at all. Everything else, including unknown logids, gives an event.
    """
    text = _PRI.sub("", message, count=1) if message.startswith(("<", " ")) else message
    fields = parse_pairs(text)
    logid = _value(fields, "logid")
    if logid is None or not fields.get("type"):
        raise VpnParseError("not a FortiGate key=value log: no logid= and type= fields")
    tunnel = _tunnel_type(fields)
    event: Event = {"event.kind": "event", "event.code": logid, "event.module": "fortigate",
                    "observer.vendor": VENDOR, "observer.product": PRODUCT, "observer.type": "firewall"}
    event.update(_classify(fields, tunnel))
    when = event_time(fields, context)
    if when is not None:
        event["@timestamp"] = format_timestamp(when)
    hostname = _value(fields, "devname") or context.hostname
    if hostname:
        event["observer.hostname"] = hostname
        event["observer.name"] = hostname
    if (serial := _value(fields, "devid")) is not None:
        event["observer.serial_number"] = serial
    if (level := _value(fields, "level")) is not None:
        event["log.level"] = level.lower()
    if (desc := _value(fields, "logdesc")) is not None:
        event["message"] = desc
    ui = fields.get("ui") or ""
    ui_match = _UI_ADDR.search(ui)
    src = _ip(_value(fields, "remip", "srcip")) or _ip(ui_match.group(1) if ui_match else None)
    if src:
        event["source.ip"] = src
    if (port := _port(_value(fields, "remport", "srcport"))) is not None:
        event["source.port"] = port
    if (dst := _ip(_value(fields, "locip", "dstip"))) is not None:
        event["destination.ip"] = dst
    if (port := _port(_value(fields, "locport", "dstport"))) is not None:
        event["destination.port"] = port
    default_domain = context.options.get("default_domain")
    user = _value(fields, "xauthuser", "user")  # IPsec dial-up: the XAUTH name is the person
    event.update(split_user(user, default_domain if isinstance(default_domain, str) else None))
    if tunnel:
        event["vpn.tunnel.type"] = tunnel
    if (assigned := _ip(_value(fields, "tunnelip", "assignip"))) is not None:
        event["vpn.assigned_ip"] = assigned
    if (session := _value(fields, "tunnelid", "sessionid")) is not None:
        event["vpn.session.id"] = session
    if (duration := _int(_value(fields, "duration"))) is not None:
        event["vpn.session.duration"] = duration
    if (sent := _int(_value(fields, "sentbyte"))) is not None:
        event["vpn.bytes.sent"] = sent
    if (received := _int(_value(fields, "rcvdbyte"))) is not None:
        event["vpn.bytes.received"] = received
    if (group := _value(fields, "group", "xauthgroup", "vpntunnel")) is not None:
        event["vpn.group"] = group
    if (stage := _int(_value(fields, "stage"))) is not None and stage in (1, 2):
        event["vpn.ipsec.phase"] = stage
    reason = _value(fields, "reason")
    if reason is None and event.get("event.outcome") == "failure":
        reason = _value(fields, "error_reason", "msg")
    if reason is not None:
        event["vpn.reason"] = reason
    return event
