"""``rule.loaded`` entries: which rule file, with which SHA-256, the engine ran, from when.

Why file hashes: "which version of the rule raised this alert?" is a question an auditor asks months later.
An entry is written only when a rule's file hash differs from the last one recorded for that rule, so a
restart adds nothing and a changed rule adds exactly one entry. Read-only commands never write.
"""

from __future__ import annotations

from typing import Any

from engine import audit


def record_rule_loads(store: Any, ruleset: Any) -> int:
    """Record every loaded rule and correlation whose file hash is new for it; returns how many.

    The hash is the loader's (``RuleSet.file_digests``: the bytes the rules were parsed from), so the entry
    names the version that runs even if the file is edited between loading and recording, and no rule file
    is read a second time at start-up."""
    last: dict[str, str] = {}
    for row in store.audit_rows(kinds=["rule.loaded"]):
        last[row["subject"]] = row["detail"].get("sha256", "")
    items = []
    for rule in [*ruleset.rules.values(), *ruleset.correlations.values()]:
        digest = ruleset.file_digests.get(rule.path)
        if digest is not None and last.get(rule.id) != digest:
            items.append(("rule.loaded", audit.ENGINE_ACTOR, rule.id, {"path": rule.path, "sha256": digest}, None))
    audit.record_many(store, items)
    return len(items)
