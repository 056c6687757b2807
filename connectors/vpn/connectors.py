"""The four VPN connector types: each names its vendor parser module, everything else is shared.

Why so small: reading, syslog, time zones, ids and dead letters are in :mod:`connectors.vpn.base`. The
vendor module is imported only when an instance is built, so loading the entry points never imports a
parser, and a missing or broken vendor module fails its own type only.
"""

from __future__ import annotations

from connectors.vpn.base import VpnConnector


def _vendor(class_name: str, type_name: str, summary: str, parser_module: str) -> type[VpnConnector]:
    """One VPN connector type: a VpnConnector subclass with its entry-point name, its line in
    ``wardwatch connectors list`` and its parser module. A real class (named, importable, picklable), so
    ``connectors.vpn.connectors:CiscoAsaConnector`` in pyproject.toml keeps working."""
    return type(class_name, (VpnConnector,), {
        "__module__": __name__, "__qualname__": class_name, "__doc__": f"{summary}.",
        "type_name": type_name, "summary": summary, "parser_module": parser_module})


CiscoAsaConnector = _vendor("CiscoAsaConnector", "cisco-asa",
                            "Cisco ASA/FTD and AnyConnect VPN syslog (files or TLS/TCP/UDP listeners)",
                            "connectors.vpn.cisco_asa")
FortiGateConnector = _vendor("FortiGateConnector", "fortigate",
                             "FortiGate SSL-VPN/IPsec/admin key=value syslog (files or listeners)",
                             "connectors.vpn.fortigate")
GlobalProtectConnector = _vendor("GlobalProtectConnector", "globalprotect",
                                 "PAN-OS GlobalProtect logs, CSV and SYSTEM (files or listeners)",
                                 "connectors.vpn.globalprotect")
OpenVpnConnector = _vendor("OpenVpnConnector", "openvpn",
                           "OpenVPN server logs, syslog or plain files (files or listeners)",
                           "connectors.vpn.openvpn")
