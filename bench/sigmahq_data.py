"""Where the SigmaHQ benchmark and the slow exactness test get their rules and events from.

Why a module of its own: the benchmark and ``tests/test_prefilter_exact.py`` must look at the very same
events and rules, or "identical matches" and "events/s" would be about different inputs. Events come from
the ``evtx`` connector when it is installed (the product's own path), otherwise from the ``evtx`` package
through ``connectors.windows.record.normalise_record`` (the same normalisation the connector applies).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
EVTX_DIR = DATASETS / "evtx-samples"
SIGMAHQ = DATASETS / "sigmahq"


def sigmahq_windows_dirs() -> list[Path]:
    """Every ``rules*/windows`` directory of the SigmaHQ checkout (rules, rules-threat-hunting, ...)."""
    return sorted(p / "windows" for p in SIGMAHQ.glob("rules*") if (p / "windows").is_dir())


def evtx_files() -> list[Path]:
    return sorted(EVTX_DIR.rglob("*.evtx"))


def available() -> bool:
    return bool(sigmahq_windows_dirs()) and bool(evtx_files())


def _text(value: Any) -> Any:
    if isinstance(value, dict):  # <Data Name="x" attr=..>text</Data> renders as {"#text": ..}
        return value.get("#text")
    return value


def _record(doc: dict[str, Any]) -> Any:
    from connectors.windows.record import WindowsRecord

    event = doc.get("Event") or {}
    system = event.get("System") or {}
    attrs = lambda d: (d or {}).get("#attributes", {}) if isinstance(d, dict) else {}  # noqa: E731
    event_id = system.get("EventID")
    if isinstance(event_id, dict):
        event_id = event_id.get("#text")
    data: dict[str, Any] = {}
    payload = event.get("EventData") or event.get("UserData") or {}
    if isinstance(payload, dict):
        stack = [payload]
        while stack:
            part = stack.pop()
            for key, value in part.items():
                if key.startswith("#"):
                    continue
                if isinstance(value, dict) and "#text" not in value:
                    stack.append(value)
                else:
                    data[key] = _text(value)
    return WindowsRecord(
        channel=str(system.get("Channel") or ""),
        provider=str(attrs(system.get("Provider")).get("Name") or ""),
        event_id=int(event_id or 0),
        record_id=system.get("EventRecordID"),
        computer=str(system.get("Computer") or ""),
        time=str(attrs(system.get("TimeCreated")).get("SystemTime")),
        data=data,
        level=system.get("Level"), task=system.get("Task"), opcode=system.get("Opcode"),
        keywords=system.get("Keywords"), version=system.get("Version"),
        process_id=attrs(system.get("Execution")).get("ProcessID"),
        thread_id=attrs(system.get("Execution")).get("ThreadID"),
        user_sid=attrs(system.get("Security")).get("UserID"),
        provider_guid=attrs(system.get("Provider")).get("Guid"),
    )


def iter_events(files: list[Path] | None = None) -> Iterator[dict[str, Any]]:
    """Normalised events of every sample file (records the parser cannot read are skipped)."""
    import evtx

    from connectors.windows.record import normalise_record
    from engine.events import make_event_id

    for path in files if files is not None else evtx_files():
        try:
            parser = evtx.PyEvtxParser(str(path))
            records = list(parser.records_json())
        except (OSError, RuntimeError, ValueError):
            continue
        for raw in records:
            try:
                event = normalise_record(_record(json.loads(raw["data"])))
            except (ValueError, TypeError, KeyError):
                continue
            event["event.id"] = make_event_id(path.name, str(raw["event_record_id"]))
            yield event


def load_sigmahq_rules() -> Any:
    from engine.sigma import load_rules

    return load_rules([str(p) for p in sigmahq_windows_dirs()])
