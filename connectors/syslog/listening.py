"""Listener mode of a push connector: syslog listeners that write to a durable spool, read back later.

Why one piece: every push source (``atna-syslog``, the VPN connectors) must start, report and stop its
listeners the same way - a bind failure as one ``SourceUnavailable`` line naming the connector, the bound
addresses for a port configured as 0, and the spool closed last - so the service treats them all alike.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from connectors.base import ConnectorConfigError
from connectors.syslog.server import ListenerConfig, SyslogServer
from connectors.syslog.spool import Spool
from engine.errors import SourceUnavailable
from engine.plugins import InvalidOption, secret_refusal


def check_listen_entries(entries: Sequence[Mapping[str, Any]]) -> None:
    """Options-time check of ``listen`` (no file is read): a literal TLS key ``password`` is refused."""
    for i, entry in enumerate(entries):
        if "password" in entry:
            raise InvalidOption(f"listen[{i}].password", secret_refusal("password").replace(
                " or password_env (the name of an environment variable)", ""))
        checked = {k: v for k, v in entry.items() if k != "password_file"}
        try:
            ListenerConfig.from_mapping(checked)
        except (TypeError, ValueError) as exc:
            raise InvalidOption(f"listen[{i}]", str(exc)) from None


def with_key_password(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A listen entry with ``password_file`` (the TLS key's passphrase) read into ``password``."""
    entry = dict(entry)
    file = entry.pop("password_file", None)
    if file:
        try:
            with open(file, encoding="utf-8") as fh:
                entry["password"] = fh.read().strip()
        except OSError as exc:
            raise ValueError(f"password_file {file}: cannot read ({exc.strerror})") from None
    return entry


class SpoolListeners:
    """Mixed into a ``Connector`` whose ``settings`` has ``max_message_bytes``, ``segment_bytes`` and ``fsync``.

    ``spool`` is None for a connector in file mode; ``listen`` is empty when it only drains a spool.
    """

    type_name: str
    name: str
    settings: Any
    spool: Spool | None = None
    server: SyslogServer | None = None
    listen: list[ListenerConfig]

    def _configure_listeners(self, entries: Sequence[Mapping[str, Any]], spool_dir: str) -> None:
        try:
            self.listen = [ListenerConfig.from_mapping(with_key_password(entry)) for entry in entries]
        except (TypeError, ValueError, OSError) as exc:
            raise ConnectorConfigError(f"{self.type_name} {self.name!r}: option 'listen': {exc}") from None
        self.spool = Spool(spool_dir, segment_bytes=self.settings.segment_bytes, fsync=self.settings.fsync)

    def start(self) -> None:
        """Open a fresh spool segment and start every listener.

        A port in use or a missing certificate file raises :class:`SourceUnavailable` with one line naming
        the connector, the ``listen[i]`` key and the port or path (the service reports it and retries).
        """
        if self.spool is None or self.server is not None:
            return
        self.spool.open_writer()
        server = SyslogServer(self.listen, self.spool.append, max_message_bytes=self.settings.max_message_bytes)
        try:
            server.start()
        except SourceUnavailable as exc:
            raise SourceUnavailable(f"{self.type_name} {self.name!r}: {exc}") from None
        self.server = server

    @property
    def addresses(self) -> list[tuple[str, str, int]]:
        """(protocol, host, port) actually bound - the way to learn a port configured as 0."""
        return list(self.server.addresses) if self.server else []

    def _close_listeners(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.spool is not None:
            self.spool.close()
