"""The errors Wardwatch expects, as one typed tree.

Why one tree: the CLI (and the service's health report) must turn every *expected* failure into one readable
line and a documented exit code, without a list of unrelated exception types to remember. Each family keeps
its own module-level class (``engine.config.ConfigError``, ``connectors.base.ConnectorError``,
``engine.store.base.StoreError``, ``engine.sigma.errors.RuleLoadError``); they are re-parented here so that
``except WardwatchError`` catches them all::

    WardwatchError                      exit_code 1 unless a subclass says otherwise
    ├── ConfigError(file, key)          2  the config is wrong: names the file and the dotted key
    │   └── OptionsError                2  one plug-in option is wrong (unknown key, wrong type)
    ├── UsageError                      2  the command line is wrong (today's ``CliError``), or a file it names
    │   └── InvalidTransition           2  a triage action the alert's state does not allow (close twice, ...)
    ├── NotFound                        1  no alert, case or exception with the id (or prefix) given
    ├── ConnectorError                  1  a connector cannot work at all
    │   └── SourceUnavailable           1  its source is missing, unreadable or cannot be bound
    ├── StoreError                      1  the store failed (``StoreUnavailable``, ``StoreConflict``, ...)
    └── SinkError                       1  an alert could not be delivered
        ├── SinkUnavailable             1  retry later (network down, 5xx)
        └── SinkRejected                1  never retry: dead-letter it (4xx, bad address)

Exit codes (documented in README.md and ``engine/cli.py``): 0 success, 1 the job failed at run time,
2 bad usage, bad config or invalid rules, 130 interrupted.
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class WardwatchError(Exception):
    """Root of every expected failure. ``str()`` is the one line a user sees."""

    exit_code: int = EXIT_FAILED


class ConfigError(WardwatchError):
    """A configuration problem; ``str()`` names the file and the dotted key.

    ``engine.config.ConfigError`` is this class's historical home and subclasses it.
    """

    exit_code = EXIT_USAGE

    def __init__(self, source: str, key: str, message: str):
        self.source, self.key, self.message = source, key, message
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")


class OptionsError(ConfigError):
    """One plug-in option is wrong: ``file: connectors[2].datasett: unknown option (known: ...)``.

    Raised where the file is not known yet (a plug-in parsing its options, a TLS context loading its
    certificate): ``key`` is the option's name, and ``source`` may be filled in by whoever knows the file.
    """

    def __init__(self, key: str, message: str, source: str = ""):
        super().__init__(source, key, message)
        if not source:  # "key: message" until a caller knows the file
            self.args = (f"{key}: {message}" if key else message,)


class UsageError(WardwatchError):
    """The command line is wrong, or names a file that cannot be used. ``code`` overrides ``exit_code``."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        if code is not None:
            self.exit_code = code

    @property
    def code(self) -> int:
        """The exit code (the name ``CliError`` callers used)."""
        return self.exit_code


class InvalidTransition(UsageError):
    """A triage action the subject's state does not allow: ``alert 3f2a... is closed; reopen is not supported``.

    A usage error (exit 2), not a run-time failure: the analyst asked for something the lifecycle forbids."""


class NotFound(WardwatchError):
    """No alert, case or exception has the id (or the unique id prefix) the user gave."""


class ConnectorError(WardwatchError):
    """A connector cannot work at all (bad config, unreadable source). Names the connector and the key."""


class SourceUnavailable(ConnectorError):
    """The source is missing, unreadable, or its port cannot be bound: the operator must act."""


class StoreError(WardwatchError):
    """Base class for store failures the service reports and retries (never swallows)."""


class SinkError(WardwatchError):
    """An alert could not be delivered."""


class SinkUnavailable(SinkError):
    """The destination is unreachable right now: delivery is retried."""


class SinkRejected(SinkError):
    """The destination refused the alert for good: it is dead-lettered, never retried."""

