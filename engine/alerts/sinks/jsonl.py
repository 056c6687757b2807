"""The JSONL sink: one JSON object per alert revision (and per case revision in a second file), fsync'd.

Exactly-once across crashes: it remembers the ``(id, revision)`` pairs its files hold (read back at start,
a torn last line dropped), so a revision the outbox hands over again after a crash is skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import orjson

from engine.alerts.pseudonymise import Pseudonymiser
from engine.alerts.sinks.base import Sink, SinkOptions, options_with
from engine.plugins import path_option
from engine.private_files import open_private, private_dir


@dataclass(kw_only=True)
class JsonlOptions(SinkOptions):
    """``alerts.sinks[]`` options of ``type: jsonl``."""

    path: str = path_option(None)
    #: case revisions; default: next to ``path``, ``alerts.jsonl`` -> ``alerts.cases.jsonl``
    cases_path: str | None = path_option(None)
    deliver: str = "both"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path:
            from engine.plugins import InvalidOption

            raise InvalidOption("path", "required option is missing")


class JsonlSink(Sink):
    """Two files, not one mixed feed: tools that parse the alert file keep working, and the case file is
    what an analyst's ticketing reads. ``deliver: both`` (the default) writes both."""

    type_name = "jsonl"
    summary = "one JSON line per alert / case revision in a local file"
    Options: ClassVar[type[SinkOptions]] = JsonlOptions

    def __init__(self, path: str | Path, name: str | None = None, cases_path: str | Path | None = None,
                 deliver: str = "both", *, options: JsonlOptions | None = None,
                 pseudonymiser: Pseudonymiser | None = None):
        options = options or options_with(JsonlOptions, path=str(path), deliver=deliver,
                                          cases_path=str(cases_path) if cases_path else None)
        self.path = Path(options.path)
        self.cases_path = Path(options.cases_path) if options.cases_path else self.path.with_name(
            self.path.name[: -len(".jsonl")] + ".cases.jsonl" if self.path.name.endswith(".jsonl")
            else self.path.name + ".cases")
        super().__init__(options, name=name or options.name or f"jsonl:{self.path}", pseudonymiser=pseudonymiser)
        private_dir(self.path.parent)  # alerts name patients and staff: 0700/0600 (engine/private_files.py)
        private_dir(self.cases_path.parent)
        self._seen: set[tuple[str, int]] = _recover(self.path)
        self._seen_cases: set[tuple[str, int]] = _recover(self.cases_path)

    @classmethod
    def from_options(cls, options: SinkOptions, *, pseudonymiser: Pseudonymiser | None = None) -> "JsonlSink":
        assert isinstance(options, JsonlOptions)
        return cls(options.path, options=options, pseudonymiser=pseudonymiser)

    def send_alerts(self, payloads: Sequence[dict[str, Any]]) -> None:
        _append(self.path, payloads, self._seen)

    def send_cases(self, payloads: Sequence[dict[str, Any]]) -> None:
        _append(self.cases_path, payloads, self._seen_cases)


def _recover(path: Path) -> set[tuple[str, int]]:
    """Drop a torn last line (crash mid-write) and learn which revisions are already in the file."""
    seen: set[tuple[str, int]] = set()
    if not path.exists():
        return seen
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as handle:
            handle.truncate(cut)
        data = data[:cut]
    for line in data.splitlines():
        try:
            record = orjson.loads(line)
            seen.add((record["id"], int(record.get("revision", 1))))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return seen


def _append(path: Path, payloads: Sequence[dict[str, Any]], seen: set[tuple[str, int]]) -> None:
    fresh = [p for p in payloads if (p["id"], p["revision"]) not in seen]
    if not fresh:
        return
    data = b"".join(orjson.dumps(p) + b"\n" for p in fresh)
    with open_private(path, "ab") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    seen.update((p["id"], p["revision"]) for p in fresh)
