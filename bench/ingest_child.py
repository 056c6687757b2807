"""One timed ingest by the checkout named on the command line, for ``bench_privacy_ingest.py --against``:

    PYTHON bench/ingest_child.py TREE CONFIG.yaml

Why a separate script, run by that checkout's own Python: an older checkout (the tree an issue started from)
cannot be imported beside this one, and its virtualenv's entry points name its own modules. So this file
uses only what every Wardwatch checkout has had (``engine.app.build_connector`` / ``build_enrichment``,
``engine.config.load_config``, ``engine.ingest.ingest_connector``, ``engine.store.open_store``), and ``TREE``
goes first on ``sys.path``. It prints one JSON line: the CPU seconds of the ingest alone (the lookups load
before the timer, as a service loads them once) and the events written.
"""

from __future__ import annotations

import gc
import inspect
import json
import sys
import time


def main(argv: list[str]) -> int:
    tree, config_path = argv
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
        # in-process on every tree: checkouts that know ingest workers are told not to use one
        extra = {"workers": 0} if "workers" in inspect.signature(ingest_connector).parameters else {}
        gc.collect()
        cpu = time.process_time()
        stats = ingest_connector(store, connector, chain, config["scheduler"]["batch_size"], **extra)
        cpu = time.process_time() - cpu
    finally:
        store.close()
    print(json.dumps({"cpu": cpu, "written": stats.written}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
