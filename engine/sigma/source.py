"""Reading rule files: YAML documents with their source text and the line of every key.

PyYAML's plain ``safe_load`` forgets positions; composing the node graph first keeps them, so a validation
error can say "line 12" and the CLI can show the exact text of one document of a multi-document file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import yaml

#: libyaml's C parser when PyYAML was built with it (about 9x faster on the SigmaHQ set); it composes the same
#: nodes with the same marks (character indices and lines), so line numbers and document text are unchanged.
SAFE_LOADER: type = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader


@dataclass
class RuleDocument:
    path: str
    index: int  # position of the document within its file
    data: Any
    text: str
    line: int  # 1-based line where the document starts
    #: dotted key path ("detection.selection.Image|endswith") -> 1-based line; list indices are skipped
    lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, key: str | None) -> int | None:
        """Line of ``key`` or of its nearest known parent; the document start as a last resort."""
        while key:
            if key in self.lines:
                return self.lines[key]
            if "." not in key:
                break
            key = key.rsplit(".", 1)[0]
        return self.line


def _walk(node: yaml.Node, prefix: str, out: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            name = f"{prefix}{key_node.value}" if isinstance(key_node, yaml.ScalarNode) else prefix
            out.setdefault(name, key_node.start_mark.line + 1)
            _walk(value_node, name + ".", out)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _walk(item, prefix, out)


def parse_documents(path: str, text: str) -> Iterator[RuleDocument]:
    """Yield every non-empty document of a YAML stream. Raises ``yaml.YAMLError`` on a syntax error."""
    loader = SAFE_LOADER(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node guarantees a node
                break
            data = loader.construct_document(node)
            start, end = node.start_mark.index, node.end_mark.index
            lines: dict[str, int] = {}
            _walk(node, "", lines)
            if data is not None:
                yield RuleDocument(path, index, data, text[start:end].rstrip() + "\n",
                                   node.start_mark.line + 1, lines)
            index += 1
    finally:
        loader.dispose()


def rule_files(paths: Sequence[str | Path]) -> Iterable[Path]:
    """Every ``*.yml``/``*.yaml`` under the given files/directories, recursively, in a stable order."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            # os.walk, not rglob: rglob skips a directory it cannot read without a word, so a chmod mistake
            # would silently drop rules. Each unreadable directory is yielded as a path: the loader then
            # reports it as "cannot read rule file: Permission denied", naming it.
            found: list[Path] = []
            unreadable: list[Path] = []
            for root, _dirs, files in os.walk(p, onerror=lambda exc: unreadable.append(Path(exc.filename))):
                found.extend(f for f in (Path(root) / name for name in files)
                             if f.suffix in (".yml", ".yaml") and f.is_file())
            yield from sorted(found)
            yield from sorted(unreadable)
        else:
            yield p
