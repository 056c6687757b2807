"""The ``syslog`` sink: alert and case revisions as RFC 5424 messages to a central SIEM.

QRadar, ArcSight, Splunk and Wazuh all take syslog; what differs is the payload they parse best, so
``format`` picks it: ``json`` (the payload dict, Splunk/Wazuh/Elastic), ``cef`` (ArcSight; also QRadar and
Splunk's CEF add-on) or ``leef`` (QRadar). The transport is TLS by default (RFC 5425, octet counting, the
server's certificate verified), or TCP (octet counting or LF) and UDP (RFC 5426) where the SIEM offers
nothing better - plaintext beyond loopback is logged as a warning at start, as the receiver does.

Exactly once: syslog has no acknowledgement, so delivery stays at-least-once (a crash between sending and
the outbox acknowledgement sends the revision again). Every message carries the structured data
``[wardwatch@32473 id="..." revision="N" record="alert"]`` (and MSGID ``alert``/``case``), so a receiver
deduplicates on ``id`` + ``revision``; CEF and LEEF repeat them as ``externalId``/``cn1`` and
``alertId``/``revision``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import orjson

from connectors.syslog.server import DEFAULT_PORTS, is_loopback
from connectors.syslog.tls import client_context
from engine.alerts.sinks.base import Sink, SinkOptions
from engine.alerts.sinks.cef import format_cef
from engine.alerts.sinks.leef import format_leef
from engine.alerts.sinks.siem_facts import facts
from engine.alerts.sinks.syslog_wire import (FACILITIES, SEVERITIES, Endpoint, SyslogConnection,
                                             format_rfc5424)
from engine.config import read_secret
from engine.errors import SinkUnavailable
from engine.logs import get_logger
from engine.plugins import InvalidOption, duration_option, path_option

log = get_logger("wardwatch.sinks.syslog")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wardwatch")
    except PackageNotFoundError:
        return "0"


@dataclass(kw_only=True)
class SyslogOptions(SinkOptions):
    """``alerts.sinks[]`` options of ``type: syslog`` (docs/alerts.md)."""

    host: str
    #: default: the protocol's IANA port (tls 6514, tcp 601, udp 514)
    port: int | None = None
    protocol: Literal["tls", "tcp", "udp"] = "tls"
    #: stream framing (RFC 6587); TLS always uses octet counting (RFC 5425)
    framing: Literal["octet-counting", "lf"] = "octet-counting"
    format: Literal["json", "cef", "leef"] = "json"
    facility: str = "authpriv"
    #: CA bundle the SIEM's certificate must chain to (default: the system's CAs)
    ca_certs: str | None = path_option(None)
    #: client certificate (mutual TLS) and its key; the key's passphrase from a file or the environment
    certfile: str | None = path_option(None)
    keyfile: str | None = path_option(None)
    key_password_file: str | None = path_option(None)
    key_password_env: str | None = None
    #: the name the SIEM's certificate must carry (default: host)
    server_name: str | None = None
    verify: bool = True
    timeout: float = duration_option(10.0)
    #: the HOSTNAME field (default: this machine's name)
    hostname: str | None = None
    app_name: str = "wardwatch"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.host:
            raise InvalidOption("host", "must name the SIEM's syslog receiver")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise InvalidOption("port", f"must be 1..65535, got {self.port}")
        if self.facility not in FACILITIES:
            raise InvalidOption("facility", f"must be one of {', '.join(FACILITIES)}, got {self.facility!r}")
        if self.protocol == "tls" and self.framing != "octet-counting":
            raise InvalidOption("framing", "TLS syslog is octet-counted (RFC 5425); lf is for protocol tcp")
        if self.protocol != "tls" and (self.certfile or self.ca_certs):
            raise InvalidOption("certfile" if self.certfile else "ca_certs", "only used with protocol tls")
        if self.keyfile and not self.certfile:
            raise InvalidOption("keyfile", "needs certfile")


class SyslogSink(Sink):
    """RFC 5424 over TLS/TCP/UDP with a JSON, CEF or LEEF payload (see the module docstring)."""

    type_name = "syslog"
    summary = "RFC 5424 syslog (TLS, TCP, UDP) with JSON, CEF or LEEF payloads, for a central SIEM"
    Options = SyslogOptions
    batch_size = 100

    def __init__(self, options: SyslogOptions | Mapping[str, Any] | None = None, **kwargs: Any):
        super().__init__(options, **kwargs)
        opts: SyslogOptions = self.settings
        port = opts.port or DEFAULT_PORTS[opts.protocol]
        self.endpoint = Endpoint(opts.protocol, opts.host, port, opts.framing, opts.timeout, opts.server_name)
        context = None
        if opts.protocol == "tls":
            password = read_secret(None, opts.key_password_file, opts.key_password_env,
                                   key=f"{self.name}.key_password_file")
            context = client_context(f"sink {self.name}", SinkUnavailable, ca_certs=opts.ca_certs,
                                     certfile=opts.certfile, keyfile=opts.keyfile, password=password,
                                     verify=opts.verify)
            if not opts.verify:
                log.warning("syslog sink does not verify the SIEM's certificate", sink=self.name, host=opts.host)
        elif not is_loopback(opts.host):
            log.warning("syslog sink sends plaintext beyond loopback: alerts name staff and patients; use "
                        "protocol: tls (RFC 5425) where the SIEM can", sink=self.name, protocol=opts.protocol,
                        host=opts.host, port=port)
        self.connection = SyslogConnection(self.endpoint, context)
        if opts.protocol == "udp":
            self.batch_size = 1  # a datagram too large is rejected alone, not with its neighbours
        self.hostname = opts.hostname or socket.gethostname()
        self.facility = FACILITIES[opts.facility]
        self.version = _version()

    def default_name(self) -> str:
        opts: SyslogOptions = self.settings
        return f"syslog:{opts.host}:{opts.port or DEFAULT_PORTS[opts.protocol]}"

    def send_alerts(self, payloads: Sequence[dict[str, Any]]) -> None:
        self.connection.send([self.message(p) for p in payloads])

    def send_cases(self, payloads: Sequence[dict[str, Any]]) -> None:
        self.connection.send([self.message(p) for p in payloads])

    def message(self, payload: Mapping[str, Any]) -> bytes:
        """One RFC 5424 message for one revision (its payload in the configured format)."""
        f = facts(payload)
        kind = self.settings.format
        if kind == "cef":
            body = format_cef(f, self.version).encode("utf-8")
        elif kind == "leef":
            body = format_leef(f, self.version).encode("utf-8")
        else:
            body = orjson.dumps(payload)
        sd = {"id": f.id, "revision": str(f.revision), "record": f.record, "level": f.level}
        if f.rule_id:
            sd["rule"] = f.rule_id
        return format_rfc5424(body, facility=self.facility, severity=SEVERITIES.get(f.level, 5), msgid=f.record,
                              sd=sd, hostname=self.hostname, appname=self.settings.app_name)

    def close(self) -> None:
        self.connection.close()
