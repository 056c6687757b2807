"""Per-user baselines (issue 11 item 3): how this user, and their role, usually work.

``model``: the per-(user, local day) record and the profile derived from a window of them; ``facts``: how
records are kept in the store (fact events committed with each batch); ``step``: the ingest step that learns
from a batch and sets the ``wardwatch.baseline.*`` flags. docs/enrichment.md says how each value is computed.
"""

from engine.baselines.step import FIELDS, BaselineOptions, Baselines

__all__ = ["FIELDS", "BaselineOptions", "Baselines"]
