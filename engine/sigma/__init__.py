"""The Sigma layer: load, validate, compile, explain and convert Sigma rules.

See docs/rules.md for how analysts write rules and ../shared/SIGMA-CONFORMANCE.md for the semantics.
"""

from engine.sigma.convert import ConvertedQuery, convert_rule, rule_source
from engine.sigma.errors import RuleLoadError
from engine.sigma.explain import Explanation, ExplanationNode
from engine.sigma.loader import load_rules
from engine.sigma.model import CompiledCorrelation, CompiledRule
from engine.sigma.ruleset import RuleSet
from engine.sigma.taxonomy import TAXONOMY, LogsourceEntry

__all__ = [
    "TAXONOMY",
    "CompiledCorrelation",
    "CompiledRule",
    "ConvertedQuery",
    "Explanation",
    "ExplanationNode",
    "LogsourceEntry",
    "RuleLoadError",
    "RuleSet",
    "convert_rule",
    "load_rules",
    "rule_source",
]
