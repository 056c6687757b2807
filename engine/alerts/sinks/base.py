"""The sink contract: what a destination for alerts and cases implements, and what every sink shares.

Why a base class and not a protocol: every sink must apply the same field policy (pseudonymise, drop, cap
evidence) before anything leaves the engine, and must fail the same two ways, so the delivery loop
(:mod:`engine.alerts.sinks.delivery`) can retry one and dead-letter the other. A sink that forgot the
policy would leak patient identifiers into a chat channel; the base class applies it in ``deliver``, and a
subclass only ever sees payload dicts that went through it.

A sink implements ``send_alerts(payloads)`` and, if it wants case updates, ``send_cases(payloads)``; it may
implement ``send_notice(notice)`` (deadline reminders, assignee updates). Each payload is one revision's
``to_dict()`` after the policy. Failure is one of:

* :class:`SinkUnavailable` - transient (peer down, 5xx, timeout): the revision stays in the outbox and is
  retried with capped exponential backoff; after ``retry.attempts`` failed rounds on the same revision it
  is dead-lettered, so one poison alert never blocks the ones behind it;
* :class:`SinkRejected` - permanent (4xx, schema refused): dead-lettered at once and acknowledged.

Delivery is at-least-once (a crash between send and acknowledge hands the revision over again); a sink
makes it exactly-once by recognising ``(id, revision)`` - the JSONL sink remembers what it wrote, the
webhook sink sends ``Idempotency-Key: <id>:<revision>`` for the receiver to do the same.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

from engine.alerts.case_model import Case
from engine.alerts.episodes import group_key_of
from engine.alerts.model import Alert
from engine.alerts.pseudonymise import PREFIX, Pseudonymiser
from engine.errors import EXIT_USAGE, SinkError, SinkRejected, SinkUnavailable
from engine.plugins import InvalidOption, duration_option, parse_options

#: What a sink can be handed: ``deliver`` option values.
DELIVER_CHOICES = {"cases": frozenset({"cases"}), "alerts": frozenset({"alerts"}),
                   "both": frozenset({"cases", "alerts"})}


def deliver_choice(value: str, where: str = "deliver") -> frozenset[str]:
    try:
        return DELIVER_CHOICES[value]
    except KeyError:
        raise ValueError(f"{where}: expected one of cases, alerts, both (not {value!r})") from None


def check_deliver(value: str) -> None:
    """``__post_init__`` helper: ``deliver`` is one of cases, alerts, both."""
    if value not in DELIVER_CHOICES:
        raise InvalidOption("deliver", f"expected one of cases, alerts, both (not {value!r})")


@dataclass
class RetryPolicy:
    """``retry:`` of a sink. Backoff doubles per failed round from ``backoff`` up to ``max_backoff``.

    Rounds, not sleeps: a failing sink is skipped until its backoff has passed, so one dead peer never
    stalls evaluation or the other sinks. The defaults give a peer about 17 minutes (10 rounds) before the
    revision at the head of its outbox is dead-lettered.
    """

    attempts: int = 10
    backoff: float = duration_option(2.0)
    max_backoff: float = duration_option(900.0)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise InvalidOption("attempts", "must be at least 1")
        if self.backoff < 0 or self.max_backoff < self.backoff:
            raise InvalidOption("backoff", "must be >= 0 and not above max_backoff")

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failed rounds."""
        if failures <= 0:
            return 0.0
        return min(self.max_backoff, self.backoff * (2 ** (failures - 1)))


@dataclass(kw_only=True)
class SinkOptions:
    """Options every sink has (its ``Options`` extends this dataclass; see :mod:`engine.plugins`).

    ``pseudonymise``: payload fields (top-level keys or group fields such as ``ehr.patient.id``) replaced by
    the site's keyed pseudonym (``alerts.pseudonymise``) before sending; the site's own
    ``alerts.pseudonymise.fields`` always are. ``drop``: fields removed. ``evidence_cap``: at most this many
    evidence event ids are sent (``evidence_total`` still says how many there were); null: all.
    ``notices``: this sink also receives deadline reminders and assignee updates. ``remind_before``: lead
    times (``[24h, 4h]``) before each incident deadline at which it gets a reminder (``engine.incidents``).
    """

    #: names the sink's outbox (and its dead letters, ``sink:<name>``): renaming re-sends everything
    name: str | None = None
    deliver: str = "alerts"
    pseudonymise: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    evidence_cap: int | None = None
    notices: bool = False
    retry: dict[str, Any] = field(default_factory=dict)
    remind_before: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_deliver(self.deliver)
        from engine.config import parse_duration

        try:  # seconds, for engine.incidents.send_reminders
            self.remind_before_seconds = sorted({parse_duration(v) for v in self.remind_before}, reverse=True)
        except ValueError as exc:
            raise InvalidOption("remind_before", f"{exc}; a list of lead times, like [24h, 4h]") from None
        if self.evidence_cap is not None and self.evidence_cap < 0:
            raise InvalidOption("evidence_cap", "must be >= 0 (or null for no cap)")
        for name in self.drop:
            if name in PROTECTED_FIELDS:
                raise InvalidOption("drop", f"{name!r} cannot be dropped: delivery and deduplication need it")
        try:
            self.retry_policy = parse_options(RetryPolicy, self.retry)
        except InvalidOption as exc:
            raise InvalidOption(f"retry.{exc.key}" if exc.key else "retry", exc.message) from None


#: Fields a payload always keeps: the receiver deduplicates on them.
PROTECTED_FIELDS = frozenset({"id", "revision", "record"})


class FieldPolicy:
    """Pseudonymise, drop and cap one payload dict. Pure: the stored alert is never touched.

    A field name matches a top-level key of the payload, a key of its ``group`` (alerts), and a case's
    ``subject`` when the case is about that field (``subject_field``/``subject_kind``), because that is
    where patient and user identifiers sit.
    """

    def __init__(self, pseudonymise: Sequence[str] = (), drop: Sequence[str] = (),
                 evidence_cap: int | None = None, pseudonymiser: Pseudonymiser | None = None):
        self.drop = frozenset(drop)
        self.evidence_cap = evidence_cap
        site = pseudonymiser if pseudonymiser is not None and pseudonymiser.key else None
        self.pseudonymise = frozenset(pseudonymise) | (site.fields if site else frozenset())
        if pseudonymise and site is None:
            raise InvalidOption("pseudonymise", "needs the site's pseudonymisation key "
                                                "(alerts.pseudonymise.key_env or key_file)")
        self._site = site

    def apply(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in payload.items() if k not in self.drop}
        group = out.get("group")
        if isinstance(group, Mapping):
            out["group"] = {k: self._value(k, v) for k, v in group.items() if k not in self.drop}
            if out["group"] != group and out.get("group_key") == group_key_of(group):
                out["group_key"] = group_key_of(out["group"])  # the key spells the group out: it follows it
        subject_of = {str(out.get("subject_field") or ""), str(out.get("subject_kind") or "")}
        if "subject" in out and subject_of & self.drop:
            del out["subject"]
        elif "subject" in out and subject_of & self.pseudonymise:
            out["subject"] = self._pseudonym(out["subject"])
        for key in self.pseudonymise & out.keys() - {"group", "subject"} - PROTECTED_FIELDS:
            out[key] = self._value(key, out[key])
        if self.evidence_cap is not None and isinstance(out.get("evidence"), list):
            out["evidence"] = out["evidence"][: self.evidence_cap]
        return out

    def _value(self, name: str, value: Any) -> Any:
        return self._pseudonym(value) if name in self.pseudonymise else value

    def _pseudonym(self, value: Any) -> Any:
        # the evaluator may have pseudonymised this group value already (same key): never hash a pseudonym
        if value is None or (isinstance(value, str) and value.startswith(PREFIX)) or self._site is None:
            return value
        return self._site.pseudonym(value)


@dataclass
class RetryState:
    """One outbox stream's failures in this process: which revision is at its head and since when it fails."""

    head: tuple[str, int] | None = None
    failures: int = 0
    not_before: float = 0.0


class Sink(abc.ABC):
    """Base class of every sink. Subclasses set ``type_name`` and ``Options`` and implement ``send_alerts``.

    ``name`` identifies the sink's outbox: renaming a sink makes it receive every stored revision again.
    ``batch_size``: how many revisions one ``send_*`` call gets; network sinks that send one request per
    revision use 1, so a failure is pinned to exactly one revision (retry and dead-lettering stay exact).
    """

    type_name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Options: ClassVar[type[SinkOptions]] = SinkOptions
    batch_size: ClassVar[int] = 1000

    def __init__(self, options: SinkOptions | Mapping[str, Any] | None = None, *, name: str | None = None,
                 pseudonymiser: Pseudonymiser | None = None):
        if not isinstance(options, SinkOptions):
            try:
                options = parse_options(type(self).Options, options or {}, ignore={"type"})
            except InvalidOption as exc:
                raise SinkConfigError(f"sink {self.type_name or type(self).__name__}: {exc}") from None
        self.settings: Any = options
        self.name = name or options.name or self.default_name()
        self.wants = deliver_choice(options.deliver)
        self.retry = options.retry_policy
        try:
            self.policy = FieldPolicy(options.pseudonymise, options.drop, options.evidence_cap, pseudonymiser)
        except InvalidOption as exc:
            raise SinkConfigError(f"sink {self.name}: {exc}") from None
        self.retry_state: dict[str, RetryState] = {}

    @classmethod
    def from_options(cls, options: SinkOptions, *, pseudonymiser: Pseudonymiser | None = None) -> "Sink":
        """How ``build_sinks`` makes the sink from its parsed ``alerts.sinks[]`` entry."""
        return cls(options, pseudonymiser=pseudonymiser)

    def default_name(self) -> str:
        return self.type_name or type(self).__name__

    # --- what a sink implements -------------------------------------------------------------------------

    @abc.abstractmethod
    def send_alerts(self, payloads: Sequence[dict[str, Any]]) -> None:
        """Hand over alert revisions (dicts after the field policy). Raise SinkUnavailable / SinkRejected."""

    def send_cases(self, payloads: Sequence[dict[str, Any]]) -> None:
        """Hand over case revisions; sinks that take ``deliver: cases|both`` override this."""
        raise SinkRejected(f"sink {self.name} does not take cases")

    def send_notice(self, notice: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """A deadline reminder or an assignee update (only called with ``notices: true``)."""

    def ready(self, record: str) -> bool:
        """Whether the sink takes ``record`` ("alert" | "case") revisions this round. A digest sink says
        False until its period is over, so the revisions stay unacknowledged in the outbox meanwhile (a
        crash loses nothing); the default takes them at once."""
        return True

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Called once at shutdown."""

    # --- what the delivery loop calls ---------------------------------------------------------------------

    @property
    def takes_cases(self) -> bool:
        return type(self).send_cases is not Sink.send_cases

    def deliver(self, alerts: Sequence[Alert]) -> None:
        self.send_alerts([self.policy.apply(a.to_dict()) for a in alerts])

    def deliver_cases(self, cases: Sequence[Case]) -> None:
        self.send_cases([self.policy.apply(c.to_dict()) for c in cases])


class SinkConfigError(SinkError):
    """A sink cannot be built from its options (names the sink and the key): fix the config."""

    exit_code = EXIT_USAGE


def options_with(options_cls: type[SinkOptions], **values: Any) -> Any:
    """An ``Options`` instance from keyword values, checked like the config (for the legacy constructors)."""
    known = {f.name for f in dataclasses.fields(options_cls)}
    return parse_options(options_cls, {k: v for k, v in values.items() if k in known})


__all__ = [
    "DELIVER_CHOICES", "FieldPolicy", "PROTECTED_FIELDS", "RetryPolicy", "RetryState", "Sink",
    "SinkConfigError", "SinkOptions", "SinkRejected", "SinkUnavailable", "check_deliver", "deliver_choice",
    "options_with",
]
