"""A tiny vendor parser for testing the shared VPN layer without any real vendor module.

Format: ``FAKEVPN user=NAME action=ACTION [src=IP] [time=ISO]``; anything else is not this vendor.
"""

from __future__ import annotations

from connectors.vpn.contract import Event, ParseContext, VpnParseError
from connectors.vpn.users import split_user

VENDOR = "Example"
PRODUCT = "FakeVPN"


def parse(message: str, context: ParseContext) -> Event:
    """One ``FAKEVPN`` message -> ECS fields; anything else raises VpnParseError."""
    if not message.startswith("FAKEVPN "):
        raise VpnParseError("no FAKEVPN marker")
    fields = dict(part.partition("=")[::2] for part in message.split()[1:] if "=" in part)
    event: Event = {"event.kind": "event", "event.category": ["authentication"],
                    "event.action": fields.get("action", "unknown"), "event.code": "fake-1"}
    event.update(split_user(fields.get("user"), context.options.get("default_domain")))
    if "src" in fields:
        event["source.ip"] = fields["src"]
    if "time" in fields:
        from datetime import datetime

        naive = datetime.fromisoformat(fields["time"])
        event["@timestamp"] = naive.replace(tzinfo=context.timezone) if naive.tzinfo is None else naive
    if context.appname:
        event["test.appname"] = context.appname
    return event
