"""Alert, case, digest and notice mails: plain text plus HTML, built with the stdlib ``email`` package.

Why a module of its own: what a mail *says* is testable without a server, and the HTML part is where an
injection would hide - every value that came from a log (a user name, a rule title) is escaped with
``html.escape`` before it meets markup. Subjects are templates over a small, fixed set of names
(``{level}``, ``{title}``, ``{record}``, ``{id}``, ``{revision}``, ``{count}``); a typo in one is an
option error at load time, not a mail that fails at 3 a.m.
"""

from __future__ import annotations

import hashlib
import html
import string
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Iterable, Mapping, Sequence

from engine.alerts.sinks.siem_facts import facts

SUBJECT_NAMES = frozenset({"level", "title", "record", "id", "revision", "count"})
DEFAULT_SUBJECT = "[Wardwatch {level}] {title}"
DEFAULT_DIGEST_SUBJECT = "[Wardwatch] {count} alert update(s)"


def check_subject(template: str) -> None:
    """``ValueError`` naming the first unknown ``{name}`` in a subject template."""
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None and name not in SUBJECT_NAMES:
            raise ValueError(f"unknown name {{{name}}} (known: {', '.join(sorted(SUBJECT_NAMES))})")


def _subject(template: str, payload: Mapping[str, Any] | None, count: int) -> str:
    f = facts(payload) if payload is not None else None
    values = {"level": f.level if f else "", "title": f.name if f else "", "record": f.record if f else "",
              "id": f.id if f else "", "revision": f.revision if f else "", "count": count}
    return " ".join(template.format(**values).split())  # no header injection through a CR/LF in a title


def _lines(payload: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows an analyst reads first, in the same order in the text and the HTML part."""
    f = facts(payload)
    rows = [("What", f.name), ("Level", f.level), (f.record.capitalize(), f"{f.id} (revision {f.revision})"),
            ("User", f.user), ("Source", f.source_ip), ("Patient", f.patient),
            ("Last trigger", payload.get("last_trigger")), ("Events", str(f.evidence_total)),
            ("Status", f.status), ("Assignee", f.assignee)]
    return [(k, str(v)) for k, v in rows if v not in (None, "")]


def _text_block(payload: Mapping[str, Any]) -> str:
    return "\n".join(f"{k + ':':<14}{v}" for k, v in _lines(payload))


def _html_block(payload: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th align=\"left\">{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                   for k, v in _lines(payload))
    return f"<table>{rows}</table>"


def build_mail(payloads: Sequence[Mapping[str, Any]], *, sender: str, to: Iterable[str], subject: str,
               message_id: str, intro: str = "") -> EmailMessage:
    """One mail about ``payloads`` (one for a single revision, many for a digest)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = _subject(subject, payloads[0] if len(payloads) == 1 else None, len(payloads))
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id
    text = "\n\n".join(_text_block(p) for p in payloads)
    body = "".join(f"<section>{_html_block(p)}</section><hr>" for p in payloads)
    if intro:
        text = f"{intro}\n\n{text}"
        body = f"<p>{html.escape(intro)}</p>{body}"
    message.set_content(text + "\n")
    message.add_alternative(f"<!doctype html><html><body>{body}</body></html>\n", subtype="html")
    return message


def build_notice(notice: Mapping[str, Any], *, sender: str, to: str, message_id: str) -> EmailMessage:
    """A one-line notice (an assignee update, a deadline reminder) as a short mail."""
    message = EmailMessage()
    text = " ".join(str(notice.get("text", "")).split())
    message["From"] = sender
    message["To"] = to
    message["Subject"] = f"[Wardwatch] {text}"[:200]
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id
    message.set_content(text + "\n")
    message.add_alternative(f"<!doctype html><html><body><p>{html.escape(text)}</p></body></html>\n",
                            subtype="html")
    return message


def stable_message_id(key: str, domain: str = "wardwatch.invalid") -> str:
    """A Message-ID that is the same for the same content: a re-sent mail after a crash is recognisable
    (and deduplicated by most mail stores) instead of looking new."""
    return f"<{hashlib.blake2b(key.encode(), digest_size=12).hexdigest()}@{domain}>"


__all__ = ["DEFAULT_DIGEST_SUBJECT", "DEFAULT_SUBJECT", "build_mail", "build_notice", "check_subject",
           "stable_message_id"]
