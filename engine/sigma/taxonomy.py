"""Logsource -> dataset mapping: which events a rule may ever see.

Data-driven on purpose: adding a log source is adding an entry to ``TAXONOMY`` (or passing a custom list to
the loader), not writing code. Each entry matches a Sigma ``logsource`` (product/category/service; keys the
entry leaves out must be absent from the rule) and names the datasets plus, per dataset, an optional extra
event condition -- the way SigmaHQ's sysmon pipeline turns ``category: process_creation`` into
``EventID: 1`` on the Sysmon channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class LogsourceEntry:
    product: str | None = None
    category: str | None = None
    service: str | None = None
    #: dataset -> extra field conditions ({field: [allowed values]}) an event of that dataset must meet
    datasets: Mapping[str, Mapping[str, tuple[Any, ...]]] = field(default_factory=dict)

    def matches(self, product: str | None, category: str | None, service: str | None) -> bool:
        return (self.product, self.category, self.service) == (product, category, service)


def _sysmon(*event_ids: int) -> Mapping[str, Mapping[str, tuple[Any, ...]]]:
    return {"windows.sysmon": {"EventID": tuple(event_ids)}}


def _entries() -> list[LogsourceEntry]:
    entries = [
        LogsourceEntry(product="ehr", datasets={"ehr.audit": {}}),
        LogsourceEntry(product="vpn", datasets={"vpn.auth": {}}),
        LogsourceEntry(product="windows", datasets={
            "windows.security": {}, "windows.system": {}, "windows.sysmon": {}, "windows.powershell": {},
        }),
    ]
    services = {
        "security": "windows.security",
        "system": "windows.system",
        "sysmon": "windows.sysmon",
        "powershell": "windows.powershell",
        "powershell-classic": "windows.powershell",
    }
    for service, dataset in services.items():
        entries.append(LogsourceEntry(product="windows", service=service, datasets={dataset: {}}))
    # Sysmon event codes per category, as SigmaHQ's sysmon pipeline maps them.
    categories = {
        "process_creation": (1,),
        "file_change": (2,),
        "network_connection": (3,),
        "sysmon_status": (4, 16),
        "process_termination": (5,),
        "driver_load": (6,),
        "image_load": (7,),
        "create_remote_thread": (8,),
        "raw_access_thread": (9,),
        "process_access": (10,),
        "file_event": (11,),
        "registry_add": (12,),
        "registry_delete": (12,),
        "registry_set": (13,),
        "registry_rename": (14,),
        "registry_event": (12, 13, 14),
        "create_stream_hash": (15,),
        "pipe_created": (17, 18),
        "wmi_event": (19, 20, 21),
        "dns_query": (22,),
        "file_delete": (23, 26),
        "clipboard_capture": (24,),
        "process_tampering": (25,),
        "file_delete_detected": (26,),
        "file_block_executable": (27,),
        "file_block_shredding": (28,),
        "file_executable_detected": (29,),
    }
    for category, codes in categories.items():
        entries.append(LogsourceEntry(product="windows", category=category, datasets=_sysmon(*codes)))
    entries.append(LogsourceEntry(product="windows", category="ps_script",
                                  datasets={"windows.powershell": {"EventID": (4104,)}}))
    entries.append(LogsourceEntry(product="windows", category="ps_module",
                                  datasets={"windows.powershell": {"EventID": (4103,)}}))
    entries.append(LogsourceEntry(product="windows", category="ps_classic_start",
                                  datasets={"windows.powershell": {"EventID": (400,)}}))
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
