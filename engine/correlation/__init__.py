"""Correlation: the Sigma correlation types evaluated exactly over matched events.

``spec`` reads a correlation rule into a ``CorrelationSpec``, ``expr`` compiles extended conditions,
``values`` holds the numeric aggregates and operators, ``windows`` the incremental sliding windows, and
``engine`` the pure function from matches to triggers that every store shares (docs/correlation.md).
"""

from engine.correlation.engine import Match, Trigger, evaluate_correlation, trigger_as_match

__all__ = ["Match", "Trigger", "evaluate_correlation", "trigger_as_match"]
