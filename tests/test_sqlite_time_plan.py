"""The SQLite time plan reads documents with their keys, as one stream or merged per dataset: same events.

The time plan walks an index in (ts, id) order and each page carries its documents; a query naming every
dataset the store holds reads one stream over ``events_ts``, other multi-dataset queries merge one stream
per dataset. Whatever the plan, paging and projection, a search must return exactly the stored events of
the query's datasets, time range and ingest range in (@timestamp, event.id) order, as the seq plan does.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.store.base import SearchQuery
from engine.store.sqlite import SqliteStore
from tests.store_fixtures import ehr_event, ts

DATASETS = ["ehr.audit", "vpn.session", "ad.security"]


def _expected(events: list[dict], query: SearchQuery, after: int, upto: int | None) -> list[str]:
    chosen = [e for n, e in enumerate(events, start=1)
              if (query.datasets is None or e["event.dataset"] in query.datasets)
              and (query.start is None or e["@timestamp"] >= query.start)
              and (query.end is None or e["@timestamp"] < query.end)
              and n > after and (upto is None or n <= upto)]
    return [e["event.id"] for e in sorted(chosen, key=lambda e: (e["@timestamp"], e["event.id"]))]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 8)), min_size=3, max_size=40),
    wanted=st.one_of(st.none(), st.sets(st.sampled_from(DATASETS), min_size=1)),
    page=st.integers(1, 9),
    chunk=st.integers(1, 9),
    after=st.sampled_from([0, 0, 0, 1, 4]),
    upto=st.one_of(st.none(), st.integers(3, 45)),
    start=st.one_of(st.none(), st.none(), st.integers(0, 4)),
    fields=st.one_of(st.none(), st.just(["user.name"])),
    at_least=st.booleans(),
)
@example(kinds=[(0, 1), (1, 2), (2, 3), (0, 2)], wanted={"ehr.audit", "vpn.session"}, page=2, chunk=1, after=0,
         upto=None, start=None, fields=None, at_least=True)
def test_time_plan_returns_what_the_seq_plan_and_a_sort_return(kinds, wanted, page, chunk, after, upto, start,
                                                              fields, at_least) -> None:
    events = [ehr_event(i, at=ts(minute), dataset=DATASETS[kind]) for i, (kind, minute) in enumerate(kinds)]
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "t.db", page_size=page, doc_chunk=chunk)
        try:
            store.write(events)
            query = SearchQuery(datasets=None if wanted is None else sorted(wanted), fields=fields,
                                fields_at_least=at_least, start=None if start is None else ts(start),
                                ingested_after=str(after) if after else None,
                                ingested_upto=None if upto is None else str(upto))
            store._choose_seq_plan = lambda *a: False  # type: ignore[method-assign]
            by_time = list(store.search(query))
            store._choose_seq_plan = lambda *a: True  # type: ignore[method-assign]
            by_seq = list(store.search(query)) if after or upto is not None else by_time
        finally:
            store.close()
    assert [e["event.id"] for e in by_time] == _expected(events, query, after, upto)
    assert by_time == by_seq
    if fields is not None and not at_least:
        assert all(set(e) <= {"user.name", "@timestamp", "event.id", "event.dataset"} for e in by_time)


def test_a_query_of_every_stored_dataset_reads_one_stream_and_others_merge(tmp_path: Path) -> None:
    """Which plan serves which query (the single stream must not serve a query that leaves a dataset out)."""
    store = SqliteStore(tmp_path / "t.db", page_size=2, doc_chunk=2)
    events = [ehr_event(i, at=ts(i % 5), dataset=DATASETS[i % 3]) for i in range(30)]
    store.write(events)
    streams: list[str | None] = []
    pages = store._pages

    def spy(dataset, datasets, *args, **kwargs):  # type: ignore[no-untyped-def]
        streams.append(dataset if datasets is None else ",".join(datasets))
        return pages(dataset, datasets, *args, **kwargs)

    store._pages = spy  # type: ignore[method-assign]
    try:
        every = list(store.search(SearchQuery(datasets=DATASETS)))
        assert streams == [",".join(sorted(DATASETS))]
        streams.clear()
        two = list(store.search(SearchQuery(datasets=DATASETS[:2])))
        assert sorted(streams) == sorted(DATASETS[:2])
    finally:
        store.close()
    order = sorted(events, key=lambda e: (e["@timestamp"], e["event.id"]))
    assert [e["event.id"] for e in every] == [e["event.id"] for e in order]
    assert [e["event.id"] for e in two] == [e["event.id"] for e in order if e["event.dataset"] in DATASETS[:2]]
