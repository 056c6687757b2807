"""One timed ingest by the checkout named on the command line, for ``bench_privacy_ingest.py --against``:

    PYTHON bench/ingest_child.py TREE CONFIG.yaml [--stages] [--max-batches N]

Why a separate script, run by that checkout's own Python: an older checkout (the tree an issue started from)
cannot be imported beside this one, and its virtualenv's entry points name its own modules. So this file
uses only what every Wardwatch checkout has had (``engine.app.build_connector`` / ``build_enrichment``,
``engine.config.load_config``, ``engine.ingest.ingest_connector``, ``engine.store.open_store``), and ``TREE``
goes first on ``sys.path``. It prints one JSON line: the CPU seconds of the ingest alone (the lookups load
before the timer, as a service loads them once) and the events written; with ``--stages``, also the CPU
seconds of each stage (``time_stages``).

``WARDWATCH_BENCH_HANDSHAKE=DIR`` (``bench_privacy_ingest.py --instructions``): once set up, the child
creates ``DIR/ready`` and waits for ``DIR/go`` before it ingests, so that the parent can switch
callgrind's instrumentation on for the ingest alone (the setup's instructions are not counted).
"""

from __future__ import annotations

import gc
import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def time_stages(connector: Any, chain: Any, store: Any) -> dict[str, float]:
    """CPU timers around the ingest's stages, on these objects only; returns the seconds they fill in.

    Why per batch call and not a profiler: a profiler's per-call cost lands on the per-event code and
    shifts the very ratios being compared, while these wrap calls made once per batch (32 in the bench).
    Stages a checkout does not have are left out (the tree issue 11 started from enriched event by event
    and had no ``write_rows``): ``enrichment`` is the whole chain in every tree, the per-step and the
    store's ``encode`` / ``insert`` entries are parts of ``enrichment`` and ``store write`` where they exist.
    """
    spent: dict[str, float] = {}

    def timed(owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name, None)
        if not callable(inner):
            return

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - start

        setattr(owner, name, wrapper)

    timed(connector, "read", "read")
    timed(chain, "enrich_all", "enrichment")
    for step in chain.enrichers:  # a chain that enriches event by event never calls these: no entry
        timed(step, "enrich_many", f"  {type(step).__name__}")
    if getattr(chain, "baselines", None) is not None:
        timed(chain.baselines, "apply", "baselines")
    timed(store, "write", "store write")
    if callable(getattr(store, "write_rows", None)):
        timed(sys.modules[type(store).__module__], "encode_rows", "  encode")
        timed(store, "write_rows", "  insert")
    return spent


def main(argv: list[str]) -> int:
    tree, config_path, *flags = argv
    sys.path.insert(0, tree)
    from engine.app import build_connector, build_enrichment
    from engine.config import load_config
    from engine.ingest import ingest_connector
    from engine.store import open_store

    config = load_config(config_path)
    store = open_store("sqlite", path=config["store"]["sqlite"]["path"])
    try:
        connector = build_connector(config, config["connectors"][0])
        chain = build_enrichment(config)
        stages = time_stages(connector, chain, store) if "--stages" in flags else None
        # in-process on every tree: checkouts that know ingest workers are told not to use one
        extra = {"workers": 0} if "workers" in inspect.signature(ingest_connector).parameters else {}
        if "--max-batches" in flags:
            extra["max_batches"] = int(flags[flags.index("--max-batches") + 1])
        gc.collect()
        handshake = os.environ.get("WARDWATCH_BENCH_HANDSHAKE")
        if handshake:
            wait_for_go(Path(handshake))
        cpu = time.process_time()
        stats = ingest_connector(store, connector, chain, config["scheduler"]["batch_size"], **extra)
        cpu = time.process_time() - cpu
    finally:
        store.close()
    print(json.dumps({"cpu": cpu, "written": stats.written} | ({"stages": stages} if stages is not None else {})))
    return 0


def wait_for_go(directory: Path) -> None:
    """Tell the parent the setup is done (``ready``) and wait until it says ``go``."""
    (directory / "ready").touch()
    while not (directory / "go").exists():
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
