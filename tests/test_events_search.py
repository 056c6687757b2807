"""``wardwatch events search``: the query grammar (property tests), paging, and the same results on SQLite and
on the real Elasticsearch cluster (a differential test over the demo EHR history)."""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.search import (BoolOp, Not, QueryError, Term, compile_query, expression_text, parse_expression,
                           search_events)
from engine.store.base import SearchQuery
from tests.history_site import drop_site, ehr_site, json_lines, write_site  # noqa: F401
from tests.store_fixtures import covering_watermark, ehr_event, ids, store  # noqa: F401

# --- grammar --------------------------------------------------------------------------------------------

FIELDS = st.from_regex(r"[a-z][a-z0-9_]{0,5}(\.[a-z][a-z0-9_]{0,5}){0,2}", fullmatch=True)
VALUES = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)
TERMS = st.builds(Term, FIELDS, VALUES)


def _trees(children: Any) -> Any:
    return st.one_of(st.builds(Not, children),
                     st.builds(BoolOp, st.sampled_from(["and", "or"]),
                               st.lists(children, min_size=2, max_size=3).map(tuple)))


EXPRS = st.recursive(TERMS, _trees, max_leaves=6)


def _normal(expr: Any) -> Any:
    """Flatten nested same-operator groups (a AND (b AND c) == a AND b AND c): the parser makes one group."""
    if isinstance(expr, Term):
        return expr
    if isinstance(expr, Not):
        return Not(_normal(expr.child))
    flat: list[Any] = []
    for child in (_normal(c) for c in expr.children):
        flat.extend(child.children if isinstance(child, BoolOp) and child.op == expr.op else [child])
    return BoolOp(expr.op, tuple(flat))


@given(EXPRS)
def test_expression_text_parses_back_to_the_same_tree(expr):
    assert _normal(parse_expression(expression_text(expr))) == _normal(expr)


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=40),
                 st.lists(st.sampled_from(["a", "b.c", "|", "|contains", "|re", "|all", ":", "*", "{", "}",
                                           "[", "]", " ", "x", "NOT ", "(", ")", '"', "\n", "condition:"]),
                          max_size=12).map("".join)))
def test_any_text_is_a_query_or_one_query_error(text):
    try:
        compile_query(text)
    except QueryError as exc:
        assert str(exc).startswith("QUERY: ") and "\n" not in str(exc)


@given(st.lists(st.sampled_from(["a:1", "b:x*", "NOT", "AND", "OR", "(", ")", 'c:"q r"', "d:"]), max_size=8))
def test_token_soup_never_crashes_the_compiler(tokens):
    try:
        compile_query(" ".join(tokens))
    except QueryError:
        pass


def test_precedence_not_and_or():
    assert parse_expression("a:1 OR b:2 AND NOT c:3") == BoolOp(
        "or", (Term("a", "1"), BoolOp("and", (Term("b", "2"), Not(Term("c", "3"))))))
    assert parse_expression("a:1 b:2") == parse_expression("a:1 and b:2")


def test_matching_is_the_rule_engines():
    query = compile_query('user.name:mk*er AND NOT ehr.action:R AND source.ip:"10.0.*"')
    assert query.matches({"user.name": "MKeller", "ehr.action": "C", "source.ip": "10.0.0.1"})
    assert not query.matches({"user.name": "mkeller", "ehr.action": "r", "source.ip": "10.0.0.1"})
    assert query.fields == {"user.name", "ehr.action", "source.ip"}
    inline = compile_query("selection: {user.name: bob}\nfilter: {event.action: read}\ncondition: selection and not filter")
    assert inline.matches({"user.name": "bob", "event.action": "write"})
    assert compile_query("{user.name: [bob, alice]}").matches({"user.name": "Alice"})


# --- paging over a real store ------------------------------------------------------------------------


class _Counting:
    """A store whose searches count the events they hand out (to see that a search streams)."""

    def __init__(self, inner: Any):
        self.inner, self.handed = inner, 0

    def search(self, query: SearchQuery) -> Iterator[dict]:
        for event in self.inner.search(query):
            self.handed += 1
            yield event


def test_pages_resume_after_equal_timestamps(store):
    same = "2026-11-02T09:00:00.000Z"
    events = [ehr_event(n, at=same, user="ann" if n % 2 else "bob") for n in range(60)]
    store.write(events)
    covering_watermark(store, ids(events))
    expected = sorted(e["event.id"] for e in events if e["user.name"] == "ann")
    for page_size in (1, 4, 500):
        found = [e["event.id"] for e in search_events(store, "user.name:ann", None, None, page_size=page_size)]
        assert found == expected


def test_a_search_streams_page_by_page(store):
    events = [ehr_event(n) for n in range(300)]
    store.write(events)
    covering_watermark(store, ids(events))
    counting = _Counting(store)
    first = list(islice(search_events(counting, "user.name:jdoe", None, None, page_size=5), 5))  # type: ignore[arg-type]
    assert len(first) == 5 and counting.handed <= 5


# --- the CLI on both stores: the same results --------------------------------------------------------------

QUERIES = [
    "user.name|contains:kell AND ehr.action:R",
    "ehr.break_the_glass:true",
    "user.name:mkeller AND ehr.action:R",
    "user.name:j* AND NOT event.action:read",
    "ehr.patient.id:P1020*",
    "{event.action: [create, update]}",
    "selection: {user.name: tbauer}\nfilter: {ehr.action: R}\ncondition: selection and not filter",
]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    sites = {}
    try:
        for kind in ("sqlite", "elasticsearch"):
            site = write_site(tmp_path_factory.mktemp(kind), kind)
            sites[kind] = site
            site.ingest_ehr()
        yield sites
    finally:
        for site in sites.values():
            drop_site(site)


def _search(site, capsys, *argv: str) -> list[dict]:
    capsys.readouterr()
    assert site.cli("events", "search", *argv, "--format", "json") == 0
    return json_lines(capsys.readouterr().out)


def _stable(event: dict) -> dict:
    """The event without its ingest time (each store stamps its own write)."""
    return {k: v for k, v in event.items() if k != "event.ingested"}


@pytest.mark.parametrize("query", QUERIES)
def test_sqlite_and_elasticsearch_return_the_same_events(both, capsys, query):
    lite = _search(both["sqlite"], capsys, query, "--from", "2026-11-02", "--to", "2026-11-03")
    elastic = _search(both["elasticsearch"], capsys, query, "--from", "2026-11-02", "--to", "2026-11-03")
    assert lite and [_stable(e) for e in lite] == [_stable(e) for e in elastic]
    assert all("2026-11-02" <= e["@timestamp"] < "2026-11-03" for e in lite)
    assert [(e["@timestamp"], e["event.id"]) for e in lite] == sorted((e["@timestamp"], e["event.id"]) for e in lite)


class _CountingStore(_Counting):
    """The counting store with what the search asks an Elasticsearch store for its narrowing query."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_elasticsearch_narrows_on_the_cluster(both):
    """On ES the query is pushed down: the cluster hands over only candidates, not the whole range."""
    for kind, expect_all in (("sqlite", True), ("elasticsearch", False)):
        store = both[kind].open_store()
        try:
            counting = _CountingStore(store)
            found = list(search_events(counting, "ehr.break_the_glass:true", None, None))  # type: ignore[arg-type]
        finally:
            store.close()
        assert len(found) == 1
        assert (counting.handed > 1000) if expect_all else (counting.handed == 1), (kind, counting.handed)


def test_break_the_glass_is_found_with_its_fields(ehr_site, capsys):
    found = _search(ehr_site, capsys, "ehr.break_the_glass:true", "--fields", "user.name,ehr.purpose_of_use")
    assert len(found) == 1
    assert set(found[0]) == {"@timestamp", "event.id", "event.dataset", "user.name", "ehr.purpose_of_use"}
    assert found[0]["user.name"] == "tbauer" and "BTG" in found[0]["ehr.purpose_of_use"]


def test_limit_and_table(ehr_site, capsys):
    assert len(_search(ehr_site, capsys, "user.name:mkeller", "--limit", "7")) == 7
    assert ehr_site.cli("events", "search", "user.name:mkeller", "--limit", "2", "--fields", "user.name") == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "user.name" and lines[1:] == ["mkeller", "mkeller"] and err == "(2 event(s))\n"


@pytest.mark.parametrize("argv,message", [
    (["user.name:(bob"], "error: QUERY: cannot parse at column 1 (near 'user.name:(bob')"),
    (["selection: {user.name: bob}\ncondition: selektion"], "error: QUERY: "),
    (["user.name:bob", "--to", "tomorrow"], "error: --to: not a time: 'tomorrow'"),
    (["user.name:bob", "--fields", ","], "error: --fields: no field names given"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, message):
    site = write_site(tmp_path, "sqlite")
    assert site.cli("events", "search", *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
