"""The one error type rule authors see.

Every problem with a rule file becomes a ``RuleLoadError`` that names the file, the offending key and (where
the YAML parser knows it) the line, so an analyst can fix the rule without reading a traceback. Loading never
crashes on a bad rule: the error is collected and the other rules load.
"""

from __future__ import annotations

from engine.errors import EXIT_USAGE, WardwatchError


class RuleLoadError(WardwatchError):
    """A rule (or filter/correlation) that could not be loaded.

    ``str()`` is ``"path: key: message"`` (``"path:line: key: message"`` when the line is known; the key part
    is left out when ``key`` is None).
    """

    exit_code = EXIT_USAGE

    def __init__(self, path: str, key: str | None, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.key = key
        self.message = message
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        if self.key is None:
            return f"{where}: {self.message}"
        return f"{where}: {self.key}: {self.message}"

    def __repr__(self) -> str:
        return f"RuleLoadError({self.path!r}, {self.key!r}, {self.message!r}, line={self.line!r})"
