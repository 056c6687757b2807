"""The parsed-rule cache: YAML documents of each rule file, keyed by the SHA-256 of the file's bytes.

Why: YAML parsing is the largest single cost of loading a big rule set (SigmaHQ Windows, 2,400 files), and a
service restart or ``rules test`` re-reads files that have not changed. What is cached is a pure function
of the file's bytes and the code that parses them, and nothing else: the documents (data, exact text,
start line, key lines) as ``engine.sigma.source.parse_documents`` returns them. Validation, pySigma
parsing, Sigma filters, placeholders, the taxonomy and compilation all run after the cache on every load,
so a config change can never be served stale. (pySigma ``SigmaRule`` objects pickle, but unpickling the
SigmaHQ set takes longer than building it from the cached dicts: measured 1.2 s against 0.5 s.)

It can never serve a stale rule:
- the key is the content hash, never mtime or size: a file rewritten with the same size and mtime is
  re-read;
- the whole cache is dropped when the code that produced it may differ (:data:`CACHE_KEY`: Wardwatch,
  PyYAML and Python versions, the YAML loader in use, the cache format);
- a cache that cannot be read, unpickled or understood is ignored with one warning and rebuilt.

The file is private (``engine.private_files``: rule files may name hosts and accounts) and is written
atomically (temp file + rename), so a crash mid-write leaves the previous cache or none. Because it is a
pickle, a cache file that is not ours alone (another owner, or writable by group/others) is refused.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from engine.logs import get_logger
from engine.private_files import create_private_fd, private_dir
from engine.sigma import source
from engine.sigma.source import RuleDocument

_log = get_logger("wardwatch.rules")

CACHE_FORMAT = 1
CACHE_FILE = "rules-parsed.pickle"


def _wardwatch_version() -> str:
    try:
        return metadata.version("wardwatch")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a tree without an install
        return "unknown"


def cache_key() -> tuple[Any, ...]:
    """Everything besides a file's bytes that decides what the parser produces from them."""
    return (CACHE_FORMAT, _wardwatch_version(), yaml.__version__, source.SAFE_LOADER.__name__,
            sys.version_info[:2])


#: one document as stored: (index, data, text, line, lines)
_Doc = tuple[int, Any, str, int, dict[str, int]]


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@dataclass
class RuleCache:
    """Parsed documents per rule file. ``directory=None`` is a cache that never hits and never writes."""

    directory: Path | None
    entries: dict[str, tuple[str, list[_Doc]]] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    _dirty: bool = False

    @property
    def path(self) -> Path | None:
        return None if self.directory is None else self.directory / CACHE_FILE

    @classmethod
    def open(cls, directory: str | os.PathLike[str] | None) -> "RuleCache":
        """Read the cache under ``directory``; missing, foreign or unusable -> an empty cache (warned)."""
        cache = cls(None if directory is None else Path(directory))
        path = cache.path
        if path is None:
            return cache
        try:
            with open(path, "rb") as fh:
                info = os.fstat(fh.fileno())
                if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o022:
                    _log.warning("rule cache ignored: not private to this account", path=str(path))
                    return cache
                payload = pickle.load(fh)
        except FileNotFoundError:
            return cache
        except Exception as e:  # noqa: BLE001 - any damage at all means "rebuild", never "fail the load"
            _log.warning("rule cache unreadable, rebuilding it", path=str(path), error=type(e).__name__)
            return cache
        if not (isinstance(payload, dict) and payload.get("key") == cache_key()
                and isinstance(payload.get("entries"), dict)):
            _log.info("rule cache from another version or format, rebuilding it", path=str(path))
            return cache
        cache.entries = payload["entries"]
        return cache

    def get(self, path: str, file_digest: str) -> list[RuleDocument] | None:
        """The documents of ``path`` if cached for exactly these bytes (a fresh copy each call)."""
        entry = self.entries.get(path)
        try:
            if entry is None or entry[0] != file_digest:
                self.misses += 1
                return None
            docs = [RuleDocument(path, index, data, text, line, dict(lines))
                    for index, data, text, line, lines in entry[1]]
        except (TypeError, ValueError):  # a well-formed pickle holding something else: treat as a miss
            self.misses += 1
            return None
        self.hits += 1
        return docs

    def put(self, path: str, file_digest: str, docs: list[RuleDocument]) -> None:
        if self.directory is None:
            return
        self.entries[path] = (file_digest, [(d.index, d.data, d.text, d.line, d.lines) for d in docs])
        self._dirty = True

    def save(self) -> None:
        """Write the cache if it changed; failure is a warning (the next load parses again)."""
        path = self.path
        if path is None or not self._dirty:
            return
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            private_dir(path.parent)
            # rule files deleted since: their entries would only grow the cache
            self.entries = {p: e for p, e in self.entries.items() if os.path.exists(p)}
            payload = pickle.dumps({"key": cache_key(), "entries": self.entries}, protocol=pickle.HIGHEST_PROTOCOL)
            fd = create_private_fd(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            os.replace(tmp, path)
            self._dirty = False
        except (OSError, pickle.PicklingError, TypeError, AttributeError) as e:
            _log.warning("rule cache not written", path=str(path), error=f"{type(e).__name__}: {e}")
            try:
                os.unlink(tmp)
            except OSError:
                pass
