"""Ingest-time enrichment: facts added to events before they are stored, so rules stay plain Sigma.

An enricher is a small callable step (structlog-processor style): it receives a normalised event, adds
documented fields, and returns it. Enrichers never drop events and never raise on odd input: a lookup that
cannot answer simply adds nothing.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from engine.events import Event

if TYPE_CHECKING:
    from engine.enrich.lookups import LookupStatus


class Enricher(abc.ABC):
    """One enrichment step. ``name`` appears in logs and health output."""

    name: str = "enricher"

    @abc.abstractmethod
    def enrich(self, event: Event) -> Event:
        """Add fields to ``event`` (in place) and return it."""

    def enrich_many(self, events: list[Event]) -> list[Event]:
        """A batch, in order. A step that decides the same thing for many events of a batch overrides this
        to remember it for the batch (``PrivacyEnricher``); the events must come out as ``enrich`` would
        have left them, one by one."""
        enrich = self.enrich
        return [enrich(event) for event in events]

    def refresh(self) -> None:  # noqa: B027 - optional hook
        """Reload lookup sources if they changed; called periodically by the service."""

    def lookups(self) -> "list[LookupStatus]":
        """The state of each lookup source this step reads (``/health`` and metrics show them); none here."""
        return []


class EnrichmentChain:
    def __init__(self, enrichers: Sequence[Enricher] = ()):
        self.enrichers = list(enrichers)
        #: the per-batch baselines step (engine.baselines.Baselines) when configured: not a per-event
        #: enricher, it reads store-held history and its facts are written with the batch (engine/ingest.py)
        self.baselines: Any = None

    def enrich_all(self, events: Iterable[Event]) -> list[Event]:
        """Every step over the whole batch, one step after the other (each step sees the fields the steps
        before it added, as event by event)."""
        out = list(events)
        for step in self.enrichers:
            out = step.enrich_many(out)
        return out

    def refresh(self) -> None:
        for step in self.enrichers:
            step.refresh()

    def lookups(self) -> "list[LookupStatus]":
        return [status for step in self.enrichers for status in step.lookups()]
