"""Palo Alto Networks PAN-OS GlobalProtect: the CSV ``GLOBALPROTECT`` log and the older SYSTEM-log events.

Why two formats: PAN-OS >= 9.1 writes a dedicated ``GLOBALPROTECT`` log (one CSV record per connection
stage: ``portal-auth``, ``gateway-auth``, ``gateway-register``, ``gateway-logout``...), while older firewalls,
and many sites that never changed their syslog profile, still only forward SYSTEM logs of subtype
``globalprotect`` (``globalprotectgateway-auth-fail`` ...) whose details are prose in the description.
Hospitals run both, so one parser reads both and maps them to the same ``event.action`` values, which is
what the VPN rules match on.

The parser is a pure function of the syslog MSG part (see ``connectors/vpn/contract.py``). PAN-OS times
(``receive_time``) carry no offset: they are in the firewall's configured zone, i.e. ``context.timezone``.
"""

from __future__ import annotations

import csv
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime

from connectors.vpn.contract import Event, ParseContext, VpnParseError
from connectors.vpn.users import split_user
from engine.events import format_timestamp

VENDOR = "Palo Alto Networks"
PRODUCT = "PAN-OS"

# GLOBALPROTECT log, documented field order (PAN-OS 9.1+; later releases only append fields).
_GP_FIELDS = (
    "future_use1", "receive_time", "serial", "type", "subtype", "future_use2", "time_generated", "vsys",
    "eventid", "stage", "auth_method", "tunnel_type", "srcuser", "srcregion", "machinename", "public_ip",
    "public_ipv6", "private_ip", "private_ipv6", "hostid", "serialnumber", "client_ver", "client_os",
    "client_os_ver", "repeatcnt", "reason", "error", "opaque", "status", "location", "login_duration",
    "connect_method", "error_code", "portal", "seqno", "actionflags", "high_res_timestamp", "selection_type",
    "response_time", "priority", "attempted_gateways", "gateway", "dg_hier_level_1", "dg_hier_level_2",
    "dg_hier_level_3", "dg_hier_level_4", "vsys_name", "device_name", "vsys_id",
)
# SYSTEM log, documented field order.
_SYS_FIELDS = (
    "future_use1", "receive_time", "serial", "type", "subtype", "future_use2", "time_generated", "vsys",
    "eventid", "object", "future_use3", "future_use4", "module", "severity", "opaque", "seqno",
    "actionflags", "dg_hier_level_1", "dg_hier_level_2", "dg_hier_level_3", "dg_hier_level_4", "vsys_name",
    "device_name",
)

_AUTH = ["authentication"]
_SESSION = ["session", "network"]
_NETWORK = ["network"]

# event id -> (event.action, event.category, event.type). Portal and gateway logins are both "vpn-login":
# an attacker guessing passwords usually hits the portal, and the brute-force rules must see it.
_GP_EVENTS: dict[str, tuple[str, list[str], list[str]]] = {
    "portal-prelogin": ("vpn-prelogin", _AUTH, ["info"]),
    "portal-auth": ("vpn-login", _AUTH, ["start"]),
    "portal-getconfig": ("vpn-config", _NETWORK, ["info"]),
    "portal-gen-cookie": ("vpn-auth-cookie", _AUTH, ["info"]),
    "gateway-prelogin": ("vpn-prelogin", _AUTH, ["info"]),
    "gateway-auth": ("vpn-login", _AUTH, ["start"]),
    "gateway-getconfig": ("vpn-address-assigned", _NETWORK, ["info"]),
    "gateway-register": ("vpn-tunnel-up", _SESSION, ["start"]),
    "gateway-connected": ("vpn-tunnel-up", _SESSION, ["start"]),
    "gateway-hip-check": ("vpn-hip-check", _NETWORK, ["info"]),
    "gateway-hip-report": ("vpn-hip-report", _NETWORK, ["info"]),
    "gateway-switch-to-ssl": ("vpn-tunnel-fallback", _NETWORK, ["info"]),
    "gateway-tunnel-latency": ("vpn-tunnel-latency", _NETWORK, ["info"]),
    "gateway-config-release": ("vpn-session-end", _SESSION, ["end"]),
    "gateway-logout": ("vpn-logout", _SESSION, ["end"]),
}
_SYS_EVENTS: dict[str, tuple[str, list[str], list[str], str]] = {
    "globalprotectportal-auth-succ": ("vpn-login", _AUTH, ["start"], "success"),
    "globalprotectportal-auth-fail": ("vpn-login", _AUTH, ["start"], "failure"),
    "globalprotectportal-config-succ": ("vpn-config", _NETWORK, ["info"], "success"),
    "globalprotectportal-config-fail": ("vpn-config", _NETWORK, ["info"], "failure"),
    "globalprotectgateway-auth-succ": ("vpn-login", _AUTH, ["start"], "success"),
    "globalprotectgateway-auth-fail": ("vpn-login", _AUTH, ["start"], "failure"),
    "globalprotectgateway-config-succ": ("vpn-address-assigned", _NETWORK, ["info"], "success"),
    "globalprotectgateway-config-fail": ("vpn-address-assigned", _NETWORK, ["info"], "failure"),
    "globalprotectgateway-regist-succ": ("vpn-tunnel-up", _SESSION, ["start"], "success"),
    "globalprotectgateway-regist-fail": ("vpn-tunnel-up", _SESSION, ["start"], "failure"),
    "globalprotectgateway-config-release": ("vpn-session-end", _SESSION, ["end"], "success"),
    "globalprotectgateway-logout-succ": ("vpn-logout", _SESSION, ["end"], "success"),
    "globalprotectgateway-logout-fail": ("vpn-logout", _SESSION, ["end"], "failure"),
}

# Labels PAN-OS writes into SYSTEM globalprotect descriptions ("... Login from: 192.0.2.7, User name: x, ...").
_LABELS = ("Login from", "Source region", "User name", "Client OS version", "Client version", "Private IPv6",
           "Private IP", "Public IP", "Device name", "Reason", "Auth type", "VPN type", "Config name",
           "Login duration", "Error code", "Tunnel type")
_LABEL_RE = re.compile(r"(?:^|(?<=[\s.,]))(" + "|".join(re.escape(label) for label in _LABELS) + r"): ")
_TIME_FORMAT = "%Y/%m/%d %H:%M:%S"
_TUNNEL_TYPES = {"ipsec": "ipsec", "ssl": "ssl", "ikev2": "ikev2", "ike": "ipsec"}
_COUNTRY = re.compile(r"[A-Z]{2}")


def _split_csv(message: str) -> list[str]:
    """PAN-OS CSV with quoted fields (descriptions contain commas); csv problems are format errors."""
    try:
        return next(csv.reader([message]), [])
    except csv.Error as exc:
        raise VpnParseError(f"not PAN-OS CSV: {exc}") from None


def _time(value: str, context: ParseContext) -> str:
    """A naive PAN-OS time in the firewall's configured zone, as canonical UTC."""
    try:
        naive = datetime.strptime(value.strip(), _TIME_FORMAT)
        return format_timestamp(naive.replace(tzinfo=context.timezone))
    except (ValueError, OverflowError):
        raise VpnParseError("receive_time is not a PAN-OS time (YYYY/MM/DD HH:MM:SS)") from None


def _ip(value: str | None) -> str | None:
    """A canonical address, or None for empty and PAN-OS placeholders (0.0.0.0, ::)."""
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if address.is_unspecified:
        return None
    return address.compressed


def _int(value: str | None) -> int | None:
    """A non-negative decimal integer field, else None (never raises: fields can be blank or garbage)."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit() and len(text) < 19:
        return int(text)
    return None


def _put(event: Event, key: str, value: str | None) -> None:
    """Set a text field only when it carries something (absent, not empty, is the schema's rule)."""
    if value is not None:
        value = value.strip()
        if value and value != "-":
            event[key] = value


def _user(event: Event, raw: str | None, context: ParseContext) -> None:
    default_domain = context.options.get("default_domain") if context.options else None
    event.update(split_user(raw, default_domain if isinstance(default_domain, str) else None))


def _reason(event: Event, text: str | None) -> None:
    if text and text.strip() and text.strip() != "-":
        event["vpn.reason"] = event["event.reason"] = text.strip().rstrip(".")


@dataclass(frozen=True)
class _ClientFields:
    """Where one record kind keeps the client's details: the GLOBALPROTECT log has columns, the SYSTEM log
    ``Label: value`` pairs in its description; the fields they fill are the same."""

    sources: tuple[str, ...]   # client (public) address, first present wins
    assigned: tuple[str, ...]  # address assigned in the tunnel
    region: str
    tunnel: str
    text: tuple[tuple[str, str], ...]  # (event field, record key) copied as text when present


_GP_CLIENT = _ClientFields(
    sources=("public_ip", "public_ipv6"), assigned=("private_ip", "private_ipv6"), region="srcregion",
    tunnel="tunnel_type",
    text=(("host.hostname", "machinename"), ("host.id", "hostid"), ("host.os.name", "client_os"),
          ("host.os.full", "client_os_ver"), ("vpn.client.version", "client_ver"), ("vpn.stage", "stage"),
          ("vpn.auth_method", "auth_method"), ("vpn.connect_method", "connect_method"),
          ("vpn.location", "location"), ("vpn.portal", "portal"), ("vpn.gateway", "gateway")))
_SYS_CLIENT = _ClientFields(
    sources=("Login from", "Public IP"), assigned=("Private IP", "Private IPv6"), region="Source region",
    tunnel="Tunnel type",
    text=(("host.hostname", "Device name"), ("host.os.full", "Client OS version"),
          ("vpn.client.version", "Client version"), ("vpn.auth_method", "Auth type"),
          ("vpn.client.vpn_type", "VPN type")))


def _client(event: Event, record: dict[str, str], where: _ClientFields) -> None:
    """Client address, assigned address, source region, tunnel type and the text fields of one record."""
    source = next(filter(None, (_ip(record.get(key)) for key in where.sources)), None)
    if source:
        event["source.ip"] = source
    assigned = next(filter(None, (_ip(record.get(key)) for key in where.assigned)), None)
    if assigned:
        event["vpn.assigned_ip"] = assigned
    region = record.get(where.region, "").strip()
    if _COUNTRY.fullmatch(region):
        event["source.geo.country_iso_code"] = region
    tunnel = _TUNNEL_TYPES.get(record.get(where.tunnel, "").strip().lower())
    if tunnel:
        event["vpn.tunnel.type"] = tunnel
    for field, key in where.text:
        _put(event, field, record.get(key))


def _base(fields: list[str], names: tuple[str, ...], context: ParseContext) -> tuple[Event, dict[str, str]]:
    record = dict(zip(names, fields))
    event: Event = {
        "@timestamp": _time(record.get("receive_time", ""), context),
        "event.kind": "event",
        "observer.vendor": VENDOR,
        "observer.product": PRODUCT,
        "observer.type": "firewall",
    }
    _put(event, "observer.serial_number", record.get("serial"))
    _put(event, "observer.hostname", record.get("device_name") or context.hostname)
    sequence = _int(record.get("seqno"))
    if sequence is not None:
        event["event.sequence"] = sequence
    return event, record


def _parse_globalprotect(fields: list[str], context: ParseContext) -> Event:
    event, r = _base(fields, _GP_FIELDS, context)
    code = r.get("eventid", "").strip()
    event["event.code"] = code or "globalprotect"  # a record without its id still says what it is
    status = r.get("status", "").strip().lower()
    event["event.outcome"] = status if status in ("success", "failure") else "unknown"
    known = _GP_EVENTS.get(code)
    if known:
        event["event.action"], category, kind = known
        event["event.category"], event["event.type"] = list(category), list(kind)
    _user(event, r.get("srcuser"), context)
    _client(event, r, _GP_CLIENT)
    group = (r.get("gateway") or "").strip() or (r.get("portal") or "").strip()
    if group:
        event["vpn.group"] = group
    _put(event, "message", r.get("opaque"))
    _reason(event, r.get("error") or (r.get("reason") if code.endswith(("logout", "config-release"))
                                      or status == "failure" else None))
    error_code = _int(r.get("error_code"))
    if error_code:
        event["error.code"] = str(error_code)
    duration = _int(r.get("login_duration"))
    if duration is not None and (duration > 0 or code in ("gateway-logout", "gateway-config-release")):
        event["vpn.session.duration"] = duration
    return event


def _description(text: str) -> dict[str, str]:
    """``Label: value`` pairs of a SYSTEM globalprotect description; values may themselves hold commas."""
    found: dict[str, str] = {}
    matches = list(_LABEL_RE.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        value = text[match.end():end].strip().rstrip(",").rstrip(".").strip()
        found.setdefault(match.group(1), value)
    return found


def _parse_system(fields: list[str], context: ParseContext) -> Event:
    event, r = _base(fields, _SYS_FIELDS, context)
    code = r.get("eventid", "").strip()
    event["event.code"] = code or "system"
    _put(event, "log.level", r.get("severity"))
    if r.get("subtype", "").strip().lower() != "globalprotect":
        return event  # another PAN-OS system event: kept, generic
    known = _SYS_EVENTS.get(code)
    if known:
        event["event.action"], category, kind, outcome = known
        event["event.category"], event["event.type"] = list(category), list(kind)
        event["event.outcome"] = outcome
    elif code.endswith("-succ"):
        event["event.outcome"] = "success"
    elif code.endswith("-fail"):
        event["event.outcome"] = "failure"
    _put(event, "vpn.group", r.get("object"))
    if code.startswith("globalprotectportal"):
        _put(event, "vpn.portal", r.get("object"))
    elif code.startswith("globalprotectgateway"):
        _put(event, "vpn.gateway", r.get("object"))
    text = r.get("opaque", "")
    _put(event, "message", text)
    d = _description(text)
    _user(event, d.get("User name"), context)
    _client(event, d, _SYS_CLIENT)
    _reason(event, d.get("Reason"))
    duration = _int(d.get("Login duration"))
    if duration is not None:
        event["vpn.session.duration"] = duration
    return event


def parse(message: str, context: ParseContext) -> Event:
    """One PAN-OS syslog message (CSV, after the syslog header) -> ECS fields.

    GLOBALPROTECT and SYSTEM/globalprotect records are mapped in full; any other PAN-OS record (a TRAFFIC
    line on the same feed, a non-GlobalProtect SYSTEM event) is kept with ``event.code`` and the generic
    fields. Anything that is not a PAN-OS CSV record raises ``VpnParseError``.
    """
    if not isinstance(message, str):
        raise VpnParseError("message is not text")
    fields = _split_csv(message.strip())
    if len(fields) < 9:
        raise VpnParseError("not a PAN-OS CSV record (fewer than 9 fields)")
    log_type = fields[3].strip().upper()
    if log_type == "GLOBALPROTECT":
        return _parse_globalprotect(fields, context)
    if log_type == "SYSTEM":
        return _parse_system(fields, context)
    if not re.fullmatch(r"[A-Z][A-Z-]{1,29}", log_type):
        raise VpnParseError("not a PAN-OS CSV record (no log type in field 4)")
    event, _ = _base(fields, _SYS_FIELDS[:8], context)
    subtype = fields[4].strip().lower()
    event["event.code"] = f"{log_type.lower()}-{subtype}" if subtype and subtype != "0" else log_type.lower()
    return event
