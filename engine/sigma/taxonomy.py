"""Logsource -> dataset mapping: which events a rule may ever see.

Data-driven on purpose: adding a log source is adding an entry to ``TAXONOMY`` (or passing a custom list to
the loader), not writing code. Each entry matches a Sigma ``logsource`` (product/category/service; keys the
entry leaves out must be absent from the rule) and names the datasets plus, per dataset, an optional extra
event condition -- the way SigmaHQ's sysmon pipeline turns ``category: process_creation`` into
``EventID: 1`` on the Sysmon channel.

Where the Windows tables come from, and why they are not ours to invent:

* ``service`` -> channel is pySigma's own ``windows_logsource_mapping`` (imported, so a pySigma upgrade that
  learns a channel teaches us too), plus the few services SigmaHQ's THOR config (``tests/thor.yml``, the
  mapping SigmaHQ's regression tests run with) knows and pySigma does not yet. Each channel becomes the
  dataset ``connectors.windows.record.dataset_for_channel`` gives it at ingest, so rule and event agree.
* generic ``category`` -> (dataset, EventID): every source that carries the category, as SigmaHQ's sysmon
  pipeline, pySigma's ``windows_audit_pipeline`` and THOR map it -- ``process_creation`` is Sysmon 1 *and*
  Security 4688. The Sysmon-named fields those non-Sysmon events lack are added at ingest by
  ``connectors.windows.aliases`` (why there: docs/decisions.md).
* classic PowerShell (channel ``Windows PowerShell``, 400/600/800) and PowerShell Operational (4103/4104)
  are separate datasets: the same EventID means different things on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from sigma.pipelines.common import windows_logsource_mapping

from connectors.windows.record import dataset_for_channel


@dataclass(frozen=True)
class LogsourceEntry:
    product: str | None = None
    category: str | None = None
    service: str | None = None
    #: dataset -> extra field conditions ({field: [allowed values]}) an event of that dataset must meet
    datasets: Mapping[str, Mapping[str, tuple[Any, ...]]] = field(default_factory=dict)

    def matches(self, product: str | None, category: str | None, service: str | None) -> bool:
        return (self.product, self.category, self.service) == (product, category, service)


#: Services SigmaHQ rules use that pySigma 1.x has no channel for (channels from SigmaHQ's tests/thor.yml
#: and the rules' own ``definition``), and services whose channel pySigma names differently than THOR.
_EXTRA_SERVICE_CHANNELS: dict[str, tuple[str, ...]] = {
    "iis-configuration": ("Microsoft-IIS-Configuration/Operational",),
    "ldap": ("Microsoft-Windows-LDAP-Client/Debug",),
    "smbclient-connectivity": ("Microsoft-Windows-SmbClient/Connectivity",),
    "smbserver-connectivity": ("Microsoft-Windows-SMBServer/Connectivity",),
    "kernel-shimengine": ("Microsoft-Windows-Kernel-ShimEngine/Operational",
                          "Microsoft-Windows-Kernel-ShimEngine/Diagnostic"),
    "application-experience": ("Microsoft-Windows-Application-Experience/Program-Telemetry",
                               "Microsoft-Windows-Application-Experience/Program-Compatibility-Assistant"),
    "ntfs": ("Microsoft-Windows-Ntfs/Operational",),
    "sense": ("Microsoft-Windows-SENSE/Operational",),
    "servicebus-client": ("Microsoft-ServiceBus-Client/Admin", "Microsoft-ServiceBus-Client/Operational"),
    "microsoft-servicebus-client": ("Microsoft-ServiceBus-Client", "Microsoft-ServiceBus-Client/Admin",
                                    "Microsoft-ServiceBus-Client/Operational"),
    "kernel-event-tracing": ("Microsoft-Windows-Kernel-EventTracing",),
    "hyper-v-worker": ("Microsoft-Windows-Hyper-V-Worker",),
}


def _service_channels() -> dict[str, tuple[str, ...]]:
    channels: dict[str, tuple[str, ...]] = {}
    for service, value in windows_logsource_mapping.items():
        channels[service] = (value,) if isinstance(value, str) else tuple(value)
    for service, extra in _EXTRA_SERVICE_CHANNELS.items():
        channels[service] = tuple(dict.fromkeys(channels.get(service, ()) + extra))
    return channels


#: Sigma ``service`` -> Windows event log channel(s).
SERVICE_CHANNELS: Mapping[str, tuple[str, ...]] = _service_channels()


def service_datasets(service: str) -> tuple[str, ...]:
    """The datasets the channels of a Windows ``service`` land in (one, mostly)."""
    return tuple(dict.fromkeys(dataset_for_channel(c) for c in SERVICE_CHANNELS[service]))


SYSMON = "windows.sysmon"
SECURITY = "windows.security"
POWERSHELL = "windows.powershell"
POWERSHELL_CLASSIC = "windows.powershell-classic"
DEFENDER = dataset_for_channel("Microsoft-Windows-Windows Defender/Operational")
#: Microsoft-Windows-Kernel-File ETW events (file_access/file_rename rules' stated requirement) when an
#: ETW collector writes them to an event log channel.
KERNEL_FILE = dataset_for_channel("Microsoft-Windows-Kernel-File/Analytic")

#: 4657 OperationType as the XML carries it (%%-message ids) and as rendered (pySigma's audit pipeline).
_REG_NEW = ("%%1904", "New registry value created")
_REG_MODIFIED = ("%%1905", "Existing registry value modified")
_REG_DELETED = ("%%1906", "Registry value deleted")

Datasets = dict[str, dict[str, tuple[Any, ...]]]

#: Generic category -> every (dataset, extra condition) carrying it. Sysmon EventIDs follow SigmaHQ's sysmon
#: pipeline / THOR; Security ones pySigma's windows_audit_pipeline plus the Windows audit events whose
#: fields ``connectors.windows.aliases`` maps onto the Sysmon names (5156 network, 4663 file access).
CATEGORIES: dict[str, Datasets] = {
    "process_creation": {SYSMON: {"EventID": (1,)}, SECURITY: {"EventID": (4688,)}},
    "file_change": {SYSMON: {"EventID": (2,)}},
    "network_connection": {SYSMON: {"EventID": (3,)}, SECURITY: {"EventID": (5156,)}},
    "sysmon_status": {SYSMON: {"EventID": (4, 16)}},
    "process_termination": {SYSMON: {"EventID": (5,)}, SECURITY: {"EventID": (4689,)}},
    "driver_load": {SYSMON: {"EventID": (6,)}},
    "image_load": {SYSMON: {"EventID": (7,)}},
    "create_remote_thread": {SYSMON: {"EventID": (8,)}},
    "raw_access_thread": {SYSMON: {"EventID": (9,)}},
    "process_access": {SYSMON: {"EventID": (10,)}},
    "file_event": {SYSMON: {"EventID": (11,)}},
    "registry_add": {SYSMON: {"EventID": (12,)},
                     SECURITY: {"EventID": (4657,), "OperationType": _REG_NEW}},
    "registry_delete": {SYSMON: {"EventID": (12,)},
                        SECURITY: {"EventID": (4657,), "OperationType": _REG_DELETED}},
    "registry_set": {SYSMON: {"EventID": (13,)},
                     SECURITY: {"EventID": (4657,), "OperationType": _REG_MODIFIED}},
    "registry_rename": {SYSMON: {"EventID": (14,)}},
    "registry_event": {SYSMON: {"EventID": (12, 13, 14)},
                       SECURITY: {"EventID": (4657,), "OperationType": _REG_NEW + _REG_MODIFIED}},
    "create_stream_hash": {SYSMON: {"EventID": (15,)}},
    "pipe_created": {SYSMON: {"EventID": (17, 18)}},
    "wmi_event": {SYSMON: {"EventID": (19, 20, 21)}},
    "dns_query": {SYSMON: {"EventID": (22,)}},
    "file_delete": {SYSMON: {"EventID": (23, 26)}},
    "clipboard_capture": {SYSMON: {"EventID": (24,)}},
    "clipboard_change": {SYSMON: {"EventID": (24,)}},
    "process_tampering": {SYSMON: {"EventID": (25,)}},
    "file_delete_detected": {SYSMON: {"EventID": (26,)}},
    "file_block_executable": {SYSMON: {"EventID": (27,)}},
    "file_block_shredding": {SYSMON: {"EventID": (28,)}},
    "file_executable_detected": {SYSMON: {"EventID": (29,)}},
    "sysmon_error": {SYSMON: {"EventID": (255,)}},
    "file_access": {KERNEL_FILE: {}, SECURITY: {"EventID": (4663,), "ObjectType": ("File",)}},
    "file_rename": {KERNEL_FILE: {}},
    # THOR's windows-defender-antivirus-mapping: the Defender events that carry a threat name or a path.
    "antivirus": {DEFENDER: {"EventID": (1006, 1007, 1008, 1009, 1010, 1011, 1012, 1017, 1018, 1019,
                                         1115, 1116)}},
    # PowerShell: Operational (script block / module logging) and classic (engine / provider / pipeline).
    "ps_module": {POWERSHELL: {"EventID": (4103,)}},
    "ps_script": {POWERSHELL: {"EventID": (4104,)}},
    "ps_classic_start": {POWERSHELL_CLASSIC: {"EventID": (400,)}},
    "ps_classic_provider_start": {POWERSHELL_CLASSIC: {"EventID": (600,)}},
    "ps_classic_script": {POWERSHELL_CLASSIC: {"EventID": (800,)}},
}


def _entries() -> list[LogsourceEntry]:
    entries = [
        LogsourceEntry(product="ehr", datasets={"ehr.audit": {}}),
        LogsourceEntry(product="vpn", datasets={"vpn.auth": {}}),
    ]
    windows: Datasets = {}
    for service in SERVICE_CHANNELS:
        datasets = service_datasets(service)
        entries.append(LogsourceEntry(product="windows", service=service, datasets={d: {} for d in datasets}))
        windows.update({d: {} for d in datasets})
    for category, datasets in CATEGORIES.items():
        entries.append(LogsourceEntry(product="windows", category=category, datasets=datasets))
        windows.update({d: {} for d in datasets})
    # A bare ``product: windows`` rule sees every Windows dataset we know of.
    entries.append(LogsourceEntry(product="windows", datasets=windows))
    return entries


TAXONOMY: tuple[LogsourceEntry, ...] = tuple(_entries())


def resolve_logsource(
    logsource: Mapping[str, Any], taxonomy: Sequence[LogsourceEntry] = TAXONOMY
) -> LogsourceEntry | None:
    """The taxonomy entry for a rule's logsource, or None when we have no data for it."""
    product = logsource.get("product")
    category = logsource.get("category")
    service = logsource.get("service")
    for entry in taxonomy:
        if entry.matches(product, category, service):
            return entry
    return None
