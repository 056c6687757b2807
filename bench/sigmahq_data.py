"""Where the SigmaHQ benchmark and the slow exactness test get their rules and events from.

Why a module of its own: the benchmark and ``tests/test_prefilter_exact.py`` must look at the very same
events and rules, or "identical matches" and "events/s" would be about different inputs. Events come from
the ``evtx`` connector (the product's own parse + normalise path), as ``wardwatch run --once`` reads them.
"""

from __future__ import annotations

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


def iter_events(path: Path | None = None, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Normalised events of every sample file, read by the ``evtx`` connector (the product's own path)."""
    from connectors.windows.evtx import EvtxConnector

    connector = EvtxConnector("evtx-samples", {"path": str(path or EVTX_DIR)})
    connector.read_to_end()
    cursor = None
    try:
        while True:
            got = connector.read(cursor, batch)
            yield from got.events
            cursor = got.cursor
            if got.exhausted:
                return
    finally:
        connector.close()


def load_sigmahq_rules() -> Any:
    from engine.sigma import load_rules

    return load_rules([str(p) for p in sigmahq_windows_dirs()])
