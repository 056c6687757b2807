"""``wardwatch events search``: stored events that match a query, paged and streamed, the same on every store.

A query is one of two things, both turned into a Sigma detection and matched by the rule engine's own
compiler (so a search means exactly what the same selection means in a rule: case-insensitive, ``*`` and
``?`` wildcards, lists, modifiers):

* **inline Sigma detection YAML**: ``{selection: {user.name: bob}, condition: selection}``, or just the
  selection mapping ``{user.name: bob, event.action: read}`` (then ``condition: selection`` is implied);
* **a field:value expression** (grammar below), e.g. ``user.name:bob AND NOT event.action:read*``.

Expression grammar (parsed with pyparsing, which pySigma already depends on)::

    query   := or
    or      := and ("OR" and)*
    and     := not ("AND"? not)*          -- two terms side by side mean AND
    not     := "NOT" not | "(" query ")" | term
    term    := FIELD ":" VALUE
    FIELD   := letters, digits and "._-@|" (a dotted ECS name such as ehr.patient.id, with Sigma
               modifiers if wanted: user.name|contains, event.code|gte)
    VALUE   := a bare word (no blanks, parentheses or quotes) | "a quoted string" (\\" and \\\\ inside)

``AND``/``OR``/``NOT`` are case-insensitive; NOT binds tighter than AND, AND tighter than OR. A value is a
Sigma string: ``*`` matches any run of characters, ``?`` one character, ``\\*`` a literal star.

Why the store does not decide: it is asked for the time range, the datasets (``--dataset``) and, on
Elasticsearch, the detection as a Lucene query that returns a superset of the matches (``store_prefilter``,
the same pySigma conversion rules are pushed down with); the compiled detection decides each event in the
engine, so SQLite and Elasticsearch return the same events in the same ``(@timestamp, event.id)`` order. Results come in pages of ``page_size`` matches, each page a new
store search resumed after the last event returned (a keyset), so memory is bounded by the page and a
caller (the HTTP API) can resume a search from the ``after`` key of its last page.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator, Mapping, Sequence

import yaml

from engine.errors import UsageError
from engine.events import DATASET, EVENT_ID, TIMESTAMP
from engine.store.base import SearchQuery, Store


class QueryError(UsageError):
    """The query is neither a valid Sigma detection nor a valid field:value expression; says where."""


# --- the expression grammar -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Term:
    field: str
    value: str


@dataclass(frozen=True)
class Not:
    child: "Expr"


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    children: tuple["Expr", ...]


Expr = Term | Not | BoolOp


@lru_cache(maxsize=1)
def _grammar() -> Any:
    import pyparsing as pp

    field = pp.Word(pp.alphanums + "._-@|")
    quoted = pp.QuotedString('"', esc_char="\\", unquote_results=True)
    keyword = pp.CaselessKeyword("AND") | pp.CaselessKeyword("OR") | pp.CaselessKeyword("NOT")
    bare = ~keyword + pp.Regex(r'[^\s()"]+')
    term = (field + pp.Suppress(":") + (quoted | bare)).set_parse_action(lambda t: Term(t[0], t[1]))
    and_op = pp.Optional(pp.CaselessKeyword("AND"))

    def unary(tokens: Any) -> Expr:
        return Not(tokens[0][1])

    def binary(op: str) -> Any:
        def action(tokens: Any) -> Expr:
            parts = [t for t in tokens[0] if isinstance(t, (Term, Not, BoolOp))]
            return BoolOp(op, tuple(parts))
        return action

    return pp.infix_notation(term, [
        (pp.CaselessKeyword("NOT"), 1, pp.OpAssoc.RIGHT, unary),
        (and_op, 2, pp.OpAssoc.LEFT, binary("and")),
        (pp.CaselessKeyword("OR"), 2, pp.OpAssoc.LEFT, binary("or")),
    ])


def parse_expression(text: str) -> Expr:
    """The expression's tree, or QueryError naming the column where parsing stopped."""
    import pyparsing as pp

    try:
        result = _grammar().parse_string(text, parse_all=True)
    except pp.ParseBaseException as exc:
        near = text[exc.loc:exc.loc + 20] or "the end"
        raise QueryError(f"QUERY: cannot parse at column {exc.col} (near {near!r}): expected field:value "
                         "terms joined by AND, OR, NOT and parentheses, or a Sigma detection") from None
    return result[0]


def expression_text(expr: Expr) -> str:
    """The expression back as text (fully parenthesised): parse(text(e)) == e, which the tests check."""
    if isinstance(expr, Term):
        value = expr.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{expr.field}:"{value}"'
    if isinstance(expr, Not):
        return f"NOT ({expression_text(expr.child)})"
    return "(" + f" {expr.op.upper()} ".join(expression_text(c) for c in expr.children) + ")"


def expression_detection(expr: Expr) -> dict[str, Any]:
    """A Sigma detection for the expression: one named selection per term, the tree as the condition."""
    detection: dict[str, Any] = {}

    def walk(node: Expr) -> str:
        if isinstance(node, Term):
            name = f"term{len(detection) + 1}"
            detection[name] = {node.field: node.value}
            return name
        if isinstance(node, Not):
            return f"not ({walk(node.child)})"
        return "(" + f" {node.op} ".join(walk(c) for c in node.children) + ")"

    condition = walk(expr)
    detection["condition"] = condition
    return detection


# --- query -> detection -> predicate ------------------------------------------------------------------

def query_detection(text: str) -> dict[str, Any]:
    """QUERY as a Sigma detection mapping: inline YAML if it is a mapping, else a field:value expression."""
    if not text.strip():
        raise QueryError("QUERY: empty (give a field:value expression or a Sigma detection)")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        document = None
    if isinstance(document, Mapping) and not _looks_like_one_term(text, document):
        detection = {str(k): v for k, v in document.items()}
        if "condition" not in detection:
            return {"selection": detection, "condition": "selection"}
        return detection
    return expression_detection(parse_expression(text))


def _looks_like_one_term(text: str, document: Mapping[str, Any]) -> bool:
    """``user.name:bob`` is also YAML (``{"user.name:bob": None}``) only without a blank after the colon;
    YAML ``user.name: bob`` has one. A single key whose value is None and contains ':' is an expression."""
    return len(document) == 1 and next(iter(document.values())) is None and ":" in str(next(iter(document)))


@dataclass(frozen=True)
class CompiledQuery:
    """A query ready to run: the predicate and the fields it reads (None: every field, keywords)."""

    detection: dict[str, Any]
    fields: frozenset[str] | None
    matches: Any
    #: the detection as pySigma parsed it (for the Elasticsearch narrowing query)
    sigma: Any = None


def compile_query(text: str) -> CompiledQuery:
    """QUERY compiled by the rule engine's detection compiler; QueryError for anything it cannot take."""
    return _compile(query_detection(text))


def _compile(detection: dict[str, Any]) -> CompiledQuery:
    from sigma.exceptions import SigmaError
    from sigma.rule import SigmaDetections

    from engine.sigma.compiler import CompileError, DetectionCompiler

    try:
        parsed = SigmaDetections.from_dict(detection)
        compiled = DetectionCompiler(parsed, {}).compile()
    except CompileError as exc:
        raise QueryError(f"QUERY: {_one_line(exc)}") from None
    except SigmaError as exc:
        raise QueryError(f"QUERY: not a valid Sigma detection: {_one_line(exc)}") from None
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # pySigma on odd shapes (a list as a map)
        raise QueryError(f"QUERY: not a valid Sigma detection: {_one_line(exc)}") from None
    fields = None if compiled.reads_every_field else frozenset(compiled.fields)
    return CompiledQuery(detection, fields, compiled.fn, parsed)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def store_prefilter(store: Store, query: CompiledQuery, datasets: Sequence[str] | None = None) -> Any:
    """The store-side narrowing query for ``query``: on Elasticsearch, the detection as Lucene (pySigma's
    backend, as rules are pushed down: ``engine.sigma.convert_rule``), so the cluster returns candidates
    instead of every event of the range; None elsewhere, or whenever that could miss a match (keywords,
    unindexed fields, ``|re``/``|cidr``, a conversion the backend refuses). Only narrows: the compiled
    query still decides each event, so the results stay those of SQLite."""
    if getattr(store, "kind", "") != "elasticsearch" or query.fields is None:
        return None
    if query.fields & getattr(store, "unindexed_fields", frozenset()):
        return None
    import yaml
    from sigma.rule import SigmaRule

    from engine.sigma import convert_rule
    from engine.sigma.model import CompiledRule

    scope = list(datasets) if datasets else store.event_datasets()
    if not scope:
        return None
    source = yaml.safe_dump({"title": "events search", "id": "00000000-0000-4000-8000-000000005ea5",
                             "logsource": {"product": "wardwatch-search"}, "detection": query.detection},
                            sort_keys=False)
    rule = CompiledRule(id="events-search", name=None, title="events search", level="informational",
                        status=None, description="", tags=[], path="<QUERY>", datasets=tuple(scope),
                        fields=query.fields, sigma=SigmaRule.from_yaml(source), source=source)
    return convert_rule(rule, "elasticsearch").query


def sigma_literal(value: str) -> str:
    """``value`` as a Sigma string that matches only itself (its wildcards and backslashes escaped)."""
    return value.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")


def compile_detection(detection: dict[str, Any]) -> CompiledQuery:
    """A detection mapping built by code (reports) compiled like a typed query."""
    return _compile(detection)


# --- running it -----------------------------------------------------------------------------------------

ALWAYS = (TIMESTAMP, EVENT_ID, DATASET)


def _project(event: Mapping[str, Any], fields: Sequence[str] | None) -> dict[str, Any]:
    if fields is None:
        return dict(event)
    return {f: event[f] for f in (*ALWAYS, *fields) if f in event}


def search_page(store: Store, query: CompiledQuery, start: str | None, end: str | None, *,
                fields: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
                page_size: int = 500, after: tuple[str, str] | None = None, prefilter: Any = None
                ) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
    """One page of at most ``page_size`` matches after the ``after`` key ``(@timestamp, event.id)``, and the
    key to pass for the next page (None: this was the last page). ``prefilter`` is a store-side narrowing
    query (a superset of the matches, as :class:`SearchQuery` has it); the compiled query still decides."""
    read = None if query.fields is None or fields is None else sorted(query.fields | set(fields))
    lo = start if after is None or (start is not None and start > after[0]) else after[0]
    search = SearchQuery(datasets=datasets, start=lo, end=end, fields=read, prefilter=prefilter)
    page: list[dict[str, Any]] = []
    stream = store.search(search)
    try:
        for event in stream:
            if after is not None and (event[TIMESTAMP], event[EVENT_ID]) <= after:
                continue  # the keyset resumes at the last timestamp, inclusive: skip what was returned
            if query.matches(event):
                page.append(_project(event, fields))
                if len(page) == page_size:
                    last = (page[-1][TIMESTAMP], page[-1][EVENT_ID])
                    return page, last
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # an Elasticsearch stream holds a point in time until closed
    return page, None


def search_events(store: Store, query: str | CompiledQuery, start: str | None, end: str | None, *,
                  fields: Sequence[str] | None = None, page_size: int = 500,
                  datasets: Sequence[str] | None = None, prefilter: Any = None) -> Iterator[dict[str, Any]]:
    """Every stored event matching ``query`` with ``start <= @timestamp < end``, in (@timestamp, event.id)
    order, ``fields`` only (plus @timestamp, event.id, event.dataset) when given. Streams page by page."""
    if page_size < 1:
        raise UsageError("page size must be at least 1")
    compiled = compile_query(query) if isinstance(query, str) else query
    if prefilter is None:
        prefilter = store_prefilter(store, compiled, datasets)
    after: tuple[str, str] | None = None
    while True:
        page, after = search_page(store, compiled, start, end, fields=fields, datasets=datasets,
                                  page_size=page_size, after=after, prefilter=prefilter)
        yield from page
        if after is None:
            return
