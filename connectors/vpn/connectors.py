"""The four VPN connector types: each names its vendor parser module, everything else is shared.

Why so small: reading, syslog, time zones, ids and dead letters are in :mod:`connectors.vpn.base`. The
vendor module is imported only when an instance is built, so loading the entry points never imports a
parser, and a missing or broken vendor module fails its own type only.
"""

from __future__ import annotations

from typing import ClassVar

from connectors.vpn.base import VpnConnector


class CiscoAsaConnector(VpnConnector):
    type_name: ClassVar[str] = "cisco-asa"
    summary: ClassVar[str] = "Cisco ASA/FTD and AnyConnect VPN syslog (files or TLS/TCP/UDP listeners)"
    parser_module: ClassVar[str] = "connectors.vpn.cisco_asa"


class FortiGateConnector(VpnConnector):
    type_name: ClassVar[str] = "fortigate"
    summary: ClassVar[str] = "FortiGate SSL-VPN/IPsec/admin key=value syslog (files or listeners)"
    parser_module: ClassVar[str] = "connectors.vpn.fortigate"


class GlobalProtectConnector(VpnConnector):
    type_name: ClassVar[str] = "globalprotect"
    summary: ClassVar[str] = "PAN-OS GlobalProtect logs, CSV and SYSTEM (files or listeners)"
    parser_module: ClassVar[str] = "connectors.vpn.globalprotect"


class OpenVpnConnector(VpnConnector):
    type_name: ClassVar[str] = "openvpn"
    summary: ClassVar[str] = "OpenVPN server logs, syslog or plain files (files or listeners)"
    parser_module: ClassVar[str] = "connectors.vpn.openvpn"
