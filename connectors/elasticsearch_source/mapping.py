"""One Elasticsearch document -> one Wardwatch event, mapped as if it had come from our own connectors.

Why rebuild instead of copying Elastic's fields: a Winlogbeat or Elastic Agent document already has ECS
names, but not ours. A Cisco ASA login that Elastic's ``cisco_asa`` integration parsed has Elastic's
``event.action`` and ``cisco.asa.*``; our rules read the cross-vendor ``event.action``/``vpn.*`` vocabulary
(docs/schema.md, VPN). So every document goes through the one mapping its kind already has here:

* **Windows** (``winlog`` present): Winlogbeat's record -> ``WindowsRecord`` (:mod:`connectors.windows.
  winlogbeat_records`) -> :func:`connectors.windows.record.normalise_record`, the same path EVTX and
  NXLog take, so a record read from EVTX and from Elasticsearch is one event (one ``event.id``).
* **VPN** (``data_stream.dataset``/``event.dataset`` ``cisco_asa.log``, ``fortinet_fortigate.log``,
  ``panw.panos``): the vendor's own text goes through our vendor parser (:mod:`connectors.vpn`). That text
  is ``event.original`` when the integration kept it (``preserve_original_event``); otherwise it is rebuilt
  from the integration's fields (ASA ``%ASA-<sev>-<id>: <message>``, FortiGate ``key=value`` from
  ``fortinet.firewall.*``, PAN-OS GLOBALPROTECT CSV from ``panw.panos.*``), which loses only what Elastic
  dropped.
* **Anything else**: flattened ECS as stored, ``event.dataset`` from ``data_stream.dataset``, else
  ``event.dataset``, else the configured ``dataset``.

``event.id`` comes from the source: a Windows identity when the record has one, else the document's index
and ``_id`` (:func:`document_id`). ``event.ingested`` of the source is dropped: our store stamps its own.
Anything that cannot become an event raises :class:`MappingError`, which the connector dead-letters.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from engine.events import DATASET, EVENT_ID, INGESTED, ORIGINAL, TIMESTAMP, Event, flatten, make_event_id
from engine.events import format_timestamp, parse_timestamp
from engine.identity import windows_id, windows_identity

#: Elastic integration dataset -> our VPN connector type (its parser and its rebuild of the vendor text).
VPN_DATASETS: dict[str, str] = {
    "cisco_asa.log": "cisco-asa",
    "cisco.asa": "cisco-asa",
    "fortinet_fortigate.log": "fortigate",
    "fortinet.firewall": "fortigate",
    "panw.panos": "globalprotect",
}


class MappingError(ValueError):
    """The document cannot become an event; ``str()`` names the field (never a value: it may be PHI)."""


def document_id(index: str, doc_id: str) -> str:
    """A document's identity: its concrete index (a data stream's backing index) and ``_id``.

    A document never moves between indices, so a re-read from any cursor or by a second connector gives
    the same id and the store drops the copy."""
    return make_event_id("elasticsearch", f"{index}\x00{doc_id}")


@dataclass
class MappingSettings:
    """What the mapping needs from the connector's options."""

    dataset: str = "elasticsearch"
    time_field: str = "@timestamp"
    timezone: str = "UTC"
    #: the VPN dataset our rules read (``product: vpn``)
    vpn_dataset: str = "vpn.auth"
    #: (connector type, time zone) -> the VPN connector whose message_to_event maps that vendor
    _vpn: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)


WindowsMapper = Callable[[Mapping[str, Any]], Any]


def windows_mapper() -> WindowsMapper | None:
    """The Winlogbeat document -> ``WindowsRecord`` function, or None while that module is not installed
    (Windows documents are then kept as flattened ECS: ``winlog.*`` still gives the Windows identity)."""
    try:
        from connectors.windows.winlogbeat_records import record_from_document
    except ImportError:
        return None
    return record_from_document


def map_document(hit: Mapping[str, Any], settings: MappingSettings,
                 windows: WindowsMapper | None = None) -> Event:
    """One search hit (``_index``, ``_id``, ``_source``) -> an event, or :class:`MappingError`."""
    source = hit.get("_source")
    if not isinstance(source, Mapping):
        raise MappingError("_source: not a JSON object")
    index, doc_id = hit.get("_index"), hit.get("_id")
    if not isinstance(index, str) or not isinstance(doc_id, str) or not index or not doc_id:
        raise MappingError("_index/_id: missing")
    event: Event | None = None
    if isinstance(source.get("winlog"), Mapping) and windows is not None:
        _time(source, settings.time_field)  # the record has its own time; this one must still be valid
        event = _windows(source, windows)   # (no flattening: the record reads the nested document)
    if event is None:
        flat = flatten(source)
        when = _time(flat, settings.time_field)
        dataset = _source_dataset(flat)
        if dataset in VPN_DATASETS:
            event = _vpn(flat, VPN_DATASETS[dataset], when, settings)
        if event is None:
            event = _generic(flat, dataset, settings)
            event[TIMESTAMP] = format_timestamp(when)
    event.pop(INGESTED, None)
    identity = windows_identity(event)
    event[EVENT_ID] = windows_id(*identity) if identity else document_id(index, doc_id)
    return event


def _lookup(document: Mapping[str, Any], dotted: str) -> Any:
    """``document[dotted]`` in a flat or a nested document (``@timestamp``, ``event.created``)."""
    value = document.get(dotted)
    if value is not None or "." not in dotted:
        return value
    node: Any = document
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _time(document: Mapping[str, Any], time_field: str) -> datetime:
    value = _lookup(document, time_field)
    if value is None:
        raise MappingError(f"field {time_field!r}: missing timestamp")
    try:
        when = parse_timestamp(value)
    except (ValueError, OverflowError, OSError) as exc:
        raise MappingError(f"field {time_field!r}: invalid timestamp ({type(exc).__name__})") from None
    if not 1000 <= when.year <= 9999:  # the canonical text form has four-digit years
        raise MappingError(f"field {time_field!r}: invalid timestamp (year {when.year})")
    return when


def _source_dataset(flat: Mapping[str, Any]) -> str | None:
    for key in ("data_stream.dataset", DATASET):
        value = flat.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _generic(flat: Event, dataset: str | None, settings: MappingSettings) -> Event:
    event = dict(flat)
    event[DATASET] = dataset or settings.dataset
    return event


def _windows(source: Mapping[str, Any], windows: WindowsMapper) -> Event | None:
    """Through the Windows record contract; None (-> generic) when the mapper cannot read this document."""
    from connectors.windows.record import normalise_record

    try:
        record = windows(source)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):  # not a record it can read
        return None
    if record is None:
        return None
    event = normalise_record(record)
    original = source.get("event", {}).get("original") if isinstance(source.get("event"), Mapping) else None
    if isinstance(original, str):
        event[ORIGINAL] = original
    return event


# --- VPN -------------------------------------------------------------------------------------------------

def _vpn(flat: Event, kind: str, when: datetime, settings: MappingSettings) -> Event | None:
    """Our vendor parser over the vendor's text; None (-> generic ECS) when there is no text to parse."""
    original = flat.get(ORIGINAL)
    rebuilt = False
    if not isinstance(original, str) or not original.strip():
        original = _REBUILD[kind](flat, when)
        rebuilt = True
        if original is None:
            return None
    # a rebuilt text carries UTC times (or none); event.original is in the device's configured zone
    connector = _vpn_connector(kind, settings, "UTC" if rebuilt else settings.timezone)
    result = connector.message_to_event(original.encode("utf-8", "surrogatepass"), "elasticsearch",
                                        "elasticsearch", when.year, received=when)
    if type(result) is not dict:
        return None  # the text is not this vendor's after all: keep the document as it is
    if rebuilt:
        result.pop(ORIGINAL, None)  # our rebuild is not the original text
        for key in ("observer.hostname", "observer.name"):  # a rebuilt ASA/GlobalProtect text names no host
            if key not in result and isinstance(flat.get(key), str):
                result[key] = flat[key]
    return result


def _vpn_connector(kind: str, settings: MappingSettings, tz: str) -> Any:
    """One VPN connector per vendor and zone, used only for its ``message_to_event`` (it reads no file)."""
    connector = settings._vpn.get((kind, tz))
    if connector is None:
        from connectors.base import connector_class

        cls = connector_class(kind)
        connector = cls("elasticsearch-source", {"path": "-", "timezone": tz, "dataset": settings.vpn_dataset})
        settings._vpn[(kind, tz)] = connector
    return connector


def _text(flat: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = flat.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value) != "":
            return str(value)
    return None


def _rebuild_asa(flat: Mapping[str, Any], when: datetime) -> str | None:
    """``%ASA-<severity>-<message id>: <message>`` from Elastic's ``cisco_asa`` fields."""
    code = _text(flat, "cisco.asa.message_id", "event.code")
    text = _text(flat, "message", "log.original")
    if code is None or text is None or not code.isdigit():
        return None
    severity = _text(flat, "event.severity", "log.syslog.severity.code") or "6"
    prefix = "FTD" if str(flat.get("observer.product", "")).lower() == "ftd" else "ASA"
    return f"%{prefix}-{severity[:1]}-{code}: {text}"


#: FortiOS key -> the field Elastic's ``fortinet_fortigate`` integration moves it to (the rest stay under
#: ``fortinet.firewall.<key>``).
_FORTI_ECS = {
    "logid": ("event.code",), "action": ("fortinet.firewall.action", "event.action"),
    "devname": ("observer.name",), "devid": ("observer.serial_number",), "level": ("log.level",),
    "remip": ("source.ip",), "remport": ("source.port",), "locip": ("destination.ip",),
    "locport": ("destination.port",), "user": ("source.user.name", "user.name"),
    "group": ("source.user.group.name",), "msg": ("message",), "reason": ("event.reason",),
    "logdesc": ("rule.description",), "sentbyte": ("source.bytes",), "rcvdbyte": ("destination.bytes",),
    "tz": ("event.timezone",),
}


def _rebuild_fortigate(flat: Mapping[str, Any], when: datetime) -> str | None:
    """FortiOS ``key="value"`` text from ``fortinet.firewall.*`` and the ECS fields Elastic moved keys to."""
    pairs: dict[str, str] = {}
    prefix = "fortinet.firewall."
    for key, value in flat.items():
        if key.startswith(prefix) and "." not in key[len(prefix):]:
            text = _text(flat, key)
            if text is not None:
                pairs[key[len(prefix):]] = text
    for key, fields in _FORTI_ECS.items():
        if key not in pairs and (text := _text(flat, *fields)) is not None:
            pairs[key] = text
    if "logid" not in pairs or "type" not in pairs:
        return None
    pairs["eventtime"] = str(int(when.timestamp() * 1_000_000_000))
    return " ".join(f'{k}="{_forti_escape(v)}"' for k, v in pairs.items())


def _forti_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


#: Our GLOBALPROTECT CSV column -> the fields Elastic's ``panw`` module/integration puts it in (its exported
#: fields reference: ``panw.panos.<name>`` for most, ECS for user, addresses, outcome); first present wins.
_GP_SOURCES: dict[str, tuple[str, ...]] = {
    "serial": ("observer.serial_number",), "vsys": ("panw.panos.virtual_sys", "panw.panos.vsys"),
    "eventid": ("panw.panos.event_id", "panw.panos.event.id", "event.action"), "stage": ("panw.panos.stage",),
    "auth_method": ("panw.panos.auth_method",), "tunnel_type": ("panw.panos.tunnel_type",),
    "srcuser": ("source.user.name", "user.name"), "srcregion": ("panw.panos.source.region",),
    "machinename": ("host.hostname", "panw.panos.machine.name"),
    "public_ip": ("source.ip", "panw.panos.public.ip"), "public_ipv6": ("panw.panos.public_ipv6",),
    "private_ip": ("panw.panos.private_ip", "panw.panos.private.ip", "source.nat.ip"),
    "private_ipv6": ("panw.panos.private_ipv6",), "hostid": ("host.id",),
    "serialnumber": ("panw.panos.serial_number",), "client_ver": ("panw.panos.client_ver",),
    "client_os": ("panw.panos.client_os", "host.os.name"),
    "client_os_ver": ("panw.panos.client_os_ver", "host.os.full"),
    "repeatcnt": ("panw.panos.repeatcnt",), "reason": ("event.reason", "panw.panos.reason"),
    "error": ("panw.panos.error", "error.message"), "opaque": ("panw.panos.description", "message"),
    "status": ("event.outcome",), "location": ("panw.panos.location",),
    "login_duration": ("panw.panos.login_duration",), "connect_method": ("panw.panos.connect_method",),
    "error_code": ("panw.panos.error_code", "error.code"), "portal": ("panw.panos.portal",),
    "seqno": ("panw.panos.sequence_number", "event.sequence"), "gateway": ("panw.panos.gateway",),
    "selection_type": ("panw.panos.selection_type",), "response_time": ("panw.panos.response_time",),
    "priority": ("panw.panos.priority",), "attempted_gateways": ("panw.panos.attempted_gateways",),
    "vsys_name": ("panw.panos.vsys_name",), "vsys_id": ("panw.panos.vsys_id",),
    "device_name": ("observer.hostname", "observer.name"),
}


def _rebuild_globalprotect(flat: Mapping[str, Any], when: datetime) -> str | None:
    """A PAN-OS GLOBALPROTECT CSV record (documented column order) from Elastic's ``panw`` fields."""
    from connectors.vpn.globalprotect import _GP_FIELDS

    kind = (_text(flat, "panw.panos.type", "event.provider") or "").upper()
    if kind not in ("GLOBALPROTECT", ""):
        return None
    if _text(flat, *_GP_SOURCES["eventid"]) is None:
        return None
    stamp = when.astimezone(timezone.utc).strftime("%Y/%m/%d %H:%M:%S")
    row: list[str] = []
    for name in _GP_FIELDS:
        if name in ("receive_time", "time_generated"):
            row.append(stamp)
        elif name == "type":
            row.append("GLOBALPROTECT")
        elif name == "subtype":
            row.append("globalprotect")
        elif name == "future_use1":
            row.append("1")
        else:
            row.append(_text(flat, *_GP_SOURCES.get(name, ())) or "")
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(row)
    return out.getvalue()


_REBUILD: dict[str, Callable[[Mapping[str, Any], datetime], str | None]] = {
    "cisco-asa": _rebuild_asa, "fortigate": _rebuild_fortigate, "globalprotect": _rebuild_globalprotect,
}
