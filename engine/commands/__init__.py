"""CLI command groups that live in their own modules (triage, exceptions, hunt, search, audit, reports).

``engine/cli.py`` keeps the parser's spine and the one place where errors become exit codes; a command
module only adds its sub-commands. Each module in :data:`COMMAND_MODULES` has
``register(sub, groups)``: ``sub`` is the top-level sub-parser set, ``groups`` the existing groups'
sub-parser sets by name (``"rules"``, ``"alerts"``, ``"cases"``), so a module can add ``rules list`` or
``alerts show`` next to the built-in ones. Command functions take ``argparse.Namespace`` and return an
exit code, and raise ``engine.errors`` types for failures (never print tracebacks).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Mapping

#: Modules under engine.commands that register sub-commands, in help order. Add yours here.
COMMAND_MODULES: list[str] = ["hunt", "search", "rules_overview", "reports", "triage", "exceptions", "audit", "api"]


def register_all(sub: "argparse._SubParsersAction[argparse.ArgumentParser]",
                 groups: Mapping[str, "argparse._SubParsersAction[argparse.ArgumentParser]"]) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"engine.commands.{name}").register(sub, groups)
