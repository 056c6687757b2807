"""Files and directories that hold patient data are private to the service account, whatever the umask.

Everything Wardwatch writes (the SQLite store and its ``-wal``/``-shm``, ``alerts.jsonl``, syslog spool
segments) carries patient ids, staff names and raw records, so a file is created ``0600`` and a directory
``0700``. The mode is set explicitly after creation: ``open(..., 0o600)`` alone is only an upper bound (the
umask can take bits away, never add them), and a directory made by ``mkdir`` gets ``0777 & ~umask``.

SQLite creates ``-wal``/``-shm``/``-journal`` itself, copying the main file's mode at the time it creates
them (measured on Linux, SQLite 3.4x). So the store creates the main file ``0600`` before connecting, and
:func:`tighten` at start fixes siblings left wider by an older version (they keep their mode otherwise).

Existing files from an earlier, looser version are found and tightened at start (:func:`tighten`), and the
caller logs each path it changed. Only files and directories that are Wardwatch's own are tightened: never
the parent of a configured store path, which may be an operator's home or project directory.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterable

FILE_MODE = 0o600
DIR_MODE = 0o700
SQLITE_SIBLINGS = ("-wal", "-shm", "-journal")

_FLAGS = {
    "r": os.O_RDONLY,
    "r+": os.O_RDWR,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "w+": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
}


@dataclass(frozen=True, slots=True)
class Tightened:
    """One path whose mode :func:`tighten` changed (modes as octal strings, for the log line)."""

    path: str
    old_mode: str
    new_mode: str


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` and any missing parents ``0700``; an existing directory is left to :func:`tighten`.

    Parents are created one by one (not ``mkdir(parents=True)``, which would give them ``0777 & ~umask``).
    """
    directory = Path(path)
    missing: list[Path] = []
    probe = directory
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for component in reversed(missing):
        try:
            os.mkdir(component, DIR_MODE)
        except FileExistsError:
            continue  # another thread or process made it meanwhile; its creator set the mode
        os.chmod(component, DIR_MODE)
    return directory


def create_private_fd(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open`` that leaves a file it creates (or finds wider) at exactly ``0600``."""
    fd = os.open(path, flags, FILE_MODE)
    try:
        _fchmod_if_needed(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private(path: str | os.PathLike[str], mode: str = "ab") -> IO[Any]:
    """Like ``open(path, mode)``, but a file it creates is ``0600`` and its directory exists ``0700``."""
    base = mode.replace("b", "").replace("t", "")
    if base not in _FLAGS:
        raise ValueError(f"open_private: unsupported mode {mode!r}")
    flags = _FLAGS[base]
    if flags & os.O_CREAT:
        private_dir(Path(path).parent)
    fd = create_private_fd(path, flags)
    return os.fdopen(fd, mode)


def touch_private(path: str | os.PathLike[str]) -> None:
    """Make sure ``path`` exists as a ``0600`` file (empty if new), e.g. before SQLite opens it."""
    os.close(create_private_fd(path, os.O_WRONLY | os.O_CREAT))


def sqlite_files(path: str | os.PathLike[str]) -> list[Path]:
    """The store file and the siblings SQLite keeps next to it."""
    main = Path(path)
    return [main] + [main.with_name(main.name + suffix) for suffix in SQLITE_SIBLINGS]


def tighten(paths: Iterable[str | os.PathLike[str]], *, recursive_dirs: bool = True) -> list[Tightened]:
    """Remove group/other access from each existing path (and, for directories, what they contain).

    Missing paths are skipped (nothing to protect yet). Returns what changed, so the caller can say so
    in the log; a path we may not chmod (another owner) raises ``PermissionError`` naming it.
    """
    changed: list[Tightened] = []
    seen: set[str] = set()
    for raw in paths:
        path = Path(raw)
        for target in _walk(path) if recursive_dirs else [path]:
            key = str(target)
            if key in seen:
                continue
            seen.add(key)
            result = _tighten_one(target)
            if result is not None:
                changed.append(result)
    return changed


def _walk(path: Path) -> list[Path]:
    if not path.is_dir() or path.is_symlink():
        return [path]
    found = [path]
    for root, dirs, files in os.walk(path):
        found += [Path(root, name) for name in dirs + files]
    return found


def _tighten_one(path: Path) -> Tightened | None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return None  # the link's mode means nothing; its target is tightened where it is configured
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o077:
        return None
    wanted = DIR_MODE if stat.S_ISDIR(info.st_mode) else mode & 0o700 or FILE_MODE
    try:
        os.chmod(path, wanted)
    except PermissionError:
        raise PermissionError(f"{path}: cannot make it private (mode {mode:04o}, owner uid {info.st_uid})") from None
    return Tightened(str(path), f"{mode:04o}", f"{wanted:04o}")


def _fchmod_if_needed(fd: int) -> None:
    if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
        os.fchmod(fd, FILE_MODE)
