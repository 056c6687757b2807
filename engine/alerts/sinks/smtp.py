"""The ``email`` sink: alert and case revisions as mail (plain text + HTML), one per revision or a digest.

Transport (``tls``): ``starttls`` (default, port 587) or ``implicit`` (port 465) verify the server's
certificate like any TLS client; ``none`` is allowed only to a loopback relay (a local MTA that does
the TLS onward): alerts name staff and patients, and a plaintext hop across the network would leak them.
A server that does not offer STARTTLS is *unavailable*, never a reason to send in the clear.
Authentication: ``username`` with the password from ``password_file`` or ``password_env``.

**Digest mode** (``digest: 15m``): one mail per period with every revision that came in during it.
Why the outbox holds them, not the sink: the revisions stay *unacknowledged* in the store's outbox until the
digest mail has been accepted by the server, so a crash or restart at any moment loses nothing - the next
process finds them still pending. Periods are aligned to the clock (every 15 minutes past the hour for
``15m``) and the sink says "not yet" to the delivery loop (:meth:`EmailSink.ready`) until the period it
last sent in is over; a restarted sink waits for the next boundary, so a restart neither loses a digest
nor sends an extra one. A crash *after* the server accepted the mail but before the acknowledgement sends
the same revisions again; that mail has the same ``Message-ID`` (derived from its ``id:revision`` set),
which most mail stores and clients show once.

**Assignee notices** (``notices: true``): an ``assignee_update`` notice goes to the address
``assignees[notice.to]``; other notices (deadline reminders) and unknown assignees go to ``to``.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Callable, Literal, Mapping, Sequence

from connectors.syslog.server import is_loopback
from connectors.syslog.tls import client_context, ssl_reason
from engine.alerts.case_model import Case
from engine.alerts.model import Alert
from engine.alerts.sinks.base import Sink, SinkOptions
from engine.alerts.sinks.mail_message import (DEFAULT_DIGEST_SUBJECT, DEFAULT_SUBJECT, build_mail, build_notice,
                                              check_subject, stable_message_id)
from engine.config import read_secret
from engine.errors import SinkRejected, SinkUnavailable
from engine.plugins import KEY, InvalidOption, duration_option, path_option

DEFAULT_PORTS = {"starttls": 587, "implicit": 465, "none": 25}


@dataclass(kw_only=True)
class EmailOptions(SinkOptions):
    """``alerts.sinks[]`` options of ``type: email`` (docs/alerts.md)."""

    host: str
    port: int | None = None
    tls: Literal["starttls", "implicit", "none"] = "starttls"
    ca_certs: str | None = path_option(None)
    verify: bool = True
    username: str | None = None
    password_file: str | None = path_option(None)
    password_env: str | None = None
    #: the envelope and header From; written ``from:`` in the config (a Python keyword cannot be a field)
    sender: str = field(default="wardwatch@localhost", metadata={KEY: "from"})
    to: list[str] = field(default_factory=list)
    subject: str = DEFAULT_SUBJECT
    digest_subject: str = DEFAULT_DIGEST_SUBJECT
    #: collect revisions and send one mail per period ("15m"); null: one mail per revision
    digest: float | None = duration_option(None)
    #: assignee name -> address, for ``assignee_update`` notices
    assignees: dict[str, str] = field(default_factory=dict)
    timeout: float = duration_option(30.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.host:
            raise InvalidOption("host", "must name the SMTP server")
        if not self.to or not all("@" in a for a in self.to):
            raise InvalidOption("to", "needs at least one address (user@example.org)")
        if self.tls == "none" and not is_loopback(self.host):
            raise InvalidOption("tls", "none is only allowed to a loopback relay (127.0.0.1, ::1, localhost): "
                                       "alerts name staff and patients; use starttls or implicit")
        if self.username and not (self.password_file or self.password_env):
            raise InvalidOption("username", "needs password_file or password_env")
        if self.digest is not None and self.digest < 1:
            raise InvalidOption("digest", "must be at least 1s (or null for one mail per revision)")
        for key in ("subject", "digest_subject"):
            try:
                check_subject(getattr(self, key))
            except ValueError as exc:
                raise InvalidOption(key, str(exc)) from None
        for name, address in self.assignees.items():
            if "@" not in address:
                raise InvalidOption(f"assignees.{name}", f"{address!r} is not a mail address")


class EmailSink(Sink):
    """SMTP with STARTTLS / implicit TLS and auth; one mail per revision or a digest (module docstring)."""

    type_name = "email"
    summary = "mail (text + HTML) over SMTP with STARTTLS or implicit TLS, per revision or as a digest"
    Options = EmailOptions
    batch_size = 1

    def __init__(self, options: EmailOptions | Mapping[str, Any] | None = None, *,
                 clock: Callable[[], float] = time.time,
                 **kwargs: Any):
        super().__init__(options, **kwargs)
        opts: EmailOptions = self.settings
        self.port = opts.port or DEFAULT_PORTS[opts.tls]
        self.password = read_secret(None, opts.password_file, opts.password_env, key=f"{self.name}.password_file")
        self.context = None if opts.tls == "none" else client_context(
            f"sink {self.name}", SinkUnavailable, ca_certs=opts.ca_certs, verify=opts.verify)
        self.clock = clock
        if opts.digest is not None:
            self.batch_size = 1000  # a digest is one mail over everything pending (up to the outbox batch)
            now = self._period(clock())
            self._sent_period = {"alert": now, "case": now}  # a (re)started sink waits for the next boundary

    def default_name(self) -> str:
        return f"email:{self.settings.host}"

    # --- digest ---------------------------------------------------------------------------------------
    def _period(self, now: float) -> int:
        return int(now // self.settings.digest)

    def ready(self, record: str) -> bool:
        """The delivery loop asks before draining: a digest sink takes revisions once per period."""
        if self.settings.digest is None:
            return True
        return self._period(self.clock()) > self._sent_period[record]

    def deliver(self, alerts: Sequence[Alert]) -> None:
        super().deliver(alerts)
        self._sent("alert")

    def deliver_cases(self, cases: Sequence[Case]) -> None:
        super().deliver_cases(cases)
        self._sent("case")

    def _sent(self, record: str) -> None:
        if self.settings.digest is not None:
            self._sent_period[record] = self._period(self.clock())

    # --- sending --------------------------------------------------------------------------------------
    def send_alerts(self, payloads: Sequence[dict[str, Any]]) -> None:
        self._send_payloads(payloads)

    def send_cases(self, payloads: Sequence[dict[str, Any]]) -> None:
        self._send_payloads(payloads)

    def _send_payloads(self, payloads: Sequence[dict[str, Any]]) -> None:
        opts: EmailOptions = self.settings
        if not payloads:
            return
        key = ",".join(sorted(f"{p['id']}:{p.get('revision', 1)}" for p in payloads))
        digest = opts.digest is not None
        mail = build_mail(payloads, sender=opts.sender, to=opts.to,
                          subject=opts.digest_subject if digest else opts.subject,
                          message_id=stable_message_id(key),
                          intro=f"{len(payloads)} update(s) in this digest." if digest else "")
        self._send(mail)

    def send_notice(self, notice: Mapping[str, Any]) -> None:
        opts: EmailOptions = self.settings
        to = ", ".join(opts.to)
        if notice.get("kind") == "assignee_update" and notice.get("to") in opts.assignees:
            to = opts.assignees[str(notice["to"])]
        key = f"notice:{notice.get('kind')}:{notice.get('subject')}:{notice.get('text')}"
        self._send(build_notice(notice, sender=opts.sender, to=to, message_id=stable_message_id(key)))

    def _send(self, mail: EmailMessage) -> None:
        """One SMTP session per mail (alert mail is rare; a held-open session would only time out)."""
        opts: EmailOptions = self.settings
        where = f"smtp {opts.host}:{self.port}"
        try:
            if opts.tls == "implicit":
                client: smtplib.SMTP = smtplib.SMTP_SSL(opts.host, self.port, timeout=opts.timeout,
                                                        context=self.context)
            else:
                client = smtplib.SMTP(opts.host, self.port, timeout=opts.timeout)
            with client:
                if opts.tls == "starttls":
                    client.starttls(context=self.context)
                if opts.username:
                    client.login(opts.username, self.password or "")
                client.send_message(mail)
        except smtplib.SMTPNotSupportedError:
            raise SinkUnavailable(f"{where}: the server does not offer STARTTLS (mail is never sent in the "
                                  "clear)") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise SinkUnavailable(f"{where}: authentication failed ({exc.smtp_code})") from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise _by_code(min(codes) if codes else 550, f"{where}: recipients refused {sorted(exc.recipients)}")
        except smtplib.SMTPResponseException as exc:  # sender refused, data refused, ...
            raise _by_code(exc.smtp_code, f"{where}: {exc.smtp_code} {_text(exc.smtp_error)}")
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise SinkUnavailable(f"{where}: {ssl_reason(exc)}") from None


def _by_code(code: int, message: str) -> Exception:
    """5xx is the server's final word (dead letter); 4xx means try again later."""
    return SinkRejected(message) if code >= 500 else SinkUnavailable(message)


def _text(value: Any) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:200]
