"""The loaded rule set: rules, correlations, load errors, and the index that keeps evaluation cheap.

The index (dataset -> discriminating field -> value -> rules) is what lets thousands of SigmaHQ rules run
over millions of events: an event is only offered to rules whose dataset and e.g. ``EventID`` it has. It
is a superset filter: ``rule.matches`` still decides. Rules with necessary literals are served by the
Aho-Corasick prefilter instead (engine/sigma/prefilter.py); the index keeps the rest.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from engine.events import DATASET
from engine.sigma.errors import RuleLoadError
from engine.sigma.model import CompiledCorrelation, CompiledRule
from engine.sigma.prefilter import Prefilter
from engine.sigma.rule_index import DiscriminatorIndex
from engine.sigma.scan import ScanMatcher


#: scan matchers kept: one per distinct set of scanned rules (a round's scan, each job's context scan)
_MATCHERS_KEPT = 64


class RuleSet:
    def __init__(self, rules: dict[str, CompiledRule], correlations: dict[str, CompiledCorrelation],
                 errors: list[RuleLoadError], file_digests: Mapping[str, str] | None = None) -> None:
        self.rules = rules
        #: rule file path -> SHA-256 of the bytes these rules were parsed from (the audit chain's
        #: ``rule.loaded`` entries name the version that ran, not what the file holds later)
        self.file_digests: dict[str, str] = dict(file_digests or {})
        self.correlations = correlations
        self.errors = errors
        self.prefilter = Prefilter(rules.values())
        self._index = _build_index(rules.values())
        self._rest = _build_index(r for r in rules.values() if r.id not in self.prefilter.anchored)
        self._matchers: dict[frozenset[str], ScanMatcher] = {}

    def candidates(self, event: Mapping[str, Any]) -> list[CompiledRule]:
        """The few rules that could match ``event``: the prefilter's, plus the index's for the others."""
        found = _lookup(self._rest, event)
        found.extend(self.prefilter.candidates(event))
        if len(found) > 1:
            found = list(dict.fromkeys(found))
        return found

    def matcher(self, rule_ids: frozenset[str]) -> ScanMatcher:
        """The rules of ``rule_ids`` as one function, event -> the rules that match it exactly
        (engine/sigma/scan.py). A scan of every rule reuses this set's prefilter; a few are kept."""
        found = self._matchers.get(rule_ids)
        if found is None:
            if len(self._matchers) >= _MATCHERS_KEPT:
                del self._matchers[next(iter(self._matchers))]
            if rule_ids >= self.rules.keys():
                found = ScanMatcher(self.rules.values(), self.prefilter)
            else:
                found = ScanMatcher([self.rules[rid] for rid in sorted(rule_ids) if rid in self.rules])
            self._matchers[rule_ids] = found
        return found

    def index_candidates(self, event: Mapping[str, Any]) -> list[CompiledRule]:
        """The rules of ``event``'s dataset and discriminating field (the index alone, no prefilter)."""
        found = _lookup(self._index, event)
        if len(found) > 1:
            found = list(dict.fromkeys(found))
        return found

    def alerting_rules(self) -> list[CompiledRule]:
        """Rules whose own matches are alerts: unreferenced, or referenced by a ``generate: true`` one."""
        referenced: dict[str, bool] = {}
        for corr in self.correlations.values():
            for rid in corr.spec.rules:
                referenced[rid] = referenced.get(rid, False) or corr.spec.generate
        return [r for r in self.rules.values() if referenced.get(r.id, True)]

    def correlation_order(self) -> list[CompiledCorrelation]:
        """Correlations with every correlation they build on listed before them."""
        order: list[CompiledCorrelation] = []
        done: set[str] = set()

        def visit(cid: str) -> None:
            if cid in done:
                return
            done.add(cid)
            for ref in self.correlations[cid].spec.rules:
                if ref in self.correlations:
                    visit(ref)
            order.append(self.correlations[cid])

        for cid in self.correlations:
            visit(cid)
        return order

    def datasets_for(self, rule_or_correlation_id: str) -> tuple[str, ...]:
        """A rule's datasets; a correlation's is the union of what it references, recursively."""
        if rule_or_correlation_id in self.rules:
            return self.rules[rule_or_correlation_id].datasets
        if rule_or_correlation_id not in self.correlations:
            raise KeyError(rule_or_correlation_id)
        out: dict[str, None] = {}
        for ref in self.correlations[rule_or_correlation_id].spec.rules:
            out.update(dict.fromkeys(self.datasets_for(ref)))
        return tuple(out)


def _build_index(rules: Iterable[CompiledRule]) -> dict[str, DiscriminatorIndex[CompiledRule]]:
    index: dict[str, DiscriminatorIndex[CompiledRule]] = {}
    for rule in rules:
        for dataset, disc in rule.discriminators().items():
            index.setdefault(dataset, DiscriminatorIndex()).add(disc, rule)
    return index


def _lookup(index: dict[str, DiscriminatorIndex[CompiledRule]], event: Mapping[str, Any]) -> list[CompiledRule]:
    dataset = event.get(DATASET)
    entry = index.get(dataset) if type(dataset) is str else None
    if entry is None:
        return []
    return entry.lookup(event.get)
