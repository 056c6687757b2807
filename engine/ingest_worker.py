"""Ingest with the parsing in a second process: a worker reads, maps, enriches and encodes; we store.

Why: on the embedded store a FHIR event costs ~35 µs of CPU from file to committed row, of which only
~12 µs is the SQLite insert (docs/benchmarks.md, "Embedded pipeline"). Reading, ``orjson.loads``, the FHIR
mapping, the enrichment and the row encoding are pure functions of the source and the cursor, so a forked
worker can do them for batch N+1 while this process inserts batch N. The machine class has 2 cores.

Exactness and kill -9 safety come from keeping the commit exactly where it was:

* The worker reads the same batches, from the same committed cursor, as the in-process loop would, and
  sends each as one message (encoded rows, dead letters, the cursor after the batch, ``exhausted``).
* This process commits each batch with its cursor in one store transaction, in order, through the same
  ``commit_batch`` as the in-process loop. The worker commits nothing, so a crash of either process
  leaves the store at a batch boundary and the next run resumes from the committed cursor; batches the
  worker had prepared but we had not stored are simply read again.
* The pipe holds at most one message: the worker prepares at most one batch ahead (memory stays bounded
  by two batches), and when this process dies the worker's next send fails and it exits.

Used only where all of it is true (``worker_refusal``): the store encodes rows apart from inserting them
(``write_rows``: SQLite), the connector says its ``read`` depends only on the cursor and the source
(``Connector.reads_in_worker``, and no ``acknowledge``), every enricher says it may run in a copy of
itself (``runs_in_worker``: its state is a cache at most), no per-batch baselines step (it reads the
store), and ``fork`` is available. ``auto`` also needs 2+ CPUs and a single-threaded process (forking a
process with other threads can copy a lock another thread holds).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import threading
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from typing import Any, Callable

from connectors.base import Connector, ConnectorError
from engine.enrich import EnrichmentChain
from engine.events import format_timestamp
from engine.gc_pause import cyclic_gc_paused
from engine.store.base import CursorUpdate, DeadLetter, Store


@dataclass
class PreparedBatch:
    """What the worker sends per batch: ``Batch`` with its events already encoded as store rows.

    ``rows`` hold each document's length instead of the document: the documents (~2 KB each, most of the
    bytes) follow the pickled message raw, written with one ``writev`` and read into one buffer, so they are
    neither pickled nor unpickled (measured: ~7 µs of the ~45 µs per event the worker had, pickle + pipe)."""

    rows: list[Any]
    dead_letters: list[DeadLetter] = field(default_factory=list)
    cursor: dict[str, Any] | None = None
    exhausted: bool = True
    unavailable: str | None = None


@dataclass
class WorkerFailed:
    """The exception the worker's read, mapping, enrichment or encoding raised (re-raised here)."""

    error: BaseException


_IOV_MAX = 1024  # buffers per writev (Linux's IOV_MAX)


class IngestWorkerError(ConnectorError):
    """The worker process ended without sending its batch (killed, out of memory)."""


def worker_refusal(store: Store, connector: Connector, enrichment: EnrichmentChain, auto: bool) -> str | None:
    """Why this ingest must stay in one process, or None when the worker may do the parsing."""
    if not callable(getattr(store, "write_rows", None)):
        return f"the {store.kind} store has no write_rows"
    if not vars(type(connector)).get("reads_in_worker") or callable(getattr(connector, "acknowledge", None)):
        return f"connector type {connector.type_name!r} does not read in a worker"
    if enrichment.baselines is not None:
        return "the baselines step reads the store per batch"
    for step in enrichment.enrichers:
        if not getattr(step, "runs_in_worker", False):
            return f"enricher {step.name!r} does not run in a worker"
    if "fork" not in multiprocessing.get_all_start_methods():
        return "no fork on this platform"
    if auto and (os.cpu_count() or 1) < 2:
        return "one CPU"
    if auto and threading.active_count() > 1:
        return "other threads are running"
    return None


def run_worker_pipeline(store: Store, connector: Connector, enrichment: EnrichmentChain, batch_size: int,
                        cursor: Any, stats: Any, max_batches: int | None,
                        commit: Callable[..., None], on_batch: Callable[[Any], Any] | None) -> None:
    """Store what a forked worker prepares, batch by batch, until it is exhausted or ``max_batches``.

    ``commit`` is ``engine.ingest.commit_batch`` (passed in: this module must not import its caller)."""
    from engine.store.sqlite import encode_rows

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    try:  # a 1 MiB pipe: a 10 MB batch crosses in ~10 wake-ups instead of ~160
        import fcntl

        fcntl.fcntl(send.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:
        pass  # pipe-max-size lower here: the default works, a little slower
    worker = context.Process(target=_work, args=(send, receive, connector, enrichment, batch_size, cursor,
                                                 encode_rows),
                             name=f"wardwatch-ingest-{connector.name}", daemon=True)
    worker.start()
    send.close()  # ours: so the worker's exit shows here as EOF
    finished = False
    try:
        while max_batches is None or stats.batches < max_batches:
            try:
                data = receive.recv_bytes()
            except EOFError:
                raise IngestWorkerError(f"connector {connector.name!r}: the ingest worker process ended "
                                        f"(exit code {worker.join(5) or worker.exitcode})") from None
            message = pickle.loads(data)
            del data
            if isinstance(message, WorkerFailed):
                finished = True
                raise message.error
            with cyclic_gc_paused():
                rows = _with_documents(message.rows, receive, connector.name)
                commit(store, connector.name, message, len(rows), lambda update: _write(store, rows, update),
                       cursor, stats)
                read_cursor, exhausted = message.cursor, message.exhausted
                del rows, message  # while the collector is off (engine/ingest.py says why)
            if read_cursor is not None:
                cursor = read_cursor
            if on_batch is not None:
                on_batch(stats)
            if exhausted:
                finished = True
                break
    finally:
        receive.close()
        if not finished:
            worker.kill()  # stopped early (max_batches, an error here): what it prepared is read again
        worker.join()


def _with_documents(rows: list[Any], receive: Connection, name: str) -> list[Any]:
    """The rows, each with its document: a view into one buffer read from the pipe (SQLite binds any
    buffer as a BLOB, so the documents are never copied into objects of their own here)."""
    buffer = bytearray(sum(row[4] for row in rows))
    view, fd, at = memoryview(buffer), receive.fileno(), 0
    while at < len(buffer):
        got = os.readv(fd, [view[at:]])
        if not got:
            raise IngestWorkerError(f"connector {name!r}: the ingest worker process ended mid-batch")
        at += got
    out, at = [], 0
    for eid, ts, dataset, ingested, size in rows:
        out.append((eid, ts, dataset, ingested, view[at:at + size]))
        at += size
    return out


def _send_documents(fd: int, documents: list[bytes]) -> None:
    """Write every document to the pipe, in order, without joining them first (``writev``)."""
    pending = documents
    while pending:
        written = os.writev(fd, pending[:_IOV_MAX])
        index = 0
        while index < len(pending) and written >= len(pending[index]):
            written -= len(pending[index])
            index += 1
        pending = pending[index:]
        if written:  # a partial write inside one document (a signal): send the rest of it first
            pending[0] = memoryview(pending[0])[written:]


def _write(store: Any, rows: list[Any], update: CursorUpdate | None) -> tuple[int, int]:
    result = store.write_rows(rows, update)
    return result.written, result.duplicates


def _work(send: Connection, receive: Connection, connector: Connector, enrichment: EnrichmentChain,
          batch_size: int, cursor: Any, encode: Callable[[list[Any], str], list[Any]]) -> None:
    """The worker process (forked): read -> enrich -> encode -> send, from ``cursor`` until exhausted."""
    receive.close()
    gc.freeze()  # the inherited heap (rules, the parent's state) is never garbage here: never walk it
    while True:
        with cyclic_gc_paused():
            try:
                batch = connector.read(cursor, batch_size)
                events = enrichment.enrich_all(batch.events)
                rows = encode(events, format_timestamp(datetime.now(timezone.utc)))
                del events
                documents = [row[4] for row in rows]
                message: PreparedBatch | WorkerFailed = PreparedBatch(
                    [(eid, ts, dataset, ingested, len(doc)) for eid, ts, dataset, ingested, doc in rows],
                    batch.dead_letters, batch.cursor, batch.exhausted, batch.unavailable)
                del rows
            except Exception as exc:  # noqa: BLE001 - re-raised in the main process, where it belongs
                message, documents = WorkerFailed(_portable(exc)), []
            data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            send.send_bytes(data)
            _send_documents(send.fileno(), documents)
        except OSError:
            return  # the main process is gone (killed or stopped early): nothing here is committed
        if not isinstance(message, PreparedBatch) or message.exhausted:
            return
        if message.cursor is not None:
            cursor = message.cursor
        del data, message, batch, documents


def _portable(exc: Exception) -> BaseException:
    """``exc`` if it survives pickling (with the worker's traceback as a note), else a ConnectorError
    naming it: an exception class with a custom ``__init__`` may not unpickle."""
    exc.add_note("in the ingest worker process:\n" + "".join(traceback.format_exception(exc)))
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any failure to round-trip
        return ConnectorError(f"{type(exc).__name__}: {exc}")
