"""The compiled forms of a rule and a correlation that the rest of Wardwatch consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from engine.correlation.spec import CorrelationSpec
from engine.events import DATASET
from engine.sigma.explain import Explanation, ExplanationNode

if TYPE_CHECKING:
    from sigma.rule import SigmaRule

    from engine.sigma.compiler import Discriminator, Node


@dataclass(eq=False)
class CompiledRule:
    id: str
    name: str | None
    title: str
    level: str
    status: str | None
    description: str
    tags: list[str]
    path: str
    datasets: tuple[str, ...]
    #: every field the detection reads (plus event.dataset and the logsource's extra condition fields)
    fields: frozenset[str]
    #: the parsed pySigma rule (Sigma filters applied, no processing pipeline)
    sigma: "SigmaRule"
    source: str = field(default="", repr=False)
    #: YAML text of the Sigma filter documents applied to this rule (conversion re-applies them)
    filter_sources: tuple[str, ...] = field(default=(), repr=False)
    placeholders: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    _scope: dict[str, Callable[[Mapping[str, Any]], bool] | None] = field(default_factory=dict, repr=False)
    _scope_nodes: dict[str, "Node | None"] = field(default_factory=dict, repr=False)
    _conditions: list["Node"] = field(default_factory=list, repr=False)
    _fn: Callable[[Mapping[str, Any]], bool] = field(default=lambda ev: False, repr=False)
    #: True when the detection has keywords ("any string field contains"): a search must then return
    #: whole events, because ``fields`` cannot name what the rule reads
    reads_every_field: bool = False
    _discriminators: dict[str, "Discriminator | None"] | None = field(default=None, repr=False)

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Exact Sigma semantics; never raises on odd field types. Events of other datasets never match."""
        dataset = event.get(DATASET)
        if type(dataset) is not str or dataset not in self._scope:
            return False
        extra = self._scope[dataset]
        if extra is not None and not extra(event):
            return False
        return self._fn(event)

    def explain(self, event: Mapping[str, Any]) -> Explanation:
        dataset = event.get(DATASET)
        in_scope = type(dataset) is str and dataset in self._scope
        scope = ExplanationNode("logsource", f"datasets {', '.join(self.datasets)}", in_scope,
                                field=DATASET, expected=list(self.datasets), actual=dataset,
                                reason="" if in_scope else "event is from another log source")
        if in_scope:
            extra = self._scope_nodes.get(dataset)  # type: ignore[arg-type]
            if extra is not None:
                node = extra.explain(event)
                scope.children.append(node)
                scope.matched = node.matched
        conditions = [c.explain(event) for c in self._conditions]
        for node, text in zip(conditions, self.sigma.detection.condition):
            node.kind, node.label = f"condition ({node.kind})", text
        matched = scope.matched and any(c.matched for c in conditions)
        return Explanation(self.id, self.title, matched, scope, conditions)

    def discriminators(self) -> dict[str, "Discriminator | None"]:
        """Per dataset: a (field, values) the event must have for this rule to match, if any.

        Computed once (the index, the prefilter and every scan matcher ask; 2,400 SigmaHQ rules took
        ~0.1 CPU-s a time), a fresh dict each call."""
        if self._discriminators is None:
            self._discriminators = self._compute_discriminators()
        return dict(self._discriminators)

    def _compute_discriminators(self) -> dict[str, "Discriminator | None"]:
        from engine.sigma.compiler import best_discriminator

        found: list[Discriminator | None] = [c.discriminator() for c in self._conditions]
        if any(d is None for d in found) or len({d[0] for d in found if d}) != 1:
            detection = None
        else:
            detection = (found[0][0], frozenset().union(*(d[1] for d in found if d)))  # type: ignore
        out: dict[str, Discriminator | None] = {}
        for dataset in self.datasets:
            node = self._scope_nodes.get(dataset)
            out[dataset] = best_discriminator([detection, node.discriminator() if node else None])
        return out


@dataclass(eq=False)
class CompiledCorrelation:
    id: str
    name: str | None
    title: str
    level: str
    description: str
    tags: list[str]
    path: str
    spec: CorrelationSpec
    #: group-by fields, the condition field and every alias target field
    fields: frozenset[str]
    source: str = field(default="", repr=False)
