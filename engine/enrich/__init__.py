"""Ingest-time enrichment: facts added to events before they are stored, so rules stay plain Sigma.

An enricher is a small callable step (structlog-processor style): it receives a normalised event, adds
documented fields, and returns it. Enrichers never drop events and never raise on odd input: a lookup that
cannot answer simply adds nothing.
"""

from __future__ import annotations

import abc
from typing import Any, Iterable, Sequence

from engine.events import Event


class Enricher(abc.ABC):
    """One enrichment step. ``name`` appears in logs and health output."""

    name: str = "enricher"

    @abc.abstractmethod
    def enrich(self, event: Event) -> Event:
        """Add fields to ``event`` (in place) and return it."""

    def refresh(self) -> None:  # noqa: B027 - optional hook
        """Reload lookup sources if they changed; called periodically by the service."""


class EnrichmentChain:
    def __init__(self, enrichers: Sequence[Enricher] = ()):
        self.enrichers = list(enrichers)
        #: the per-batch baselines step (engine.baselines.Baselines) when configured: not a per-event
        #: enricher, it reads store-held history and its facts are written with the batch (engine/ingest.py)
        self.baselines: Any = None

    def enrich_all(self, events: Iterable[Event]) -> list[Event]:
        steps = self.enrichers
        out = []
        for event in events:
            for step in steps:
                event = step.enrich(event)
            out.append(event)
        return out

    def refresh(self) -> None:
        for step in self.enrichers:
            step.refresh()
