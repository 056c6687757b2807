"""Is a file connector's configured source there at all? The check that keeps a typo from being silence.

Why: file discovery treats a missing path as "no files yet", so a typo'd ``path`` used to give 0 events,
exit 0 and a healthy service. A *configured* path that does not exist or cannot be read is now
``SourceUnavailable`` on every poll, until it appears: the service reports it on ``/health`` and in
``wardwatch status``, the one-shot commands exit 1. An existing but empty directory (a drop folder) and a
glob that matches nothing in an existing directory are fine: that is "nothing to read yet".
"""

from __future__ import annotations

import glob
import os

from engine.errors import SourceUnavailable


def require_source(connector: str, path: str) -> str:
    """Return ``path`` when it can be read; raise ``SourceUnavailable`` naming the connector otherwise."""
    if glob.has_magic(path):
        base = _glob_base(path)
        if not os.path.isdir(base):
            raise SourceUnavailable(f"connector {connector!r}: directory {base} does not exist (path: {path})")
        _require_readable(connector, base, directory=True)
        return path
    if not os.path.exists(path):
        raise SourceUnavailable(f"connector {connector!r}: path {path} does not exist")
    _require_readable(connector, path, directory=os.path.isdir(path))
    return path


def _glob_base(pattern: str) -> str:
    """The directory part before the first wildcard: ``/logs/*/vpn-*.ndjson`` -> ``/logs``."""
    parts = pattern.split(os.sep)
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return os.sep.join(fixed) or (os.sep if pattern.startswith(os.sep) else ".")


def _require_readable(connector: str, path: str, *, directory: bool) -> None:
    mode = os.R_OK | os.X_OK if directory else os.R_OK
    if not os.access(path, mode):
        kind = "directory" if directory else "file"
        raise SourceUnavailable(f"connector {connector!r}: {kind} {path} cannot be read (permission denied)")
