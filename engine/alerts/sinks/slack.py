"""The Slack sink: an incoming-webhook message in Block Kit (header, fields, text, context) per revision.

Slack's limits (https://api.slack.com/reference/block-kit/blocks): a header's text at most 150 characters,
a section at most 10 fields of 2,000 and a text of 3,000. Values are escaped (``&``, ``<``, ``>``) so an
alert field can never become a ``<!channel>`` mention or a link. The webhook URL is its own credential:
``url_file`` or ``url_env`` only. Slack answers 200 ``ok``; 400/403/404/410 (``invalid_blocks``,
``channel_is_archived``...) are final and dead-letter the revision; 429 and 5xx are retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from engine.alerts.sinks.base import SinkOptions
from engine.alerts.sinks.chat import Message, clip, message
from engine.alerts.sinks.http import SecretUrlOptions, SecretUrlSink

HEADER_MAX, FIELD_MAX, TEXT_MAX, FIELDS_MAX = 150, 2000, 3000, 10


def escape(text: str) -> str:
    """Slack's three control characters (https://api.slack.com/reference/surfaces/formatting#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def blocks(msg: Message) -> dict[str, Any]:
    """The webhook body: ``text`` (notification fallback) plus ``blocks``."""
    out: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": clip(msg.title, HEADER_MAX)}}]
    if msg.facts:
        out.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": clip(f"*{escape(k)}*\n{escape(v)}", FIELD_MAX)} for k, v in msg.facts[:FIELDS_MAX]]})
    if msg.text:
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": clip(escape(msg.text), TEXT_MAX)}})
    if msg.footer:
        out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": escape(msg.footer)}]})
    return {"text": clip(escape(msg.title), TEXT_MAX), "blocks": out}


@dataclass(kw_only=True)
class SlackOptions(SecretUrlOptions):
    """``alerts.sinks[]`` options of ``type: slack``."""

    deliver: str = "cases"


class SlackSink(SecretUrlSink):
    type_name = "slack"
    summary = "Slack incoming webhook, one Block Kit message per alert / case revision"
    Options: ClassVar[type[SinkOptions]] = SlackOptions

    def send_alerts(self, payloads: Sequence[dict[str, Any]]) -> None:
        for payload in payloads:
            self.post(blocks(message("alert", payload)))

    def send_cases(self, payloads: Sequence[dict[str, Any]]) -> None:
        for payload in payloads:
            self.post(blocks(message("case", payload)))

    def send_notice(self, notice: Mapping[str, Any]) -> None:
        self.post(blocks(message("notice", notice)))
