"""FHIR AuditEvent REST pull (R4 and R5): search ``AuditEvent`` by ``_lastUpdated`` and page through results.

The hard part is the cursor. A timestamp alone misses or doubles events because

* many AuditEvents share one ``lastUpdated`` (a batch commit), and a page boundary can split them;
* a resource can become visible *after* others with a later ``lastUpdated`` (long transactions, clustered
  servers with small clock skew) - a "late arrival".

So every new search asks for ``_lastUpdated=ge<high_water - overlap>`` and the cursor keeps the keys
(``id|versionId``) of every resource already delivered whose ``lastUpdated`` is inside that overlap. Ties and
late arrivals within the overlap are fetched again and the repeats dropped; anything new is delivered once.
Event ids come from the resource id (``connectors.fhir_mapping``), so even a repeat that slipped through
(a lost cursor) is a duplicate in the store, never a second copy. Details: docs/connectors/fhir-auditevent.md.

Cursor (JSON)::

    {"v": 1, "high_water_ms": 1767225600000,            # greatest lastUpdated delivered (ms)
     "seen": {"1767225599000": ["<key hash>", ...]},    # keys inside [high_water - overlap, high_water]
     "next": "https://.../fhir?_getpages=...",          # page to fetch next while a search is in progress
     "failures": 0}                                     # consecutive failed reads of that page
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, ClassVar, Literal, Mapping
from urllib.parse import urlencode, urlsplit

import httpx
import orjson

from connectors.base import Batch, Connector, ConnectorConfigError
from connectors.fhir_auth import (
    Auth,
    AuthError,
    AuthOptions,
    auth_from_options,
    build_ssl_context,
    check_credentials_transport,
    insecure_url,
)
from connectors.fhir_mapping import MappingError, auditevent_to_event
from engine.events import format_timestamp, from_timestamp_ms, timestamp_ms
from engine.plugins import InvalidOption
from engine.store.base import DeadLetter

log = logging.getLogger(__name__)

RETRYABLE = {408, 425, 429, 500, 502, 503, 504}
CURSOR_VERSION = 1


class PageError(Exception):
    """A page could not be fetched or read after all retries. ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, url: str, status: int, reason: str):
        super().__init__(f"{reason} (HTTP {status})" if status else reason)
        self.url, self.status, self.reason = url, status, reason


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3); None when absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _key(resource: Mapping[str, Any], raw: bytes) -> str:
    """Short, stable key of one resource version (hashing keeps the cursor small and free of ids)."""
    rid = resource.get("id")
    version = (resource.get("meta") or {}).get("versionId") if isinstance(resource.get("meta"), Mapping) else None
    basis = f"{rid}|{version or ''}".encode() if isinstance(rid, str) and rid else raw
    return hashlib.blake2b(basis, digest_size=9).hexdigest()


@dataclass(kw_only=True)
class FhirRestOptions(AuthOptions):
    """Options of ``fhir-auditevent`` (docs/connectors/fhir-auditevent.md)."""

    base_url: str
    page_size: int = 200
    overlap_seconds: float = 300.0
    cursor_param: Literal["_lastUpdated", "date"] = "_lastUpdated"
    sort: str | None = None
    start: str | datetime | None = None  # ISO instant: where a first run begins (None: everything)
    params: dict[str, Any] = field(default_factory=dict)
    max_retries: int = 4
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    max_retry_after_seconds: float = 120.0
    max_page_failures: int = 3
    next_link_same_origin: bool = True
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not self.base_url:
            raise InvalidOption("base_url", "required option is missing")
        for key in ("page_size", "max_page_failures"):
            if getattr(self, key) < 1:
                raise InvalidOption(key, "must be a positive integer")
        if self.auth != "none":
            for key in ("base_url", "token_url"):
                url = getattr(self, key)
                try:
                    if url:
                        check_credentials_transport(url, what=key, allow_insecure_http=self.allow_insecure_http)
                except AuthError as exc:
                    raise InvalidOption(key, str(exc)) from None


class FhirAuditEventRestConnector(Connector):
    """Pull AuditEvents from a FHIR R4/R5 server's REST API. See ``docs/connectors/fhir-auditevent.md``."""

    type_name: ClassVar[str] = "fhir-auditevent"
    summary: ClassVar[str] = "FHIR AuditEvent search over REST (R4/R5), _lastUpdated cursor with overlap"
    source_option: ClassVar[str] = "base_url"
    Options: ClassVar[type] = FhirRestOptions

    def __init__(self, name: str, options: Mapping[str, Any], *, sleep: Callable[[float], None] = time.sleep):
        super().__init__(name, options)
        opts: FhirRestOptions = self.settings
        self.base_url = opts.base_url.rstrip("/")
        self.page_size = opts.page_size
        self.overlap_ms = int(opts.overlap_seconds * 1000)
        self.cursor_param = opts.cursor_param
        self.sort = opts.sort or ("_lastUpdated" if self.cursor_param == "_lastUpdated" else "date")
        self.start = opts.start
        self.extra_params: dict[str, str] = {str(k): str(v) for k, v in opts.params.items()}
        self.max_retries = opts.max_retries
        self.backoff_base = opts.backoff_base_seconds
        self.backoff_max = opts.backoff_max_seconds
        self.max_retry_after = opts.max_retry_after_seconds
        self.max_page_failures = opts.max_page_failures
        self.same_origin_only = opts.next_link_same_origin
        self.allow_insecure_http = opts.allow_insecure_http
        self.sleep = sleep
        try:
            ssl_context = build_ssl_context(
                ca_file=opts.ca_certs, client_cert=opts.client_cert, client_key=opts.client_key,
                verify=opts.tls_verify,
            )
        except (OSError, ValueError) as exc:
            raise ConnectorConfigError(f"fhir-auditevent {name!r}: TLS setup failed: {exc}") from None
        # Redirects are never followed: a 3xx to http:// (or another host) must not receive the token.
        self.client = httpx.Client(
            verify=ssl_context, timeout=opts.timeout_seconds,
            headers={"Accept": "application/fhir+json", "User-Agent": "wardwatch"}, follow_redirects=False,
        )
        try:
            self.auth: Auth = auth_from_options(self.options, client=httpx.Client(verify=ssl_context, timeout=10.0))
        except AuthError as exc:
            raise ConnectorConfigError(f"fhir-auditevent {name!r}: {exc}") from None
        self._has_credentials = opts.auth != "none"
        self._origin = urlsplit(self.base_url)[:2]

    def close(self) -> None:
        self.client.close()

    # --- HTTP with retries ---------------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        """Full jitter (AWS architecture blog): spreads retries of many connectors after an outage."""
        return random.uniform(0, min(self.backoff_max, self.backoff_base * (2**attempt)))

    def _get_page(self, url: str) -> dict[str, Any]:
        """GET one Bundle page: retries transient failures and unreadable bodies, refreshes auth once on 401."""
        refreshed = False
        attempt = 0
        if self._has_credentials and not self.allow_insecure_http and insecure_url(url):
            # A next link (next_link_same_origin: false) may point at plain http: never send the token there.
            raise PageError(url, 0, "not requested: plain http:// beyond loopback would expose the credentials "
                                    "(allow_insecure_http is false)")
        while True:
            status, reason, wait = 0, "", None
            try:
                resp = self.client.get(url, headers=self.auth.headers())
            except AuthError as exc:
                status, reason = 0, f"authentication failed: {exc}"
            except httpx.HTTPError as exc:
                status, reason = 0, f"transport error: {type(exc).__name__}"
            else:
                status = resp.status_code
                if status == 401 and not refreshed and self.auth.on_unauthorized():
                    refreshed = True
                    continue  # a refresh is not a retry: an expired token is normal
                if status == 200:
                    try:
                        body = orjson.loads(resp.content)
                    except orjson.JSONDecodeError as exc:
                        reason = f"malformed JSON: {exc}"
                    else:
                        if isinstance(body, dict) and body.get("resourceType") == "Bundle":
                            return body
                        reason = f"not a Bundle: resourceType {body.get('resourceType') if isinstance(body, dict) else type(body).__name__!r}"
                elif status in RETRYABLE:
                    reason = f"server answered {status}"
                    if status in (429, 503):
                        wait = retry_after_seconds(resp.headers.get("Retry-After"))
                else:
                    raise PageError(url, status, f"server answered {status}{_outcome_text(resp)}")
            if attempt >= self.max_retries:
                raise PageError(url, status, reason or "failed")
            delay = self._backoff(attempt) if wait is None else min(wait, self.max_retry_after) + random.uniform(0, 0.1)
            log.info("fhir-auditevent %s: %s; retry %d/%d in %.1fs", self.name, reason, attempt + 1,
                     self.max_retries, delay)
            self.sleep(delay)
            attempt += 1

    # --- search --------------------------------------------------------------------------------
    def _search_url(self, high_water_ms: int | None) -> str:
        params: list[tuple[str, str]] = []
        if high_water_ms is not None:
            since = format_timestamp(from_timestamp_ms(max(0, high_water_ms - self.overlap_ms)))
            params.append((self.cursor_param, f"ge{since}"))
        elif self.start:
            params.append((self.cursor_param, f"ge{format_timestamp(datetime.fromisoformat(str(self.start).replace('Z', '+00:00')))}"))
        params += [("_sort", self.sort), ("_count", str(self.page_size))]
        params += list(self.extra_params.items())
        return f"{self.base_url}/AuditEvent?{urlencode(params, safe=':')}"

    def _order_ms(self, resource: Mapping[str, Any]) -> int | None:
        """The value the search is ordered and filtered by: meta.lastUpdated (or recorded for ``date``)."""
        if self.cursor_param == "_lastUpdated":
            meta = resource.get("meta")
            value = meta.get("lastUpdated") if isinstance(meta, Mapping) else None
        else:
            value = resource.get("recorded")
        if not isinstance(value, str):
            value = resource.get("recorded")
        try:
            return timestamp_ms(value) if isinstance(value, str) else None
        except ValueError:
            return None

    def read(self, cursor: dict[str, Any] | None, max_events: int) -> Batch:
        state = _State.load(cursor)
        batch = Batch(exhausted=True)
        budget = max(1, max_events)
        while True:
            url = state.next or self._search_url(state.high_water_ms)
            try:
                bundle = self._get_page(url)
                state.failures = 0
            except PageError as exc:
                self._page_failed(state, batch, exc, resumed=state.next is not None)
                break
            self._take_page(bundle, state, batch)
            next_url = _next_link(bundle)
            if next_url is not None and self.same_origin_only and urlsplit(next_url)[:2] != self._origin:
                batch.dead_letters.append(DeadLetter(
                    source=self.source_identity, location=next_url, raw="",
                    reason="next link points to another origin; not followed (set next_link_same_origin: false "
                           "if the server's links are right)"))
                next_url = None
            state.next = next_url
            if next_url is None:
                break  # search complete: the next read starts a new one from the high-water mark
            if len(batch.events) + len(batch.dead_letters) >= budget:
                batch.exhausted = False
                break
        state.prune(self.overlap_ms)
        batch.cursor = state.dump()
        return batch

    def _page_failed(self, state: "_State", batch: Batch, exc: PageError, *, resumed: bool) -> None:
        """Dead-letter the page (URL and status) and decide where the next read resumes.

        The cursor stays on the failed page (nothing skipped, nothing lost). A page link that keeps failing
        (expired paging state: 404/410, or ``max_page_failures`` reads in a row) is dropped and the search
        restarts from the high-water mark - the seen keys make that restart free of repeats.
        """
        state.failures += 1
        batch.dead_letters.append(DeadLetter(
            source=self.source_identity, reason=f"page failed after retries: {exc}", location=exc.url, raw="",
        ))
        # the reason may quote the server's OperationOutcome: as a `reason` key the log scrubber sees it
        log.warning("fhir-auditevent %s: page failed (HTTP %s)", self.name, exc.status, extra={"reason": exc.reason})
        if exc.status not in (404, 410):  # expired paging state is routine; anything else is blindness
            batch.unavailable = f"connector {self.name!r}: {exc}"
        if resumed and (exc.status in (404, 410) or state.failures >= self.max_page_failures):
            state.next, state.failures = None, 0
            batch.exhausted = exc.status not in (404, 410)  # expired paging: restart the search at once
        elif not resumed:
            state.next = None  # the search URL is rebuilt from the cursor next time anyway

    def _take_page(self, bundle: Mapping[str, Any], state: "_State", batch: Batch) -> None:
        for index, entry in enumerate(bundle.get("entry") or []):
            if not isinstance(entry, Mapping):
                continue
            mode = (entry.get("search") or {}).get("mode") if isinstance(entry.get("search"), Mapping) else None
            resource = entry.get("resource")
            if mode not in (None, "match") or not isinstance(resource, Mapping):
                continue  # includes and OperationOutcome entries are not audit records
            if resource.get("resourceType") == "OperationOutcome":
                continue
            raw = orjson.dumps(resource)
            key = _key(resource, raw)
            if key in state.seen_keys:
                continue  # delivered before (overlap window, tie, or a re-fetched page)
            order_ms = self._order_ms(resource)
            state.add(key, order_ms)
            try:
                batch.events.append(auditevent_to_event(resource, raw=raw, server=self.base_url,
                                                        position=f"key:{key}"))
            except MappingError as exc:
                rid = resource.get("id") if isinstance(resource.get("id"), str) else f"entry[{index}]"
                batch.dead_letters.append(DeadLetter(
                    source=self.source_identity,
                    reason=f"AuditEvent/{rid}: field {exc.field}: {exc.message}",
                    location=f"AuditEvent/{rid}#{exc.field}",
                    raw=raw.decode("utf-8", "replace")[:8000],
                ))


class _State:
    """The cursor, unpacked: high-water mark, seen keys by order time, paging link."""

    def __init__(self, high_water_ms: int | None, seen: dict[int, list[str]], next_url: str | None, failures: int):
        self.high_water_ms = high_water_ms
        self.seen = seen
        self.seen_keys = {k for keys in seen.values() for k in keys}
        self.next = next_url
        self.failures = failures

    @classmethod
    def load(cls, cursor: Mapping[str, Any] | None) -> "_State":
        if not cursor:
            return cls(None, {}, None, 0)
        if cursor.get("v") != CURSOR_VERSION:
            raise ConnectorConfigError(f"fhir-auditevent: unknown cursor version {cursor.get('v')!r}")
        seen = {int(ms): list(keys) for ms, keys in (cursor.get("seen") or {}).items()}
        return cls(cursor.get("high_water_ms"), seen, cursor.get("next"), int(cursor.get("failures", 0)))

    def add(self, key: str, order_ms: int | None) -> None:
        # A resource without a usable timestamp is remembered at the high-water mark (kept for one overlap).
        ms = order_ms if order_ms is not None else (self.high_water_ms or 0)
        self.seen.setdefault(ms, []).append(key)
        self.seen_keys.add(key)
        if order_ms is not None and (self.high_water_ms is None or order_ms > self.high_water_ms):
            self.high_water_ms = order_ms

    def prune(self, overlap_ms: int) -> None:
        """Forget keys older than the overlap: the next search starts after them, so they cannot return."""
        if self.high_water_ms is None:
            return
        floor = self.high_water_ms - overlap_ms
        self.seen = {ms: keys for ms, keys in self.seen.items() if ms >= floor}

    def dump(self) -> dict[str, Any]:
        return {
            "v": CURSOR_VERSION,
            "high_water_ms": self.high_water_ms,
            "seen": {str(ms): keys for ms, keys in sorted(self.seen.items())},
            "next": self.next,
            "failures": self.failures,
        }


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, Mapping) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def _outcome_text(resp: httpx.Response) -> str:
    """The OperationOutcome diagnostics of an error answer, shortened (helps 'unknown parameter' errors)."""
    try:
        body = orjson.loads(resp.content)
        issues = body.get("issue") or []
        text = "; ".join(str(i.get("diagnostics") or i.get("code") or "") for i in issues if isinstance(i, dict))
        return f": {text[:300]}" if text else ""
    except (orjson.JSONDecodeError, AttributeError):
        return ""
