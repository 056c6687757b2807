"""Store back-ends behind one contract (``engine.store.base.Store``).

``open_store`` imports the chosen back-end lazily: the embedded SQLite store must not pull in the
Elasticsearch client, and a deployment without Elasticsearch must still start.
"""

from __future__ import annotations

from typing import Any

from engine.store.base import Store

STORE_KINDS = ("sqlite", "elasticsearch")


def open_store(kind: str, **options: Any) -> Store:
    """Open a store by kind: ``"sqlite"`` (``path=``, ``synchronous=``, …) or ``"elasticsearch"``
    (options passed to ``ElasticsearchStore``, e.g. ``hosts=``, ``index_prefix=``)."""
    if kind == "sqlite":
        from engine.store.sqlite import SqliteStore

        try:
            path = options.pop("path")
        except KeyError:
            raise TypeError('open_store("sqlite") needs path=') from None
        return SqliteStore(path, **options)
    if kind == "elasticsearch":
        from engine.store.elasticsearch import ElasticsearchStore  # type: ignore[import-not-found]

        return ElasticsearchStore(**options)
    raise ValueError(f"unknown store kind {kind!r}; expected one of {', '.join(STORE_KINDS)}")
